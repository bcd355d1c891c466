"""The service's protocol writes a response's head with its body's first piece.

:class:`~ratekeeper.server._protocol._OneWriteCycle` must send the very bytes uvicorn's
``RequestResponseCycle`` sends, in the same order, only in fewer writes: a head declaring a
``content-length`` waits for the body's first piece; every other head goes at once; a held
head is written before anything else and before the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import threading
import time
from typing import Any

import httpx
import pytest
import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from ratekeeper.server._protocol import (
    ConnectionLimits,
    LimitedHTTPProtocol,
    _HeadBuffer,
    _OneWriteCycle,
)

from .conftest import _Server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Transport:
    """Records what is written and when the transport is closed."""

    def __init__(self) -> None:
        self.events: list[bytes | str] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing
        self.events.append(bytes(data))

    def close(self) -> None:
        self.closing = True
        self.events.append("close")

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _cycle(transport: _Transport, *, method: str, one_write: bool) -> RequestResponseCycle:
    scope: Any = {"type": "http", "method": method, "path": "/", "http_version": "1.1"}
    cycle = RequestResponseCycle(
        scope=scope,
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[(b"date", b"today")],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    if one_write:
        cycle.__class__ = _OneWriteCycle
        cycle.transport = _HeadBuffer(transport)  # type: ignore[arg-type,assignment]
    return cycle


def _start(*headers: tuple[bytes, bytes], status: int = 200) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def _body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


_LENGTH_5 = (b"content-length", b"5")
# (method, messages, whether the app raises after them, writes one_write makes)
_CASES: list[tuple[str, list[dict[str, Any]], bool, int]] = [
    ("POST", [_start(_LENGTH_5), _body(b"hello")], False, 1),
    ("GET", [_start(_LENGTH_5), _body(b"he", True), _body(b"llo")], False, 2),
    ("GET", [_start(_LENGTH_5), _body(b"", True), _body(b"hello")], False, 2),
    ("GET", [_start(), _body(b"a", True), _body(b"b", True), _body(b"")], False, 4),  # chunked
    ("HEAD", [_start(_LENGTH_5), _body(b"")], False, 1),
    ("GET", [_start((b"content-length", b"0"), status=204), _body(b"")], False, 2),
    ("GET", [_start(_LENGTH_5, (b"connection", b"close")), _body(b"hello")], False, 1),
    ("GET", [_start(_LENGTH_5)], True, 1),  # the app raised after the head: uvicorn closes
    ("GET", [_start(_LENGTH_5), _body(b"he", True)], True, 1),
]


async def _run(method: str, messages: list[dict[str, Any]], raises: bool, one_write: bool) -> Any:
    transport = _Transport()
    cycle = _cycle(transport, method=method, one_write=one_write)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(dict(message, headers=list(message.get("headers", []))))
            if message["type"] == "http.response.start":
                # Where the head of a chunked, HEAD or empty answer must already be out.
                heads.append(len(transport.events))
        if raises:
            raise RuntimeError("after the head")

    heads: list[int] = []
    logging.getLogger("test").disabled = True
    try:
        await cycle.run_asgi(app)
    finally:
        logging.getLogger("test").disabled = False
    return transport.events, heads


@pytest.mark.parametrize(("method", "messages", "raises", "writes"), _CASES)
async def test_the_same_bytes_in_fewer_writes(
    method: str, messages: list[dict[str, Any]], raises: bool, writes: int
) -> None:
    plain, plain_heads = await _run(method, messages, raises, one_write=False)
    fewer, fewer_heads = await _run(method, messages, raises, one_write=True)

    def joined(events: list[Any]) -> list[Any]:
        data = b"".join(event for event in events if isinstance(event, bytes))
        return [data, *(event for event in events if isinstance(event, str))]

    assert joined(fewer) == joined(plain)
    assert len([event for event in fewer if isinstance(event, bytes)]) == writes
    if "close" in plain:  # closed last, after every byte
        assert fewer[-1] == "close"
    chunked_or_empty = (
        method == "HEAD"
        or messages[0]["status"] == 204
        or not any(name == b"content-length" for name, _ in messages[0]["headers"])
    )
    if chunked_or_empty:  # the head went out at once, as uvicorn sends it
        assert fewer_heads == plain_heads == [1]


def test_the_service_protocol_answers_through_it() -> None:
    """``LimitedHTTPProtocol`` (what ``ratekeeper serve`` runs) gives each request this cycle,
    and the answers arrive whole, kept-alive requests one after the other."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(type(send.__self__).__name__)
        body = scope["path"].encode()
        await send(_start((b"content-length", b"%d" % len(body))))
        await send(_body(body))

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        http=functools.partial(LimitedHTTPProtocol, limits=ConnectionLimits()),  # type: ignore[arg-type]
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20.0  # liveness bound, not a speed assertion
        while not server.started:
            assert thread.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as client:
            for path in ("/a", "/bb", "/ccc"):
                response = client.get(path, timeout=10.0)
                assert (response.status_code, response.text) == (200, path)
    finally:
        server.should_exit = True
        thread.join(timeout=20.0)
        sock.close()
    assert seen == ["_OneWriteCycle"] * 3
