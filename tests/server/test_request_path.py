"""The cheap request path gives the answers of the general one it stands in for.

``POST /v1/chatkit/sessions`` is served by :class:`SessionCreation` (a plain ASGI endpoint)
rather than the request handler :func:`create_session` through Starlette's wrappers; every
request passes one :class:`ServiceMiddleware` rather than the two nested middlewares it
replaced (kept below as the reference); the API key and the beta header are checked on the
raw scope by ``ServiceContext.authorize_scope`` rather than on a ``Request``. Each pair is
driven alike here and must answer alike: status, headers, body, metrics, request ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ratekeeper._http_errors import ApiError
from ratekeeper.server import ServerSettings, ServiceContext, create_app
from ratekeeper.server._http_metrics import METHODS, HttpMetrics, route_of
from ratekeeper.server._request_middleware import (
    RequestLog,
    ServiceMiddleware,
    _request_id_for,
    current_request,
)
from ratekeeper.server._responses import REQUEST_ID_KEY
from ratekeeper.server._sessions import SessionCreation, create_session

from .conftest import API_KEY

pytestmark = pytest.mark.anyio

_PATH = "/v1/chatkit/sessions"
_GOOD = {"authorization": f"Bearer {API_KEY}", "openai-beta": "chatkit_beta=v1"}
_BODY = b'{"user": "u", "workflow": {"id": "wf"}}'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _apps(**settings: Any) -> tuple[Any, Any]:
    """The service as built, and the same with the general handler on the create route."""
    fast = create_app(ServerSettings(api_keys=(API_KEY,), max_body_bytes=200, **settings))
    general = create_app(ServerSettings(api_keys=(API_KEY,), max_body_bytes=200, **settings))
    routes = general.router.routes
    (index,) = [i for i, route in enumerate(routes) if getattr(route, "path", None) == _PATH]
    assert isinstance(getattr(routes[index], "endpoint", None), SessionCreation)
    routes[index] = Route(_PATH, create_session, methods=["POST"])
    return fast, general


# (headers, body): every refusal the route gives, and a valid body.
_CASES: list[tuple[list[tuple[str, str]], bytes]] = [
    (list(_GOOD.items()), _BODY),
    ([("openai-beta", "chatkit_beta=v1")], _BODY),
    ([("authorization", "Basic abc"), ("openai-beta", "chatkit_beta=v1")], _BODY),
    ([("authorization", "bearer  " + API_KEY + " "), ("openai-beta", "chatkit_beta=v1")], _BODY),
    ([("authorization", "Bearer ek_abc"), ("openai-beta", "chatkit_beta=v1")], _BODY),
    ([("authorization", "Bearer rk-wrong"), ("openai-beta", "chatkit_beta=v1")], _BODY),
    ([("authorization", f"Bearer {API_KEY}")], _BODY),
    ([("authorization", f"Bearer {API_KEY}"), ("openai-beta", "assistants=v2")], _BODY),
    (
        [
            ("authorization", f"Bearer {API_KEY}"),
            ("openai-beta", "assistants=v2"),
            ("openai-beta", " chatkit_beta=v1 ,x"),
        ],
        _BODY,
    ),
    ([("authorization", f"Bearer {API_KEY}"), ("openai-beta", "chatkit_beta=v1,x")], _BODY),
    ([*_GOOD.items(), ("content-type", "text/plain")], _BODY),
    ([*_GOOD.items(), ("content-type", "application/vnd.x+json; charset=utf-8")], _BODY),
    (list(_GOOD.items()), b"x" * 201),
    (list(_GOOD.items()), b"{"),
    (list(_GOOD.items()), b""),
    (list(_GOOD.items()), b'{"user": "u"}'),
    (list(_GOOD.items()), b'{"user": "u", "workflow": {"id": "wf"}, "ttl_seconds": 5}'),
    (list(_GOOD.items()), b'{"user": "ek_' + b"a" * 43 + b'", "workflow": {"id": 1}}'),
]


def _shape(response: httpx.Response) -> tuple[Any, ...]:
    """What must be equal: the status, the headers (the request id's shape only), the body
    (a created session's fields with their types, since its id and secret are random)."""
    headers = [
        (name, value if name != "x-request-id" else value[:4] + str(len(value)))
        for name, value in response.headers.multi_items()
        if not (response.status_code == 200 and name == "content-length")
    ]
    body = response.json()
    if response.status_code == 200:
        body = {key: type(value).__name__ for key, value in body.items()}
    return response.status_code, headers, json.dumps(body, sort_keys=True)


@pytest.mark.parametrize("relaxed", [False, True])
async def test_session_creation_answers_as_the_request_handler(relaxed: bool) -> None:
    apps = _apps(allow_missing_beta_header=relaxed)
    shapes = []
    for app in apps:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            shapes.append(
                [
                    _shape(await client.post(_PATH, content=body, headers=headers))
                    for headers, body in _CASES
                ]
            )
    fast, general = shapes
    assert fast == general
    assert [status for status, _, _ in fast].count(200) == (7 if relaxed else 5)


def _outcome(check: Callable[[Any], None], argument: Any) -> tuple[Any, ...] | None:
    try:
        check(argument)
    except ApiError as exc:
        return (exc.status_code, exc.code, str(exc), exc.headers)
    return None


def test_authorize_scope_checks_as_authorize() -> None:
    context: ServiceContext = create_app(ServerSettings(api_keys=(API_KEY,))).state.ratekeeper
    for headers, _ in _CASES:
        raw = [(name.encode(), value.encode("latin-1")) for name, value in headers]
        # Names as a client might send them, when the server does not lower them.
        for scope_headers in (raw, [(name.title(), value) for name, value in raw]):
            scope = {"type": "http", "method": "POST", "path": _PATH, "headers": scope_headers}
            assert _outcome(context.authorize, Request(scope)) == _outcome(
                context.authorize_scope, scope
            ), scope_headers


# -- the reference: the two middlewares ServiceMiddleware replaced, as they were ---------------


class RequestIdMiddleware:
    """Give every HTTP response an ``x-request-id`` header, and every log line of the request.

    The id is the request's own ``x-request-id`` when well formed (at most 128 characters of
    ``A-Za-z0-9._:-``, not shaped like a client secret or an API key), else ``req_`` and 32
    hex digits. It is put in the scope under
    :data:`~ratekeeper.server._responses.REQUEST_ID_KEY`, so error handlers running outside this
    middleware can add it too, and in :data:`current_request` for the log filter. Other scope
    types pass through untouched. Stateless, so safe to share across threads.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with ``send`` wrapped to add the header to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id_for(scope)
        scope[REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = current_request.set(RequestLog(request_id, time.perf_counter()))
        await self.app(scope, receive, send_with_id)
        # Not reset when the app raises: the server-error handler's 500, its access line and
        # the server's error line come after, in this same task (uvicorn runs each request in
        # a task of its own, so the value goes no further).
        current_request.reset(token)


class HttpMetricsMiddleware:
    """Count and time every HTTP request by route template (pure ASGI, streaming-safe).

    The request is counted when its response starts (then its status is known) and its
    duration observed when the response ends, so a streamed answer is timed in full. A request
    whose app raised before answering is counted as a 500 (Starlette's outermost middleware
    answers it). Other scope types pass through. Stateless apart from thread-safe collectors,
    so safe to share across threads.
    """

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, recording the response's status and total duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in METHODS else "other"
        status: int | None = None
        metrics = self.metrics

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                metrics.count(route_of(scope), method, status)
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = route_of(scope)
            if status is None:  # raised (or was cancelled) before answering
                metrics.count(route, method, 500)
            metrics.observe(route, method, time.perf_counter() - started)


def _middleware_pair() -> Iterator[tuple[str, Any, CollectorRegistry]]:
    """The one layer and the two it replaces, each on a registry of its own."""
    for name in ("one", "two"):
        registry = CollectorRegistry()
        metrics = HttpMetrics(registry)

        def wrap(app: Any, name: str = name, metrics: HttpMetrics = metrics) -> Any:
            if name == "one":
                return ServiceMiddleware(app, metrics)
            return HttpMetricsMiddleware(RequestIdMiddleware(app), metrics)

        yield name, wrap, registry


class _Route:
    path = "/things/{thing_id}"


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    scope["route"] = _Route()
    scope["seen"] = (scope[REQUEST_ID_KEY], current_request.get())
    await send({"type": "http.response.start", "status": 201, "headers": [(b"a", b"b")]})
    await send({"type": "http.response.body", "body": b"x", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _raise_before(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("before")


async def _raise_after(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200})
    raise RuntimeError("after")


async def test_the_service_middleware_does_what_the_two_it_replaces_do() -> None:
    results: dict[str, list[Any]] = {}
    for name, wrap, registry in _middleware_pair():
        got: list[Any] = results.setdefault(name, [])
        for app, method, incoming in (
            (_answer, "GET", b"client-id_1"),
            (_answer, "BREW", None),
            (_raise_before, "POST", b"client-id_2"),
            (_raise_after, "DELETE", b"ek_" + b"a" * 43),
        ):
            sent: list[Message] = []

            async def send(message: Message, sent: list[Message] = sent) -> None:
                sent.append(message)

            async def receive() -> Message:
                return {"type": "http.disconnect"}

            headers = [] if incoming is None else [(b"x-request-id", incoming)]
            scope: dict[str, Any] = {"type": "http", "method": method, "headers": headers}
            token = current_request.set(None)
            try:
                await wrap(app)(scope, receive, send)
            except RuntimeError as exc:
                got.append(str(exc))
            after = current_request.get()
            current_request.reset(token)
            request_id = scope[REQUEST_ID_KEY]
            generated = incoming is None or request_id != incoming.decode()
            if generated:
                assert request_id.startswith("req_")
                assert len(request_id) == 36
                request_id = "<generated>"
            for message in sent:
                if message["type"] == "http.response.start":
                    message["headers"] = [
                        (k, b"<generated>" if generated and k == b"x-request-id" else v)
                        for k, v in message["headers"]
                    ]
            seen = scope.get("seen")
            if seen is not None:
                assert seen[1] is not None
                assert seen[1].request_id == seen[0]
                seen = seen[0] if not generated else "<generated>"
            got.append((request_id, sent, seen, after is None))
        got.append(
            sorted(
                line
                for line in generate_latest(registry).decode().splitlines()
                # Not the buckets nor the sum: durations differ from run to run.
                if line.startswith(
                    (
                        "ratekeeper_http_requests_total",
                        "ratekeeper_http_request_duration_seconds_count",
                    )
                )
            )
        )
        # Non-HTTP scopes pass through untouched.
        passed: list[Scope] = []

        async def record(
            scope: Scope, receive: Receive, send: Send, passed: list[Scope] = passed
        ) -> None:
            passed.append(dict(scope))

        await wrap(record)({"type": "lifespan"}, receive, send)
        got.append(passed)
    assert results["one"] == results["two"]
