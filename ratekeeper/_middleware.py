"""Pure ASGI middleware that puts a :class:`~ratekeeper.Gate` in front of any ASGI app.

A plain class with ``async def __call__(scope, receive, send)`` (like Starlette's
``TrustedHostMiddleware``), not ``BaseHTTPMiddleware``, which breaks contextvars and
streaming. Every answer comes from :meth:`Gate.check <ratekeeper.Gate.check>`: this module
only moves its verdict onto the wire.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from anyio import WouldBlock

from ._bearer import bearer_token_in as bearer_token
from ._gate import Gate
from ._ratelimit_headers import EncodedHeaders, Verdict, encoded_headers

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Key under ``scope["state"]`` (Starlette: ``request.state.ratekeeper_decision``) holding the
#: admitted request's :class:`~ratekeeper.Decision`, so handlers know the session id.
DECISION_STATE_KEY = "ratekeeper_decision"

_JSON = (b"content-type", b"application/json")


#: The header names the gate adds; an app that sets one itself keeps its own value.
_GATE_HEADERS = frozenset(
    name.encode()
    for name in (
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "ratelimit-policy",
        "ratelimit",
        "retry-after",
        "retry-after-ms",
    )
)


def _path_matcher(paths: Iterable[str] | Callable[[str], bool] | None) -> Callable[[str], bool]:
    if paths is None:
        return lambda path: True
    if callable(paths):
        return paths
    # A lone string is one prefix, not an iterable of one-character "paths".
    prefixes = (paths,) if isinstance(paths, str) else tuple(paths)
    for prefix in prefixes:
        if not prefix.startswith("/"):
            raise ValueError(f"guarded paths start with '/': {prefix!r}")
    exact = frozenset(p.rstrip("/") or "/" for p in prefixes)
    # "/chatkit" guards "/chatkit" and "/chatkit/…", never "/chatkitx".
    below = tuple(p if p.endswith("/") else p + "/" for p in prefixes)

    def matches(path: str) -> bool:
        return path in exact or path.startswith(below)

    return matches


class RatekeeperMiddleware:
    """Admit or refuse every guarded HTTP request before the wrapped app sees it.

    Args:
        app: the ASGI app to guard.
        gate: the gate that decides (its sweeper is run by whoever owns it).
        paths: which request paths are guarded: ``None`` (every HTTP path), a path prefix or
            several (``"/chatkit"`` guards ``/chatkit`` and everything under ``/chatkit/``),
            or a function of the path. A request is guarded when its full path matches, or
            its path relative to the scope's ``root_path`` (under a mount) does.
        secret_from: how to find the client secret in the scope; by default the token of
            ``Authorization: Bearer <client_secret>``.

    Refusals (401, 429, 503) are answered here in OpenAI's error shape, with the verdict's
    headers; the app never runs. Admitted responses get the rate-limit headers added to
    ``http.response.start`` (headers the app set itself win); bodies, streamed or not, pass
    through untouched. Non-HTTP scopes (lifespan, websocket) and unguarded paths go straight
    to the app.

    Holds no per-request state, so it is as thread-safe as its gate (one event loop).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: Gate,
        paths: Iterable[str] | Callable[[str], bool] | None = None,
        secret_from: Callable[[Scope], str | None] | None = None,
    ) -> None:
        self.app = app
        self.gate = gate
        self._guarded = _path_matcher(paths)
        self._secret_from = secret_from
        # The last gate whose check_nowait() said it must be awaited.
        self._awaited_gate: Gate | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or not (
            self._guarded(scope["path"]) or self._guarded_under_root(scope)
        ):
            await self.app(scope, receive, send)
            return
        if self._secret_from is not None:
            secret = self._secret_from(scope)
        else:
            secret = bearer_token(scope["headers"])
        gate = self.gate
        # An in-memory gate decides without awaiting: no coroutine for the check. A gate
        # that must be awaited (Redis) says so once and is awaited from then on.
        if gate is self._awaited_gate:
            verdict = await gate.check(secret)
        else:
            try:
                verdict = gate.check_nowait(secret)
            except WouldBlock:
                self._awaited_gate = gate
                verdict = await gate.check(secret)
        if not verdict.allowed:
            await _refuse(verdict, send)
            return
        # Into the scope's own state dict (a per-request copy, per the ASGI spec), as Starlette's
        # request.state does, so middleware outside this one sees the decision too.
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state[DECISION_STATE_KEY] = verdict.decision
        # Built once with the verdict's headers (and, when admitted, shared by every decision
        # with the same limit and remaining): not encoded again here.
        headers = verdict.headers
        extra = headers.raw if type(headers) is EncodedHeaders else encoded_headers(verdict)
        if not extra:  # failing open: nothing known about the window, nothing to add
            await self.app(scope, receive, send)
            return

        # Not a coroutine function: it hands back send's own awaitable, so the app's two
        # sends (start and body) cost no extra coroutine each.
        def send_with_headers(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                own = message.get("headers", ())
                for name, _ in own:
                    if name.lower() in _GATE_HEADERS:  # the app set one: its own value wins
                        present = {name.lower() for name, _ in own}
                        headers = [*own, *(pair for pair in extra if pair[0] not in present)]
                        break
                else:
                    headers = [*own, *extra]
                # A copy: the app may send the same message object again.
                message = {**message, "headers": headers}
            return send(message)

        await self.app(scope, receive, send_with_headers)

    def _guarded_under_root(self, scope: Scope) -> bool:
        # Under a mount (Starlette's Mount, uvicorn --root-path) ``path`` is the full path and
        # starts with ``root_path``; guarded paths are also matched relative to it, as routes
        # are, so mounting the guarded app under a prefix never lets requests past the gate.
        root: str = scope.get("root_path", "")
        path: str = scope["path"]
        if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
            return self._guarded(path[len(root) :] or "/")
        return False

    def __repr__(self) -> str:
        return f"RatekeeperMiddleware(app={self.app!r}, gate={self.gate!r})"


async def _refuse(verdict: Verdict, send: Send) -> None:
    body = verdict.body()
    headers = [_JSON, (b"content-length", b"%d" % len(body)), *encoded_headers(verdict)]
    await send({"type": "http.response.start", "status": verdict.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
