"""Bad input at the HTTP level: every answer is JSON in OpenAI's shape, never a 500."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from starlette.types import Message, Scope

from ratekeeper import Engine, ManualClock, MemoryBackend
from ratekeeper._backend import Backend
from ratekeeper._errors import BackendError
from ratekeeper._types import Session
from ratekeeper.server import ServerSettings, create_app

from .conftest import API_KEY, BETA, Live, Schemas, error_of, serve

MINIMAL = b'{"user": "u", "workflow": {"id": "wf"}}'
JSON = {"content-type": "application/json"}


def post_session(http: httpx.Client, content: bytes, headers: Mapping[str, str] = JSON) -> Any:
    return http.post("/v1/chatkit/sessions", content=content, headers=dict(headers))


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b'{"user": "u",}',
        b"NaN",
        b'{"user": "u", "workflow": {"id": "wf", "state_variables": {"x": Infinity}}}',
        b'{"user": "\\ud800", "workflow": {"id": "wf"}}',
        b'{"user": "\xff\xfe", "workflow": {"id": "wf"}}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=[
        "empty",
        "truncated",
        "trailing-comma",
        "nan",
        "infinity",
        "lone-surrogate",
        "invalid-utf8",
        "deep-nesting",
    ],
)
def test_malformed_json_is_400_invalid_json(live: Live, schemas: Schemas, content: bytes) -> None:
    """Anything that is not strict JSON gets 400 invalid_json."""
    with live.http() as http:
        response = post_session(http, content)
    assert response.status_code == 400
    assert error_of(response, schemas)["code"] == "invalid_json"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_non_json_content_type_is_415(live: Live, schemas: Schemas, content_type: str) -> None:
    """curl -d without -H 'Content-Type: application/json' learns what to send."""
    with live.http() as http:
        response = post_session(http, MINIMAL, {"content-type": content_type})
    assert response.status_code == 415
    error = error_of(response, schemas)
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]


def test_json_with_charset_and_without_content_type_is_accepted(live: Live) -> None:
    """A charset parameter, or no content type at all, still parses as JSON."""
    with live.http() as http:
        with_charset = post_session(
            http, MINIMAL, {"content-type": "application/json; charset=utf-8"}
        )
        without = http.post("/v1/chatkit/sessions", content=MINIMAL)
    assert with_charset.status_code == 200
    assert without.status_code == 200


def test_body_over_the_limit_is_413(live: Live, schemas: Schemas) -> None:
    """A declared length over the limit is refused before reading."""
    limit = live.context.settings.max_body_bytes
    with live.http() as http:
        response = post_session(http, b" " * (limit + 1))
    assert response.status_code == 413
    assert error_of(response, schemas)["code"] == "request_too_large"


def test_chunked_body_over_the_limit_is_413(live: Live, schemas: Schemas) -> None:
    """Without a Content-Length the limit holds while streaming."""
    limit = live.context.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    with live.http() as http:
        response = http.post("/v1/chatkit/sessions", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert error_of(response, schemas)["code"] == "request_too_large"


@pytest.mark.anyio
async def test_client_hanging_up_mid_body_is_not_a_server_error(anyio_backend: str) -> None:
    """A client gone before its body is complete gets a 4xx, not an exception and a 500.

    Driven through the ASGI interface directly: over a socket, when the server notices the
    hang-up is a matter of timing, and a test must not sleep to find out.
    """
    app = create_app(ServerSettings(api_keys=(API_KEY,)))
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"user": "u", ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    headers = {"authorization": f"Bearer {API_KEY}", **JSON, **BETA, "content-length": "64"}
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chatkit/sessions",
        "raw_path": b"/v1/chatkit/sessions",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)  # raised ClientDisconnect before the fix
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 400


def test_unknown_route_is_404_json(live: Live, schemas: Schemas) -> None:
    """Unknown URLs answer like OpenAI's 'Invalid URL' error."""
    with live.http() as http:
        response = http.get("/v1/chatkit/nothing")
    assert response.status_code == 404
    error = error_of(response, schemas)
    assert error["message"] == "Invalid URL (GET /v1/chatkit/nothing)."


def test_secret_in_an_unknown_url_is_not_echoed(live: Live, schemas: Schemas) -> None:
    """A client secret pasted into a URL never comes back in the error."""
    with live.http() as http:
        response = http.get("/v1/ek_SuperSecretValue123")
    assert response.status_code == 404
    assert "SuperSecretValue" not in response.text
    error_of(response, schemas)


def test_secret_as_an_unknown_parameter_name_is_not_echoed(live: Live, schemas: Schemas) -> None:
    """A secret pasted as a field or query name is hidden in ``param`` as in the message."""
    with live.http() as http:
        query = http.get("/v1/chatkit/threads", params={"ek_PastedSecret1": "x"})
        body = post_session(http, b'{"user": "u", "workflow": {"id": "w", "ek_PastedSecret2": 1}}')
    for response in (query, body):
        assert response.status_code == 400
        assert "PastedSecret" not in response.text
        assert error_of(response, schemas)["code"] == "unknown_parameter"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chatkit/sessions", "POST"),
        ("DELETE", "/v1/chatkit/sessions/cksess_1/cancel", "POST"),
        ("POST", "/v1/chatkit/threads", "GET"),
        ("PUT", "/v1/chatkit/threads/cthr_1/items", "GET"),
        ("PUT", "/v1/chatkit/threads/cthr_1", "DELETE, GET"),
        ("PATCH", "/v1/chatkit/threads/cthr_1", "DELETE, GET"),
    ],
)
def test_wrong_method_is_405_with_allow(
    live: Live, schemas: Schemas, method: str, path: str, allow: str
) -> None:
    """A known URL with the wrong method says which methods it takes."""
    with live.http() as http:
        response = http.request(method, path)
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert set(allow.split(", ")) <= allowed
    assert error_of(response, schemas)["code"] == "method_not_allowed"


