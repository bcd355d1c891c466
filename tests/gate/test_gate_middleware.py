"""RatekeeperMiddleware behind a real uvicorn on loopback, driven by a real httpx client.

uvicorn serves asyncio only, so these tests run on asyncio. The engine runs on a ManualClock the
test advances, so expiry and window arithmetic need no waiting; nothing asserts on durations.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import Scope

from ratekeeper import Gate, ManualClock, RatekeeperMiddleware, Verdict
from ratekeeper._bearer import bearer_token_in as bearer_token
from ratekeeper._middleware import DECISION_STATE_KEY

from ._server import serving

pytestmark = pytest.mark.anyio

CHUNKS = [b"data: one\n\n", b"data: two\n\n", b"x" * 70_000, b"data: done\n\n"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo(request: Request) -> JSONResponse:
    decision = getattr(request.state, DECISION_STATE_KEY, None)
    return JSONResponse({"session_id": decision.session_id if decision else None})


async def stream(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for chunk in CHUNKS:
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream")


async def own_headers(request: Request) -> PlainTextResponse:
    return PlainTextResponse("mine", headers={"x-ratelimit-limit-requests": "app-value"})


async def open_route(request: Request) -> PlainTextResponse:
    return PlainTextResponse("open")


def build_app(gate: Gate) -> Any:
    app = Starlette(
        routes=[
            Route("/v1/echo", echo, methods=["GET", "POST"]),
            Route("/v1/stream", stream),
            Route("/v1/own-headers", own_headers),
            Route("/open", open_route),
            Route("/v1x", open_route),
        ]
    )
    return RatekeeperMiddleware(app, gate=gate, paths=["/v1"])


def auth(secret: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def allowed_count(gate: Gate) -> float:
    return gate.registry.get_sample_value("ratekeeper_decisions_total", {"outcome": "allowed"}) or 0


async def test_an_admitted_request_reaches_the_app_with_rate_limit_headers(gate: Gate) -> None:
    session = await gate.create_session("u1", max_requests_per_1_minute=3)
    async with serving(build_app(gate)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/echo", headers=auth(session.client_secret))
    assert response.status_code == 200
    assert response.json() == {"session_id": session.id}
    assert response.headers["x-ratelimit-limit-requests"] == "3"
    assert response.headers["x-ratelimit-remaining-requests"] == "2"
    assert response.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert response.headers["ratelimit-policy"] == '"session";q=3;w=60'
    assert response.headers["ratelimit"] == '"session";r=2;t=60'
    assert "retry-after" not in response.headers


async def test_the_request_over_the_limit_gets_429_with_retry_after(
    gate: Gate, clock: ManualClock
) -> None:
    session = await gate.create_session("u1", max_requests_per_1_minute=2)
    async with serving(build_app(gate)) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(2):
            ok = await client.post("/v1/echo", headers=auth(session.client_secret))
            assert ok.status_code == 200
        clock.advance(14.5)
        refused = await client.post("/v1/echo", headers=auth(session.client_secret))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "46"  # 45.5 s, rounded up
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "45.5s"
    assert refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert session.client_secret is not None
    assert session.client_secret not in refused.text


async def test_refused_secrets_get_401_with_distinct_codes(gate: Gate, clock: ManualClock) -> None:
    cancelled = await gate.create_session("u1")
    expiring = await gate.create_session("u2", expires_after_s=1)
    await gate.cancel(cancelled.id)
    clock.advance(1)
    cases = {
        "missing": {},
        "not bearer": {"authorization": f"Basic {cancelled.client_secret}"},
        "empty bearer": {"authorization": "Bearer"},
        "unknown": auth("ek_never_issued"),
        "cancelled": auth(cancelled.client_secret),
        "expired": auth(expiring.client_secret),
    }
    codes = {}
    async with serving(build_app(gate)) as url, httpx.AsyncClient(base_url=url) as client:
        for name, headers in cases.items():
            response = await client.get("/v1/echo", headers=headers)
            assert response.status_code == 401, name
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert int(response.headers["content-length"]) == len(response.content)
            codes[name] = response.json()["error"]["code"]
            for secret in (cancelled.client_secret, expiring.client_secret):
                assert secret is not None
                assert secret not in response.text
    assert codes == {
        "missing": "missing_client_secret",
        "not bearer": "missing_client_secret",
        "empty bearer": "missing_client_secret",
        "unknown": "invalid_client_secret",
        "cancelled": "session_cancelled",
        "expired": "session_expired",
    }


async def test_a_streamed_body_passes_through_untouched(gate: Gate) -> None:
    session = await gate.create_session("u1")
    received: list[bytes] = []
    async with (
        serving(build_app(gate)) as url,
        httpx.AsyncClient(base_url=url) as client,
        client.stream("GET", "/v1/stream", headers=auth(session.client_secret)) as response,
    ):
        async for chunk in response.aiter_raw():
            received.append(chunk)
    assert response.status_code == 200
    assert b"".join(received) == b"".join(CHUNKS)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-ratelimit-remaining-requests"] == "9"


async def test_headers_the_app_sets_itself_win(gate: Gate) -> None:
    session = await gate.create_session("u1")
    async with serving(build_app(gate)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/v1/own-headers", headers=auth(session.client_secret))
    assert response.headers.get_list("x-ratelimit-limit-requests") == ["app-value"]
    assert response.headers["x-ratelimit-remaining-requests"] == "9"
    assert response.text == "mine"


async def test_unguarded_paths_pass_through_without_a_decision(gate: Gate) -> None:
    async with serving(build_app(gate)) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("/open", "/v1x"):
            response = await client.get(path)
            assert response.status_code == 200
            assert "x-ratelimit-limit-requests" not in response.headers
    assert (
        gate.registry.get_sample_value("ratekeeper_decisions_total", {"outcome": "missing_secret"})
        == 0
    )


async def test_guarded_paths_hold_under_a_mount_prefix(gate: Gate) -> None:
    """Mounted at /api, scope["path"] is /api/v1/...: the prefix /v1 is relative to root_path."""
    inner = Starlette(routes=[Route("/v1/echo", echo), Route("/open", open_route)])
    outer = Starlette(
        routes=[Mount("/api", app=RatekeeperMiddleware(inner, gate=gate, paths=["/v1"]))]
    )
    async with serving(outer) as url, httpx.AsyncClient(base_url=url) as client:
        refused = await client.get("/api/v1/echo")
        passed = await client.get("/api/open")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "missing_client_secret"
    assert passed.status_code == 200


async def test_many_concurrent_requests_on_one_session_never_exceed_the_limit(
    gate: Gate,
) -> None:
    session = await gate.create_session("u1", max_requests_per_1_minute=7)
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=20)
    async with (
        serving(build_app(gate)) as url,
        httpx.AsyncClient(base_url=url, limits=limits) as client,
    ):

        async def one() -> None:
            response = await client.get("/v1/echo", headers=auth(session.client_secret))
            statuses.append(response.status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(one)
    assert sorted(statuses) == [200] * 7 + [429] * 53
    assert allowed_count(gate) == 7


async def test_a_failing_backend_gives_503_when_closed_and_passes_when_open(
    failing_backend: Any,
) -> None:
    closed = Gate(failing_backend)
    opened = Gate(failing_backend, fail_open=True)
    async with (
        serving(build_app(closed)) as closed_url,
        serving(build_app(opened)) as open_url,
        httpx.AsyncClient() as client,
    ):
        refused = await client.get(f"{closed_url}/v1/echo", headers=auth("ek_some"))
        passed = await client.get(f"{open_url}/v1/echo", headers=auth("ek_some"))
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "backend_unavailable"
    assert refused.json()["error"]["type"] == "server_error"
    assert passed.status_code == 200
    assert passed.json() == {"session_id": None}
    assert "x-ratelimit-limit-requests" not in passed.headers


async def test_lifespan_reaches_the_wrapped_app(gate: Gate) -> None:
    events: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    async with serving(RatekeeperMiddleware(app, gate=gate), lifespan="on"):
        assert events == ["lifespan.startup"]
    assert events == ["lifespan.startup", "lifespan.shutdown"]


async def test_websocket_scopes_pass_through_untouched(gate: Gate) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "websocket", "path": "/v1/ws", "headers": []}

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        raise AssertionError("the middleware must not answer a websocket")

    await RatekeeperMiddleware(app, gate=gate)(scope, receive, send)
    assert seen == [scope]
    assert seen[0] is scope


async def test_the_decision_is_visible_to_middleware_outside_the_gate(gate: Gate) -> None:
    """Like Starlette's request.state, the decision lands in the scope's own state dict."""
    session = await gate.create_session("u1")
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        seen.append(message)

    secret = f"Bearer {session.client_secret}".encode()
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/v1/echo",
        "headers": [(b"authorization", secret)],
        "state": {},
    }
    await RatekeeperMiddleware(app, gate=gate)(scope, receive, send)  # an outer logger's view
    assert seen[0]["status"] == 204
    assert scope["state"][DECISION_STATE_KEY].session_id == session.id


def test_bearer_token_parsing() -> None:
    assert bearer_token([(b"authorization", b"Bearer ek_1")]) == "ek_1"
    assert bearer_token([(b"Authorization", b"bearer   ek_2 ")]) == "ek_2"
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
    assert bearer_token([(b"authorization", b"Bearer")]) is None
    assert bearer_token([(b"host", b"x")]) is None


def test_guarded_paths_must_be_absolute(gate: Gate) -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        RatekeeperMiddleware(PlainTextResponse("x"), gate=gate, paths=["v1"])


async def test_a_single_path_string_guards_that_prefix(gate: Gate) -> None:
    """``paths="/v1"`` means the one prefix, not the characters of the string."""
    reached: list[str] = []
    sent: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    middleware = RatekeeperMiddleware(app, gate=gate, paths="/v1")
    for path in ("/open", "/v1x", "/v1/echo"):
        scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": []}
        await middleware(scope, receive, send)
    assert reached == ["/open", "/v1x"]
    assert sent[0]["status"] == 401


def test_the_error_body_is_compact_json(gate: Gate) -> None:
    from ratekeeper._ratelimit_headers import missing_secret_verdict

    assert json.loads(missing_secret_verdict().body())["error"]["param"] is None


def _reference_bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The parsing rule written plainly: what the middleware's faster parser must return."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


header_values = st.one_of(
    st.binary(max_size=24),
    st.builds(
        lambda scheme, gap, token, tail: scheme + gap + token + tail,
        st.sampled_from([b"Bearer", b"bearer", b"BEARER", b"Basic", b" Bearer", b""]),
        st.sampled_from([b" ", b"  ", b"\t", b""]),
        st.binary(max_size=12),
        st.sampled_from([b"", b" ", b"\xa0", b"\x85", b"\t", b"\x1f"]),
    ),
)


@given(
    value=header_values,
    name=st.sampled_from([b"authorization", b"Authorization", b"AUTHORIZATION", b"x-auth"]),
)
@example(name=b"authorization", value=b"Bearer ek_1\xa0")
@example(name=b"authorization", value=b"Bearer \t ek_1\x85 ")
@example(name=b"authorization", value=b"Bearer \x1f")
def test_bearer_token_matches_the_plain_rule(name: bytes, value: bytes) -> None:
    headers = [(b"host", b"example.test"), (name, value)]
    assert bearer_token(headers) == _reference_bearer_token(headers)


async def _call(middleware: RatekeeperMiddleware, secret: str | None) -> list[Any]:
    """One guarded GET of ``/v1/echo`` straight through ASGI; the messages sent back."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    headers = [] if secret is None else [(b"authorization", f"Bearer {secret}".encode())]
    scope = {"type": "http", "method": "GET", "path": "/v1/echo", "headers": headers}
    await middleware(scope, receive, send)
    return sent


