"""Slow and oversized clients against the real ``ratekeeper serve`` on loopback.

Every test drives raw sockets, so that a client can be as slow, as large or as numerous as an
attacker's. The limits are set small by flag so the whole file runs in seconds. Socket timeouts
and poll deadlines here are liveness bounds (fail rather than hang), never speed assertions.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.service import API_KEY, ServiceProcess, free_port

_LIVENESS_S = 10.0  # the longest a test waits for the server to answer or to close

# A request head that never ends: the blank line is missing.
_PARTIAL_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _session_head(content_length: int, *, expect_continue: bool = False) -> bytes:
    """The head of a session creation (authorized, so the service reads its body); with
    ``Expect: 100-continue``, the service says when its application starts reading."""
    return (
        b"POST /v1/chatkit/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
        b"OpenAI-Beta: chatkit_beta=v1\r\nContent-Type: application/json\r\n"
        + (b"Expect: 100-continue\r\n" if expect_continue else b"")
        + b"Content-Length: %d\r\n\r\n" % content_length
    )


_SESSION_BODY = b'{"user": "u_slow", "workflow": {"id": "wf_slow"}}'


def _connect(service: ServiceProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=_LIVENESS_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock`` (without waiting; its answer is discarded)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        while chunk := sock.recv(65536, socket.MSG_DONTWAIT):
            del chunk
    except BlockingIOError:
        return False  # data, but no end yet
    except ConnectionResetError:
        return True
    return True


def _wait_until_closed(socks: list[socket.socket], count: int) -> list[socket.socket]:
    """Wait (liveness bound) until at least ``count`` of ``socks`` are closed by the server;
    return the closed ones."""
    deadline = time.monotonic() + _LIVENESS_S
    closed: list[socket.socket] = []
    while True:
        closed += [sock for sock in socks if sock not in closed and _closed_by_server(sock)]
        if len(closed) >= count or time.monotonic() > deadline:
            return closed
        time.sleep(0.05)


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    """The service with small head limits and one-second timeouts."""
    with ServiceProcess(
        "--store",
        "memory",
        "--max-header-bytes",
        "8192",
        "--max-headers",
        "40",
        "--header-timeout",
        "1",
        "--body-timeout",
        "1",
    ) as running:
        yield running


@pytest.mark.parametrize("size", [9000, 1_000_000])
def test_oversized_header_gets_431(service: ServiceProcess, size: int) -> None:
    """A head over --max-header-bytes is answered 431 and closed, not read whole."""
    with _connect(service) as sock:
        head = _PARTIAL_HEAD + b"a" * size + b"\r\n\r\n"
        # The server may stop reading before the end: the point of the limit.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        response = _read_until_closed(sock)
    assert _status(response) == 431
    assert b"request_header_fields_too_large" in response


def test_long_url_counts_toward_the_head_limit(service: ServiceProcess) -> None:
    """The request line is part of the head: a 9 kB URL is over 8192 bytes."""
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        response = _read_until_closed(sock)
    assert _status(response) == 431


def test_too_many_headers_get_431(service: ServiceProcess) -> None:
    """41 small header fields are over --max-headers 40."""
    fields = b"".join(b"X-Field-%d: 1\r\n" % index for index in range(41))
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
        response = _read_until_closed(sock)
    assert _status(response) == 431


def test_head_at_the_limits_is_served(service: ServiceProcess) -> None:
    """40 header fields and a head just under 8192 bytes are still served."""
    fields = b"".join(b"X-Field-%d: 1\r\n" % index for index in range(37))
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fields
    head += b"X-Pad: " + b"p" * (8000 - len(head)) + b"\r\n\r\n"
    with _connect(service) as sock:
        sock.sendall(head)
        response = _read_until_closed(sock)
    assert _status(response) == 200


def test_slow_head_is_answered_408_and_closed(service: ServiceProcess) -> None:
    """A head still incomplete after --header-timeout gets 408 and the connection closes."""
    with _connect(service) as sock:
        sock.sendall(_PARTIAL_HEAD)
        response = _read_until_closed(sock)
    assert _status(response) == 408
    assert b"request_timeout" in response


def test_head_trickled_byte_by_byte_is_cut_at_the_timeout(service: ServiceProcess) -> None:
    """Bytes that keep coming do not extend the head's deadline (unlike an idle timeout)."""
    with _connect(service) as sock:
        sock.sendall(_PARTIAL_HEAD)
        deadline = time.monotonic() + _LIVENESS_S
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"a")
                if select.select([sock], [], [], 0.1)[0]:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = _read_until_closed(sock)
    assert _status(response) == 408