def test_missing_api_key_is_401_with_null_code(live: Live, schemas: Schemas) -> None:
    """No Authorization header: 401 explaining Bearer auth, code null, and a challenge."""
    response = httpx.post(f"{live.url}/v1/chatkit/sessions", content=MINIMAL, headers=BETA)
    assert response.status_code == 401
    error = error_of(response, schemas)
    assert error["code"] is None
    assert "Bearer" in error["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-should-retry"] == "false"


def test_non_bearer_authorization_is_401(live: Live, schemas: Schemas) -> None:
    """Basic auth (or any other scheme) is not an API key."""
    response = httpx.get(
        f"{live.url}/v1/chatkit/threads", headers={**BETA, "Authorization": f"Basic {API_KEY}"}
    )
    assert response.status_code == 401
    error_of(response, schemas)


def test_missing_beta_header_is_400_invalid_beta(live: Live, schemas: Schemas) -> None:
    """Like OpenAI's betas: a missing OpenAI-Beta header is a clear 400."""
    response = httpx.get(
        f"{live.url}/v1/chatkit/threads", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 400
    error = error_of(response, schemas)
    assert error["code"] == "invalid_beta"
    assert "chatkit_beta=v1" in error["message"]


def test_beta_header_may_list_several_betas(live: Live) -> None:
    """OpenAI-Beta takes a comma-separated list; chatkit_beta=v1 anywhere in it is enough."""
    response = httpx.get(
        f"{live.url}/v1/chatkit/threads",
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "OpenAI-Beta": "assistants=v2, chatkit_beta=v1",
        },
    )
    assert response.status_code == 200


def test_relaxed_beta_setting_accepts_missing_header() -> None:
    """--allow-missing-beta-header lets plain clients in without the header."""
    app = create_app(ServerSettings(api_keys=(API_KEY,), allow_missing_beta_header=True))
    with serve(app) as url:
        response = httpx.get(
            f"{url}/v1/chatkit/threads", headers={"Authorization": f"Bearer {API_KEY}"}
        )
    assert response.status_code == 200


def test_every_response_has_a_distinct_request_id(live: Live) -> None:
    """x-request-id is on successes, errors and the open endpoints, unique per response."""
    with live.http() as http:
        responses = [
            http.get("/healthz"),
            http.get("/metrics"),
            http.get("/openapi.json"),
            http.get("/v1/chatkit/threads"),
            http.get("/nowhere"),
            post_session(http, b"{"),
        ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(i.startswith("req_") and len(i) == 36 for i in ids)
    assert len(set(ids)) == len(ids)


def test_metrics_count_sessions_created_through_the_service(live: Live, user: str) -> None:
    """/metrics is the gate's: a session created over HTTP shows up in its counters."""
    with live.http() as http:
        before = _metric(http.get("/metrics").text, "ratekeeper_sessions_created_total")
        post_session(http, b'{"user": "%s", "workflow": {"id": "wf"}}' % user.encode())
        after = _metric(http.get("/metrics").text, "ratekeeper_sessions_created_total")
    assert after == before + 1


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_openapi_json_is_served_verbatim(live: Live, schemas: Schemas) -> None:
    """/openapi.json is the packaged document."""
    with live.http() as http:
        response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == schemas.document


class _FailingBackend(MemoryBackend):
    """A memory backend whose creation fails: with BackendError, or unexpectedly."""

    def __init__(self, error: Exception) -> None:
        super().__init__(Engine(ManualClock()))
        self.error = error

    async def create_session(self, user: str, *args: Any, **options: Any) -> Session:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendError("redis down"), 503, "backend_unavailable"),
        (RuntimeError("bug"), 500, None),
    ],
)
def test_backend_failures_are_openai_shaped(
    schemas: Schemas, error: Exception, status: int, code: str | None
) -> None:
    """A backend outage is a 503 with Retry-After; a bug is a 500 in the same shape."""
    backend: Backend = _FailingBackend(error)
    app = create_app(ServerSettings(api_keys=(API_KEY,)), backend=backend)
    with serve(app) as url, httpx.Client(base_url=url) as http:
        http.headers.update({"Authorization": f"Bearer {API_KEY}", **BETA})
        response = post_session(http, MINIMAL)
    assert response.status_code == status
    error_body = error_of(response, schemas)
    assert error_body["code"] == code
    assert error_body["type"] == "server_error"
    if status == 503:
        assert response.headers["retry-after"] == "1"
        assert response.headers["retry-after-ms"] == "1000"
    assert "redis" not in response.text
    assert "Traceback" not in response.text


def test_session_cap_answers_503_capacity_exceeded(schemas: Schemas) -> None:
    """--max-sessions reached: 503 with Retry-After, not a 500."""
    app = create_app(ServerSettings(api_keys=(API_KEY,), max_sessions=1))
    with serve(app) as url, httpx.Client(base_url=url) as http:
        http.headers.update({"Authorization": f"Bearer {API_KEY}", **BETA})
        assert post_session(http, MINIMAL).status_code == 200
        refused = post_session(http, MINIMAL)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["retry-after-ms"] == "1000"
    assert error_of(refused, schemas)["code"] == "capacity_exceeded"
