"""CORS on the session-scoped routes (``--cors-origin``), over a real uvicorn.

A ChatKit front end on another origin calls ``/chatkit``, its upload and preview URLs and
``/ratekeeper/admit`` from the browser: preflights are answered without spending a request of
the session, refusals are readable (with their retry headers), and nothing changes when no
origin is configured.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from ratekeeper.server import ServerSettings, create_app
from ratekeeper.store import MemoryStore
from tests.server.conftest import API_KEY, Live, serve

from .conftest import Protocol

ORIGIN = "https://app.example.com"
OTHER = "https://evil.example.net"

# (method, path) of every session-scoped route; the attachment id matches no attachment.
SESSION_ROUTES = [
    ("POST", "/chatkit"),
    ("POST", "/chatkit/attachments/atc_none/upload"),
    ("GET", "/chatkit/attachments/atc_none/preview"),
    ("GET", "/ratekeeper/admit"),
    ("POST", "/ratekeeper/admit"),
]


@pytest.fixture(scope="module")
def cors() -> Iterator[Live]:
    """A service allowing :data:`ORIGIN` (and a second origin, to show the flag repeats)."""
    settings = ServerSettings(api_keys=(API_KEY,), cors_origins=(ORIGIN, "http://localhost:3000"))
    app = create_app(settings, store=MemoryStore())
    with serve(app) as url:
        yield Live(url, app)


@pytest.fixture
def protocol(cors: Live) -> Iterator[Protocol]:
    client = Protocol(cors)
    yield client
    client.close()


def _preflight(http: httpx.Client, method: str, path: str, origin: str) -> httpx.Response:
    return http.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def _decisions(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    return sum(
        float(n) for n in re.findall(r"^ratekeeper_decisions_total\{.*\} (\S+)$", text, re.M)
    )


def _exposed(response: httpx.Response) -> set[str]:
    text = response.headers.get("access-control-expose-headers", "")
    return {name.strip().lower() for name in text.split(",")}


@pytest.mark.parametrize(("method", "path"), SESSION_ROUTES)
def test_a_preflight_from_the_configured_origin_is_allowed(
    protocol: Protocol, method: str, path: str
) -> None:
    """200 with the origin, the method and Authorization/Content-Type allowed."""
    response = _preflight(protocol.http, method, path, ORIGIN)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert method in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert "access-control-allow-credentials" not in response.headers


def test_preflights_spend_no_request_of_the_session(protocol: Protocol) -> None:
    """Ten preflights on every route: the session still has all but the one real request."""
    session = protocol.mint(rate_limits={"max_requests_per_1_minute": 3})
    before = _decisions(protocol.http)
    for _ in range(10):
        for method, path in SESSION_ROUTES:
            assert _preflight(protocol.http, method, path, ORIGIN).status_code == 200
    assert _decisions(protocol.http) == before
    admitted = protocol.http.post(
        "/ratekeeper/admit",
        headers={"Authorization": f"Bearer {session.secret}", "Origin": ORIGIN},
    )
    assert admitted.status_code == 200
    assert admitted.json()["remaining"] == 2
    assert admitted.headers["access-control-allow-origin"] == ORIGIN
    assert {"x-ratelimit-remaining-requests", "x-request-id"} <= _exposed(admitted)


def test_a_preflight_from_another_origin_is_refused(protocol: Protocol) -> None:
    """Another origin gets no Access-Control-Allow-Origin, so the browser stops there."""
    response = _preflight(protocol.http, "POST", "/chatkit", OTHER)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    plain = protocol.post(None, "threads.list", {})
    assert "access-control-allow-origin" not in plain.headers


def test_refusals_are_readable_cross_origin(protocol: Protocol) -> None:
    """401 and 429 carry the origin and expose the retry and rate-limit headers."""
    session = protocol.mint(rate_limits={"max_requests_per_1_minute": 1})
    headers = {**protocol.headers(session.secret), "Origin": ORIGIN}
    body = '{"type":"threads.list","params":{},"metadata":{}}'
    assert protocol.http.post("/chatkit", content=body, headers=headers).status_code == 200
    limited = protocol.http.post("/chatkit", content=body, headers=headers)
    assert limited.status_code == 429
    assert limited.headers["access-control-allow-origin"] == ORIGIN
    exposed = _exposed(limited)
    assert {"retry-after", "retry-after-ms", "ratelimit", "ratelimit-policy"} <= exposed
    assert {"x-ratelimit-limit-requests", "x-ratelimit-reset-requests"} <= exposed
    assert int(limited.headers["retry-after-ms"]) >= 1

    missing = protocol.http.post("/chatkit", content=body, headers={"Origin": ORIGIN})
    assert missing.status_code == 401
    assert missing.headers["access-control-allow-origin"] == ORIGIN
    # An API key on /ratekeeper/admit is refused by a raised error: still readable.
    api_key = protocol.http.get(
        "/ratekeeper/admit", headers={"Authorization": f"Bearer {API_KEY}", "Origin": ORIGIN}
    )
    assert api_key.status_code == 401
    assert api_key.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize(("method", "path"), SESSION_ROUTES[1:3])
def test_upload_and_preview_answers_are_readable_cross_origin(
    protocol: Protocol, method: str, path: str
) -> None:
    """The attachment URLs answer the page too (here: their 404 for an unknown upload)."""
    response = protocol.http.request(method, f"{path}?token=nope", headers={"Origin": ORIGIN})
    assert response.status_code == 404
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_an_options_that_is_no_preflight_is_still_405(protocol: Protocol) -> None:
    """Without Access-Control-Request-Method, OPTIONS never reaches the gate: 405 as before."""
    session = protocol.mint()
    before = _decisions(protocol.http)
    response = protocol.http.options(
        "/chatkit", headers={"Origin": ORIGIN, "Authorization": f"Bearer {session.secret}"}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert _decisions(protocol.http) == before


def test_the_rest_surface_gets_no_cors(protocol: Protocol) -> None:
    """API keys belong on servers: /v1/chatkit/* neither answers preflights nor allows origins."""
    assert _preflight(protocol.http, "POST", "/v1/chatkit/sessions", ORIGIN).status_code == 405
    listed = protocol.http.get(
        "/v1/chatkit/threads",
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "OpenAI-Beta": "chatkit_beta=v1",
            "Origin": ORIGIN,
        },
    )
    assert listed.status_code == 200
    assert "access-control-allow-origin" not in listed.headers


@pytest.mark.parametrize(("method", "path"), SESSION_ROUTES)
def test_without_an_origin_configured_there_is_no_cors(live: Live, method: str, path: str) -> None:
    """The default: preflights are 405 and no answer carries a CORS header."""
    with httpx.Client(base_url=live.url) as http:
        preflight = _preflight(http, method, path, ORIGIN)
        answer = http.request(method, path, headers={"Origin": ORIGIN})
    assert preflight.status_code == 405
    for response in (preflight, answer):
        assert not [name for name in response.headers if name.startswith("access-control-")]
