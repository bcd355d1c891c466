"""uvicorn's httptools protocol with limits on slow and oversized clients.

uvicorn reads a request head of any size (httptools, over llhttp, has no limit of its own and
joins a long header's pieces in memory), waits for it forever, waits forever between the
pieces of a body, and accepts every connection the kernel hands it. :class:`LimitedHTTPProtocol`
adds, per connection:

* a cap on the request head: the request line and header fields together, in bytes
  (``max_header_bytes``), and the number of header fields (``max_headers``): over either, 431;
* a header timeout: the head must be complete ``header_timeout_s`` after the connection opens
  (or after the first byte of a later request on a kept-alive connection); then 408, or a
  silent close when not one byte came;
* a body idle timeout: a body that sends nothing for ``body_timeout_s`` (checked in quarters,
  so it is cut between 1 and 1.25 times that) gets 408, or is closed when the answer started;

and per server (one per worker process), a cap on open connections (``max_connections``). At
the cap a new connection displaces the oldest one that is idle between requests or still
sending its head, the way nginx reuses idle keep-alive connections; when every connection is
busy with a request, the new one is answered 503 and closed. A flood of slow heads therefore
cannot lock well-behaved clients out: each newcomer takes the place of the longest-waiting.

The admitted path stays cheap: a few attribute updates per read and per request, nothing per
header field or byte (the head is measured whole, and only when the reads that carried it
exceed the limit); a timer (a ``loop.call_later`` handle) is armed once per connection, and
per request only for a head or a body that spans several reads; the body timer counts reads
instead of reading a clock.

``ratekeeper serve`` passes ``functools.partial(LimitedHTTPProtocol, limits=...)`` to uvicorn;
under plain uvicorn, ``--http ratekeeper.server._protocol:LimitedHTTPProtocol`` reads the limits
from the ``RATEKEEPER_*`` variables.

Event-loop bound, like the uvicorn protocol it extends: not thread-safe.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import weakref
from dataclasses import dataclass
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from .._ratelimit_headers import error_body
from ._settings import ServerSettings

_logger = logging.getLogger("ratekeeper.server")
# The body timer fires this many times per body_timeout_s and cuts the body after this many
# ticks without a read: idle between 1 and 1 + 1/_BODY_TICKS timeouts.
_BODY_TICKS = 4
# How long a refused connection's remaining input is read and dropped before the close.
_LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits :class:`LimitedHTTPProtocol` enforces. Immutable.

    Attributes:
        max_connections: open connections per server (worker process).
        max_header_bytes: longest request head (request line and header fields).
        max_headers: most header fields in one request.
        header_timeout_s: longest wait for a complete request head.
        body_timeout_s: longest wait for the next piece of a request body.
    """

    max_connections: int = 1000
    max_header_bytes: int = 32_768
    max_headers: int = 100
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> ConnectionLimits:
        """Return the limits a :class:`ServerSettings` asks for."""
        return cls(
            max_connections=settings.max_connections,
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
        )


@functools.cache
def _limits_from_env() -> ConnectionLimits:
    """The limits in this process's ``RATEKEEPER_*`` variables (read once)."""
    return ConnectionLimits.from_settings(ServerSettings.from_env())


class _Connections:
    """One server's connections: how many are counted, and which may be displaced."""

    __slots__ = ("idle", "open")

    def __init__(self) -> None:
        self.open = 0
        # Insertion-ordered: the first key is the connection idle (or reading its head) longest.
        self.idle: dict[LimitedHTTPProtocol, None] = {}


# One registry per uvicorn server (its ServerState), gone with it.
_registries: weakref.WeakKeyDictionary[ServerState, _Connections] = weakref.WeakKeyDictionary()


