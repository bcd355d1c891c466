"""The request log of development mode (``GET /ratekeeper/dev/requests``): what the service
answered, for a test's assertions, never a secret. See :mod:`ratekeeper.server.dev`."""

from __future__ import annotations

from collections import deque
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Where the development routes live (their own requests are not logged).
DEV_PREFIX = "/ratekeeper/dev"
#: Requests the log keeps (the oldest are dropped first).
REQUEST_LOG_SIZE = 1000


class _Entry:
    """What the log learns about one request while it is served (no secret ever goes in)."""

    __slots__ = ("injected", "outcome", "session_id")

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.outcome: str | None = None
        self.injected: str | None = None


_current: ContextVar[_Entry | None] = ContextVar("ratekeeper_dev_request", default=None)


def note(session_id: str | None, outcome: str | None, injected: str | None = None) -> None:
    """Tell the log about the request being served (ids and outcomes only; ``None``: unchanged).

    Called by :class:`~ratekeeper.server._dev_faults.DevGate`; does nothing outside a request.
    """
    entry = _current.get()
    if entry is None:
        return
    if session_id is not None:
        entry.session_id = session_id
    if outcome is not None:
        entry.outcome = outcome
    if injected is not None:
        entry.injected = injected


class RecentRequests:
    """The last :data:`REQUEST_LOG_SIZE` requests answered, as plain dicts, oldest first.

    Each holds ``method``, ``route`` (the path template, ``"unmatched"`` when no route
    matched), ``status``, ``session_id``, ``outcome`` (the admission's reason, ``None`` where
    nothing was admitted), ``injected`` (the fault applied, if any) and ``request_id``. Never
    a secret, a raw path or a body. The dev routes' own requests are left out.

    Not thread-safe: the service's event loop owns it.
    """

    __slots__ = ("_entries",)

    def __init__(self, size: int = REQUEST_LOG_SIZE) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def append(self, entry: dict[str, Any]) -> None:
        """Log one request (dropping the oldest when full)."""
        self._entries.append(entry)

    def last(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the last ``limit`` entries (all when ``None``), newest last."""
        entries = list(self._entries)
        return entries if limit is None else entries[-limit:] if limit else []

    def clear(self) -> int:
        """Forget every entry; return how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count


class RecentRequestsMiddleware:
    """Pure ASGI middleware filling :class:`RecentRequests` (inside ``ServiceMiddleware``).

    A request is logged when its response starts (a stream is in the log before it ends), or
    as a 500 when the app raised first. Other scope types pass through.
    """

    def __init__(self, app: ASGIApp, log: RecentRequests) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a fresh entry in the context; log it when the response starts."""
        if scope["type"] != "http" or scope["path"].startswith(DEV_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        entry = _Entry()
        logged = False

        def record(status: int) -> None:
            route = getattr(scope.get("route"), "path", None)
            self.log.append(
                {
                    "method": scope["method"],
                    "route": route if isinstance(route, str) else "unmatched",
                    "status": status,
                    "session_id": entry.session_id,
                    "outcome": entry.outcome,
                    "injected": entry.injected,
                    "request_id": scope.get("ratekeeper.request_id"),
                }
            )

        async def send_logged(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start" and not logged:
                logged = True
                record(int(message["status"]))
            await send(message)

        token = _current.set(entry)
        try:
            await self.app(scope, receive, send_logged)
        finally:
            _current.reset(token)
            if not logged:
                record(500)