def test_connection_that_sends_nothing_is_closed(service: ServiceProcess) -> None:
    """A connection that never sends a byte is closed after --header-timeout, silently."""
    with _connect(service) as sock:
        assert _read_until_closed(sock) == b""


def test_slow_head_after_a_request_on_a_kept_alive_connection_is_408(
    service: ServiceProcess,
) -> None:
    """The header timeout also holds for the second request of a connection."""
    with _connect(service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        sock.sendall(_PARTIAL_HEAD)
        rest = _read_until_closed(sock)
    assert _status(first) == 200
    assert _status(rest) == 408


def test_stalled_body_is_answered_408_and_closed(service: ServiceProcess) -> None:
    """A body that stops arriving for --body-timeout gets 408 (the app was reading it)."""
    with _connect(service) as sock:
        sock.sendall(_session_head(len(_SESSION_BODY)) + _SESSION_BODY[:10])
        response = _read_until_closed(sock)
    assert _status(response) == 408
    assert b"request_timeout" in response


def test_body_sent_in_pieces_within_the_timeout_is_served(service: ServiceProcess) -> None:
    """The body timeout is an idle timeout: pieces 50 ms apart, 1.5 s in all, are fine."""
    with _connect(service) as sock:
        sock.sendall(_session_head(len(_SESSION_BODY)))
        pieces = [_SESSION_BODY[index : index + 2] for index in range(0, len(_SESSION_BODY), 2)]
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.05)  # the client is slow, not the test: 1.2 s of body in all
        response = sock.recv(65536)
    assert _status(response) == 200, response


def test_parser_rejections_are_text_plain_400(service: ServiceProcess) -> None:
    """What docs/server.md says of requests the HTTP parser refuses: 400 text/plain, closed."""
    for request in (
        b"GARBAGE\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
    ):
        with _connect(service) as sock:
            sock.sendall(request)
            response = _read_until_closed(sock)
        assert _status(response) == 400, request
        assert b"content-type: text/plain; charset=utf-8" in response.lower(), request


def test_connections_over_the_cap_displace_the_oldest_idle_ones() -> None:
    """Past --max-connections, each new connection closes the one idle longest; the
    newest stay open and are served."""
    cap, extra = 20, 10
    with ServiceProcess(
        "--store", "memory", "--max-connections", str(cap), "--header-timeout", "60"
    ) as service:
        socks = [_connect(service) for _ in range(cap + extra)]
        try:
            closed = _wait_until_closed(socks, extra)
            assert sorted(socks.index(sock) for sock in closed) == list(range(extra))
            newest = socks[-1]
            newest.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert _status(_read_until_closed(newest)) == 200
        finally:
            for sock in socks:
                sock.close()


def test_new_connection_is_refused_503_when_every_connection_is_busy() -> None:
    """When all --max-connections connections are mid-request, a new one gets 503 and is
    closed; when one finishes, new connections are served again."""
    cap = 10
    with ServiceProcess(
        "--store", "memory", "--max-connections", str(cap), "--body-timeout", "60"
    ) as service:
        busy = [_connect(service) for _ in range(cap)]
        try:
            for sock in busy:  # each is inside a request: the app is reading its body
                sock.sendall(_session_head(len(_SESSION_BODY), expect_continue=True))
                assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
                sock.sendall(b"{")
            with _connect(service) as refused:
                response = _read_until_closed(refused)
            assert _status(response) == 503
            assert b"too_many_connections" in response
            busy[0].close()  # one slot frees when the server sees the close
            deadline = time.monotonic() + _LIVENESS_S
            while True:
                with _connect(service) as sock:
                    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    status = _status(_read_until_closed(sock))
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert status == 200
        finally:
            for sock in busy:
                sock.close()