class _Lingering(asyncio.Protocol):
    """What a connection becomes once refused: reads and drops what the client still sends,
    for a short while, so the answer reaches it before the close (a close with unread data
    sends a TCP reset, which can destroy the answer in the client's buffers: nginx's
    lingering close)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = loop.call_later(_LINGER_S, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        pass  # returning None closes the transport: the client has read the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()


class _Rejected(Exception):
    """Raised in a parser callback to stop parsing a request that is over a limit."""


def _error_bytes(
    status: int, message: str, code: str, default_headers: list[tuple[bytes, bytes]]
) -> bytes:
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    body = json.dumps(error_body(message, type_, code)).encode()
    parts = [STATUS_LINE[status]]
    for name, value in default_headers:
        parts += [name, b": ", value, b"\r\n"]
    parts.append(
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n" % len(body)
    )
    if status == 503:
        parts.append(b"retry-after: 1\r\n")
    parts += [b"\r\n", body]
    return b"".join(parts)


class _HeadBuffer:
    """What a request's cycle writes through: the connection's transport, except that the
    head of a response with a body is held until the body's first piece and written with it,
    in one write (one ``send`` system call and one TCP segment instead of two).

    A held head is written before anything else the cycle writes, and before the cycle closes
    the connection, so no byte is lost or reordered. One per connection (its cycles answer one
    after the other); event-loop bound.
    """

    __slots__ = ("held", "hold", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.held: bytes | None = None
        self.hold = False  # set by the cycle around the write of a head that may be held

    def write(self, data: bytes) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.write(held + data)
        elif self.hold:
            self.hold = False
            self.held = data
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held = self.held
        if held is not None:
            self.held = None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()


class _OneWriteCycle(RequestResponseCycle):
    """uvicorn's request-response cycle, writing a response's head with its body's first
    piece when the head declares a ``content-length`` and a body follows (the answers of the
    REST surface). Every other head (chunked, such as a streamed ChatKit answer; ``HEAD``;
    an empty body) is written at once, as uvicorn writes it. Its transport is the
    connection's :class:`_HeadBuffer`."""

    transport: _HeadBuffer  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        if self.response_started or self.disconnected or message["type"] != "http.response.start":
            await RequestResponseCycle.send(self, message)
            return
        if self.flow.write_paused:  # waited for here, not while the head may be held
            await self.flow.drain()
        buffer = self.transport
        buffer.hold = True
        try:
            await RequestResponseCycle.send(self, message)
        finally:
            buffer.hold = False
        if buffer.held is not None and (
            self.chunked_encoding
            or self.expected_content_length == 0
            or self.scope["method"] == "HEAD"
        ):
            buffer.flush()


class LimitedHTTPProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` with the limits of :class:`ConnectionLimits`.

    Args:
        config: uvicorn's configuration.
        server_state: the state uvicorn's server shares between its connections.
        app_state: the lifespan state.
        _loop: the event loop (uvicorn's own argument).
        limits: the limits; by default, those of the ``RATEKEEPER_*`` variables.

    One instance per connection, on the event loop's thread.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits if limits is not None else _limits_from_env()
        registry = _registries.get(server_state)
        if registry is None:
            registry = _registries[server_state] = _Connections()
        self._registry = registry
        self._counted = False
        # Between requests and while a head arrives; off from its end to the end of its body.
        self._head_pending = True
        self._head_reads = 0  # bytes of the reads that began while the head was pending
        self._count_head = False  # whether this read may take the head past the limit
        self._max_head_bytes = self.limits.max_header_bytes
        self._max_headers = self.limits.max_headers
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_pending = False
        self._body_reads = 0
        self._body_reads_seen = 0
        self._body_idle_ticks = 0
        self._body_timer: asyncio.TimerHandle | None = None
        self._rejected = False
        self._head_buffer: _HeadBuffer | None = None

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        registry = self._registry
        if registry.open >= self.limits.max_connections:
            if not registry.idle:
                self._log("503: %d connections open, none idle", registry.open)
                transport.write(
                    _error_bytes(
                        503,
                        "Too many connections: the server is busy; retry.",
                        "too_many_connections",
                        self.server_state.default_headers,
                    )
                )
                self._linger()
                return
            displaced = next(iter(registry.idle))
            displaced._log("displaced by a new connection at the cap (%d)", registry.open)
            displaced._release()
            displaced.transport.close()
        registry.open += 1
        self._counted = True
        registry.idle[self] = None
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)

    def _release(self) -> None:
        """Stop counting this connection and cancel its timers."""
        if self._counted:
            self._counted = False
            self._registry.open -= 1
            self._registry.idle.pop(self, None)
        self._head_pending = self._body_pending = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def handle_websocket_upgrade(self) -> None:
        # The connection now belongs to the WebSocket protocol: its connection_lost is not ours.
        self._release()
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the head and body accounting around the parser.
        self._unset_keepalive_if_required()
        if self._head_pending:
            # A head split over reads is joined inside httptools, out of the callbacks' sight:
            # count the reads. Those that end the head do not matter (the callbacks saw it).
            self._head_reads += len(data)
            self._count_head = self._head_reads > self._max_head_bytes
        else:
            self._body_reads += 1
            # A pipelined head may begin in this read. Its part here is not counted in
            # _head_reads, which then holds such a head to at most twice the limit: pipelining
            # is rare, and memory stays bounded all the same.
            self._count_head = len(data) > self._max_head_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._rejected:
                self._too_large()
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._head_pending:
            if self._head_reads > self._max_head_bytes:
                self._too_large()
            elif self._head_reads and self._head_timer is None:
                # A head begun and not complete: its deadline runs from now. A head that ends
                # in the read it began in, the usual case, never arms a timer.
                self._head_timer = self.loop.call_later(
                    self.limits.header_timeout_s, self._head_timeout
                )
        elif self._body_pending and self._body_timer is None:
            self._body_reads_seen = self._body_reads
            self._body_idle_ticks = 0
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout_s / _BODY_TICKS, self._body_tick
            )

    # Parser callbacks

    def _head_size(self) -> int:
        """Bytes of the request line and header fields (their separators aside)."""
        return len(self.url) + sum(len(name) + len(value) for name, value in self.headers)

    def on_headers_complete(self) -> None:
        # The head is checked once, whole: no per-field cost. A head split over reads was
        # checked read by read (data_received); one that came in a single read is at most
        # that read (256 KiB at most with uvloop or asyncio) in memory, and is measured here
        # only when the reads that carried it exceed the limit: otherwise it cannot.
        if len(self.headers) > self._max_headers or (
            self._count_head and self._head_size() > self._max_head_bytes
        ):
            self._rejected = True
            raise _Rejected
        self._head_pending = False
        self._head_reads = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._registry.idle.pop(self, None)
        self._body_pending = True
        previous = self.cycle
        HttpToolsProtocol.on_headers_complete(self)  # not super(): cheaper, on every request
        cycle = self.cycle
        if cycle is not previous and type(cycle) is RequestResponseCycle:
            # Its task has not run yet: from its first step it writes through the buffer.
            buffer = self._head_buffer
            if buffer is None or buffer.transport is not self.transport:
                buffer = self._head_buffer = _HeadBuffer(self.transport)
            cycle.__class__ = _OneWriteCycle
            cycle.transport = buffer  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._body_pending = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._counted:
            self._head_pending = True
        HttpToolsProtocol.on_message_complete(self)

    def on_response_complete(self) -> None:
        if self._head_pending and self._counted and not self.pipeline:
            # Idle until the next request: the newest candidate for displacement.
            self._registry.idle[self] = None
        HttpToolsProtocol.on_response_complete(self)

    # Limits

    def _too_large(self) -> None:
        limits = self.limits
        self._log(
            "431: request head over %d bytes or %d fields",
            limits.max_header_bytes,
            limits.max_headers,
        )
        self._answer(
            431,
            f"Request header fields too large: at most {limits.max_header_bytes} bytes of "
            f"request line and headers, and {limits.max_headers} header fields, are accepted.",
            "request_header_fields_too_large",
        )

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self._head_pending or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The previous request is still being answered (a pipelined head is late): the
            # client may rightly wait for that answer first.
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._head_timeout
            )
            return
        if self._head_reads == 0:
            self._log("closed: no request within %gs", self.limits.header_timeout_s)
            self._release()
            self.transport.close()
            return
        self._log("408: request head not complete within %gs", self.limits.header_timeout_s)
        self._answer(
            408,
            f"Request timeout: the request headers were not complete within "
            f"{self.limits.header_timeout_s:g} seconds.",
            "request_timeout",
        )

    def _body_tick(self) -> None:
        self._body_timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        cycle = self.cycle
        if (
            self._body_reads != self._body_reads_seen
            or self.flow.read_paused  # the app is not reading yet: the wait is ours
            or (cycle is not None and cycle.waiting_for_100_continue)
        ):
            self._body_reads_seen = self._body_reads
            self._body_idle_ticks = 0
        else:
            self._body_idle_ticks += 1
            if self._body_idle_ticks >= _BODY_TICKS:
                self._log("408: request body idle for %gs", self.limits.body_timeout_s)
                self._answer(
                    408,
                    f"Request timeout: no part of the request body arrived for "
                    f"{self.limits.body_timeout_s:g} seconds.",
                    "request_timeout",
                )
                return
        self._body_timer = self.loop.call_later(
            self.limits.body_timeout_s / _BODY_TICKS, self._body_tick
        )

    def _answer(self, status: int, message: str, code: str) -> None:
        """Answer ``status`` unless a response is under way on this connection; then close."""
        cycle = self.cycle
        in_body = self._body_pending
        self._release()
        busy = cycle is not None and not cycle.response_complete
        # In a body, the request's own answer may have begun (or ended: an early 413 on a
        # kept-alive connection); in a head, the previous request's may still be under way.
        write = (cycle is None or not cycle.response_started) if in_body else not busy
        if busy:
            # The request in the application now reads a disconnect, and its writes are dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        if write:
            self.transport.write(
                _error_bytes(status, message, code, self.server_state.default_headers)
            )
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        """Send what is written, then the end of the stream; drop input until the client
        closes too, or for at most _LINGER_S seconds."""
        transport = self.transport
        if not transport.can_write_eof():  # TLS
            transport.close()
            return
        # The connection leaves uvicorn's hands, as on a WebSocket upgrade: its
        # connection_lost will reach the lingering protocol, not this one.
        self.connections.discard(self)
        self._unset_keepalive_if_required()
        self.flow.resume_writing()  # an application blocked on a full buffer sees the end
        transport.set_protocol(_Lingering(transport, self.loop))
        transport.write_eof()
        if not transport.is_reading():
            transport.resume_reading()

    def _log(self, message: str, *args: object) -> None:
        if _logger.isEnabledFor(logging.INFO):
            client = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
            _logger.info(client + message, *args)