async def test_a_gate_whose_check_is_overridden_answers_every_request(gate: Gate) -> None:
    """The middleware asks such a gate through its check (as the dev service's faults are)."""
    asked: list[str | None] = []

    class Noting(Gate):
        async def check(self, client_secret: str | None) -> Verdict:
            asked.append(client_secret)
            return await super().check(client_secret)

    noting = Noting(gate.backend)
    session = await noting.create_session("u1", max_requests_per_1_minute=1)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = RatekeeperMiddleware(app, gate=noting)
    statuses = [(await _call(middleware, session.client_secret))[0]["status"] for _ in range(2)]
    assert statuses == [200, 429]
    assert asked == [session.client_secret] * 2


async def test_an_app_header_in_any_case_wins_and_its_message_is_not_changed(gate: Gate) -> None:
    session = await gate.create_session("u1")
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"X-RateLimit-Limit-Requests", b"mine")],
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b"ok"})

    sent = await _call(RatekeeperMiddleware(app, gate=gate), session.client_secret)
    names = [name.lower() for name, _ in sent[0]["headers"]]
    assert names.count(b"x-ratelimit-limit-requests") == 1
    assert (b"X-RateLimit-Limit-Requests", b"mine") in sent[0]["headers"]
    assert {b"x-ratelimit-remaining-requests", b"ratelimit"} <= set(names)
    assert start["headers"] == [(b"X-RateLimit-Limit-Requests", b"mine")]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}