@pytest.mark.parametrize("slow_bodies", [0, 45])
def test_slow_client_flood_does_not_lock_out_well_behaved_clients(slow_bodies: int) -> None:
    """200 slow heads (four times the cap of 50), after ``slow_bodies`` stalled bodies that
    hold their slots, all held open while a well-behaved client works: every one of its
    requests is answered, and the oldest slow heads are closed to keep the server at the cap.
    Neither timeout plays a part (60 s): the cap alone keeps the door open."""
    cap, slow_heads = 50, 200
    with ServiceProcess(
        "--store",
        "memory",
        "--max-connections",
        str(cap),
        "--header-timeout",
        "60",
        "--body-timeout",
        "60",
    ) as service:
        bodies: list[socket.socket] = []
        heads: list[socket.socket] = []
        try:
            for _ in range(slow_bodies):
                bodies.append(_connect(service))
                bodies[-1].sendall(_session_head(len(_SESSION_BODY), expect_continue=True))
                assert bodies[-1].recv(65536).startswith(b"HTTP/1.1 100 ")  # in the app
                bodies[-1].sendall(b"{")
            for _ in range(slow_heads):
                heads.append(_connect(service))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    heads[-1].sendall(_PARTIAL_HEAD)  # unless displaced already
            statuses = []
            with service.client(timeout=5.0) as client:
                for index in range(10):
                    # A new connection each time (the worst case at the cap), then the SDK on
                    # a kept-alive one.
                    statuses.append(httpx.get(f"{service.url}/healthz", timeout=5.0).status_code)
                    session = client.beta.chatkit.sessions.create(
                        user=f"u_flood_{index}", workflow={"id": "wf_flood"}
                    )
                    assert session.client_secret
                assert statuses == [200] * 10
                # The server holds at most the cap: the SDK's connection, the stalled bodies
                # (never displaced: they are inside a request), and the newest slow heads.
                assert not any(_closed_by_server(sock) for sock in bodies)
                must_close = slow_heads - (cap - 1 - slow_bodies)
                closed = _wait_until_closed(heads, must_close)
                assert len(closed) >= must_close
                assert set(heads[: slow_heads - cap]) <= set(closed)  # the oldest first
        finally:
            for sock in bodies + heads:
                sock.close()


def test_plain_uvicorn_takes_the_limits_with_the_protocol_flag() -> None:
    """``uvicorn --factory … --http ratekeeper.server._protocol:LimitedHTTPProtocol`` applies
    the limits of the ``RATEKEEPER_*`` variables, as docs/server.md says."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RATEKEEPER_")}
    env |= {
        "RATEKEEPER_API_KEYS": API_KEY,
        "RATEKEEPER_STORE": "memory",
        "RATEKEEPER_HEADER_TIMEOUT_S": "0.5",
        "RATEKEEPER_MAX_HEADERS": "10",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "ratekeeper.server._app:app_from_env",
            "--http",
            "ratekeeper.server._protocol:LimitedHTTPProtocol",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "critical",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60.0
        while True:  # startup, not a timing assertion
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).is_success:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=_LIVENESS_S) as sock:
            assert _read_until_closed(sock) == b""  # header timeout: closed
        fields = b"".join(b"X-Field-%d: 1\r\n" % index for index in range(11))
        with socket.create_connection(("127.0.0.1", port), timeout=_LIVENESS_S) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
            assert _status(_read_until_closed(sock)) == 431
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
