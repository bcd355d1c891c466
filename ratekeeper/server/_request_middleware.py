"""Pure ASGI middleware of the service (no ``BaseHTTPMiddleware``: it breaks contextvars and
streaming)."""

from __future__ import annotations

import os
import re
import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._redact import SHAPES
from ._http_metrics import METHODS, HttpMetrics, route_of
from ._responses import REQUEST_ID_KEY, redactor_of

# An incoming id is kept only if it is short, plain and cannot be a credential: a caller that
# puts its client secret (``ek_…``) or API key (``rk-…``, or any configured key) in the header
# by mistake must not get it written to every log line of the request.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestLog:
    """What the logs say about the request being served: its id and when it arrived
    (``time.perf_counter()``).

    One per request and never changed, so safe to share across threads.
    """

    __slots__ = ("request_id", "started_at")

    def __init__(self, request_id: str, started_at: float) -> None:
        self.request_id = request_id
        self.started_at = started_at


#: The request the current task serves; read by :class:`~ratekeeper.server._logs.RequestContext`.
current_request: ContextVar[RequestLog | None] = ContextVar(
    "ratekeeper_current_request", default=None
)


def _acceptable(candidate: str, scope: Scope) -> bool:
    if not _WELL_FORMED.fullmatch(candidate):
        return False
    # The redaction's own rule (lower-cased too: an "EK_…" is refused like an "ek_…").
    redactor = redactor_of(scope.get("app"))
    return not (redactor.finds(candidate) or SHAPES.finds(candidate.lower()))


def _request_id_for(scope: Scope) -> str:
    """Return the request's well-formed ``x-request-id``, or a new ``req_`` and 32 hex digits."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate: str = value.decode("latin-1")
            if _acceptable(candidate, scope):
                return candidate
            break
    return "req_" + os.urandom(16).hex()  # 128 random bits, without building a UUID object


class ServiceMiddleware:
    """The service's own middleware: it times and counts every HTTP request (by route template)
    and gives it a request id, as one layer.

    The request is timed from its arrival to its response's end (a streamed answer is timed
    in full) and counted when its response starts, with the status it has; a request whose app
    raised before answering is counted as a 500 (Starlette's outermost middleware answers it).
    The id is the request's own ``x-request-id`` when well formed (at most 128 characters of
    ``A-Za-z0-9._:-``, not shaped like a client secret or an API key), else ``req_`` and 32 hex
    digits; the response gets it as ``x-request-id``, and it is put in the scope under
    :data:`~ratekeeper.server._responses.REQUEST_ID_KEY` (so error handlers running outside
    this middleware can add it too) and in :data:`current_request` for the log filter. One
    coroutine and one wrapper of ``send`` per request (it replaced two nested middlewares).
    Other scope types pass through. Stateless apart from thread-safe collectors, so safe to
    share across threads.
    """

    __slots__ = ("app", "metrics")

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the id in place, recording the response's status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        if method not in METHODS:
            method = "other"
        request_id = _request_id_for(scope)
        scope[REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode())
        status: int | None = None
        metrics = self.metrics

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
                status = int(message["status"])
                metrics.count(route_of(scope), method, status)
            await send(message)

        token = current_request.set(RequestLog(request_id, started))
        try:
            await self.app(scope, receive, send_with_id)
            # Not reset when the app raises: the server-error handler's 500, its access line
            # and the server's error line come after, in this same task (uvicorn runs each
            # request in a task of its own, so the value goes no further).
            current_request.reset(token)
        finally:
            route = route_of(scope)
            if status is None:  # raised (or was cancelled) before answering
                metrics.count(route, method, 500)
            metrics.observe(route, method, time.perf_counter() - started)
