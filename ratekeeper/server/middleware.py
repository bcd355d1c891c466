"""Pure ASGI middleware of the service (no ``BaseHTTPMiddleware``: it breaks streaming)."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import REQUEST_ID_KEY

__all__ = ("RequestIdMiddleware",)


class RequestIdMiddleware:
    """Give every HTTP response an ``x-request-id`` header (``req_`` and 32 hex digits).

    The id is also put in the scope under :data:`~ratekeeper.server.responses.REQUEST_ID_KEY`
    so error handlers running outside this middleware can add it too. Other scope types pass
    through untouched. Stateless, so safe to share across threads.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with ``send`` wrapped to add the header to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + uuid.uuid4().hex
        scope[REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
