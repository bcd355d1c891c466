"""Cross-origin access to the session-scoped routes, for a ChatKit front end on another origin.

The ChatKit web component is usually served from the app's own origin and calls this service
with the session's client secret in ``Authorization``: the browser sends a preflight first, and
lets the page read only the response headers named in ``Access-Control-Expose-Headers``.

Starlette's own :class:`~starlette.middleware.cors.CORSMiddleware` does the work, wrapped
around each session-scoped route alone (never the REST surface, which takes API keys that
belong on a server, nor ``/metrics``), so:

* a preflight is answered by the middleware: the route's handler, hence the gate, never runs
  and the session spends nothing;
* every answer of the route, admitted or refused (401, 429, 503, raised or returned), passes
  back through it and carries ``Access-Control-Allow-Origin``, so the page can read the error
  and its retry headers;
* with no origin configured nothing is wrapped: no CORS headers, and ``OPTIONS`` is a 405.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

#: Request headers a page may send besides the CORS-safelisted ones.
ALLOWED_HEADERS = ("authorization", "content-type")

#: Response headers a page may read: the rate-limit and retry headers, and the request id.
EXPOSED_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "ratelimit",
    "ratelimit-policy",
    "retry-after",
    "retry-after-ms",
    "x-request-id",
)


class _OptionsNotAllowed:
    """Answers an ``OPTIONS`` that is no CORS preflight with the 405 the route gave before.

    The route accepts ``OPTIONS`` so that preflights reach the CORS middleware; any other
    ``OPTIONS`` must not reach the handler (it would be admitted, and counted, as a request).
    Holds nothing mutable: safe to share.
    """

    __slots__ = ("allow", "app")

    def __init__(self, app: ASGIApp, *, allow: str) -> None:
        self.app = app
        self.allow = allow

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "OPTIONS":
            raise HTTPException(405, headers={"Allow": self.allow})
        await self.app(scope, receive, send)


def with_cors(route: Route, origins: Sequence[str]) -> Route:
    """Return ``route`` (same path, endpoint and name) answering CORS for ``origins``.

    Args:
        route: a route whose endpoint is a request handler or an ASGI app.
        origins: the allowed origins, exactly as browsers send ``Origin``
            (``https://chat.example.com``).
    """
    methods = sorted((route.methods or {"GET"}) - {"HEAD"})
    return Route(
        route.path,
        route.endpoint,
        methods=[*methods, "OPTIONS"],
        name=route.name,
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=tuple(origins),
                allow_methods=methods,
                allow_headers=ALLOWED_HEADERS,
                expose_headers=EXPOSED_HEADERS,
            ),
            Middleware(_OptionsNotAllowed, allow=", ".join(route.methods or ())),
        ],
    )
