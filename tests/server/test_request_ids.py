"""``x-request-id``: kept when well formed, made otherwise, and in every log line of its request."""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from uvicorn.logging import AccessFormatter, DefaultFormatter

from ratekeeper.server._logs import RedactSecrets, RequestContext, uvicorn_log_config

from .conftest import API_KEY, _Server, _wait_healthy, make_live

_LOGGERS = ("uvicorn.access", "uvicorn.error", "ratekeeper")


async def _boom(request: Request) -> Response:
    logging.getLogger("ratekeeper.server").warning("about to fail")
    raise RuntimeError("boom")


@contextmanager
def _logged_service() -> Iterator[tuple[str, io.StringIO]]:
    """A real service on uvicorn with its access log on, its log lines written to a buffer
    through ``ratekeeper serve``'s filters and text formats (attached to the loggers here, not
    by ``dictConfig``, which would reconfigure logging for the whole test run)."""
    app, _ = make_live()
    app.router.add_route("/boom", _boom)
    formats = uvicorn_log_config("info")["formatters"]
    buffer = io.StringIO()
    handlers = {}
    for name in _LOGGERS:
        handler = logging.StreamHandler(buffer)
        handler.addFilter(RedactSecrets())
        handler.addFilter(RequestContext())
        if name == "uvicorn.access":
            handler.setFormatter(AccessFormatter(formats["access"]["fmt"], use_colors=False))
        else:
            handler.setFormatter(DefaultFormatter(formats["default"]["fmt"], use_colors=False))
        handlers[name] = handler
    saved = {name: logging.getLogger(name).level for name in _LOGGERS}
    for name, handler in handlers.items():
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="on", log_level="info", log_config=None)
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        _wait_healthy(server, thread, url)
        yield url, buffer
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        for name, handler in handlers.items():
            logging.getLogger(name).removeHandler(handler)
            logging.getLogger(name).setLevel(saved[name])


@pytest.fixture(scope="module")
def logged() -> Iterator[tuple[str, io.StringIO]]:
    with _logged_service() as running:
        yield running


def _lines_with(buffer: io.StringIO, text: str) -> list[str]:
    """The lines containing ``text``, waiting for the first (uvicorn logs an app's exception
    after the response it sent, so the line may come just after the client has its answer)."""
    deadline = time.monotonic() + 10.0
    while True:
        lines = [line for line in buffer.getvalue().splitlines() if text in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


@pytest.mark.parametrize("request_id", ["abc", "trace-1.2:3_X", "a" * 128])
def test_a_well_formed_request_id_is_echoed(
    logged: tuple[str, io.StringIO], request_id: str
) -> None:
    url, _ = logged
    response = httpx.get(f"{url}/healthz", headers={"x-request-id": request_id})
    assert response.headers["x-request-id"] == request_id


@pytest.mark.parametrize(
    "request_id",
    [
        "",
        "a" * 129,
        "has space",
        "semi;colon",
        "caf\u00e9",
        "ek_live_0123456789abcdef",
        "EK_shouty",
        "rk-anything",
        API_KEY,
    ],
)
def test_a_malformed_or_secret_shaped_request_id_is_replaced(
    logged: tuple[str, io.StringIO], request_id: str
) -> None:
    url, buffer = logged
    response = httpx.get(f"{url}/healthz", headers={b"x-request-id": request_id.encode("utf-8")})
    given = response.headers["x-request-id"]
    assert given.startswith("req_")
    assert len(given) == 36
    if request_id:
        assert request_id not in buffer.getvalue()


def test_the_request_id_is_in_the_access_log_line(logged: tuple[str, io.StringIO]) -> None:
    url, buffer = logged
    response = httpx.get(f"{url}/healthz?probe=access", headers={"x-request-id": "access-1"})
    assert response.status_code == 200
    [line] = _lines_with(buffer, "/healthz?probe=access")
    assert line.endswith(" 200 OK request_id=access-1"), line


def test_a_500s_request_id_is_in_its_error_log_lines(logged: tuple[str, io.StringIO]) -> None:
    """The 500 says "quote the x-request-id": the id it gives is in the server's error line."""
    url, buffer = logged
    response = httpx.get(f"{url}/boom")
    assert response.status_code == 500
    assert "x-request-id" in response.json()["error"]["message"]
    request_id = response.headers["x-request-id"]
    assert _lines_with(buffer, "about to fail") == [
        f"WARNING:  about to fail request_id={request_id}"
    ]
    assert _lines_with(buffer, "Exception in ASGI application") == [
        f"ERROR:    Exception in ASGI application request_id={request_id}"
    ]
    [access] = _lines_with(buffer, "GET /boom")
    assert access.endswith(f" 500 Internal Server Error request_id={request_id}"), access


def test_lines_outside_a_request_carry_no_request_id(logged: tuple[str, io.StringIO]) -> None:
    logging.getLogger("ratekeeper.server").warning("not serving anything")
    [line] = _lines_with(logged[1], "not serving anything")
    assert line == "WARNING:  not serving anything"
