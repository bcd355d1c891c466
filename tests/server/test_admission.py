"""``/ratekeeper/admit``: one admission decision per call, by client secret."""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from .conftest import API_KEY, Live, Schemas, error_of


def _session(live: Live, user: str, limit: int, seconds: int = 600) -> tuple[str, str]:
    with live.client() as client:
        session = client.beta.chatkit.sessions.create(
            user=user,
            workflow={"id": "wf"},
            rate_limits={"max_requests_per_1_minute": limit},
            expires_after={"anchor": "created_at", "seconds": seconds},
        )
    return session.id, session.client_secret


def test_admits_exactly_the_limit_then_429(live: Live, schemas: Schemas, user: str) -> None:
    """The limit-th request is admitted, the next is 429 with Retry-After and headers."""
    session_id, secret = _session(live, user, limit=3)
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=live.url) as http:
        admitted = [http.post("/ratekeeper/admit", headers=auth) for _ in range(3)]
        refused = http.get("/ratekeeper/admit", headers=auth)
    for remaining, response in zip((2, 1, 0), admitted, strict=True):
        assert response.status_code == 200
        body = response.json()
        schemas.check("AdmissionResource", body)
        assert body["session_id"] == session_id
        assert body["remaining"] == remaining
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert response.headers["x-ratelimit-remaining-requests"] == str(remaining)
    assert refused.status_code == 429
    assert error_of(refused, schemas)["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) >= 1
    # The precise wait, which the openai SDK reads before retry-after.
    wait_ms = int(refused.headers["retry-after-ms"])
    assert 1 <= wait_ms <= int(refused.headers["retry-after"]) * 1000
    assert "x-should-retry" not in refused.headers


def test_expired_session_is_refused_on_the_manual_clock(fresh_live: Live, schemas: Schemas) -> None:
    """At expires_at exactly the secret stops working: 401 session_expired."""
    assert fresh_live.clock is not None
    _, secret = _session(fresh_live, "u", limit=10, seconds=30)
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=fresh_live.url) as http:
        fresh_live.clock.advance(29.999)
        assert http.post("/ratekeeper/admit", headers=auth).status_code == 200
        fresh_live.clock.advance(0.001)
        refused = http.post("/ratekeeper/admit", headers=auth)
    assert refused.status_code == 401
    assert error_of(refused, schemas)["code"] == "session_expired"
    assert refused.headers["x-should-retry"] == "false"


def test_missing_and_unknown_secrets_are_401(live: Live, schemas: Schemas) -> None:
    """No secret, or one matching no session: 401, and the secret is not echoed."""
    with httpx.Client(base_url=live.url) as http:
        missing = http.post("/ratekeeper/admit")
        unknown = http.post(
            "/ratekeeper/admit", headers={"Authorization": "Bearer ek_NotARealSecret"}
        )
    assert missing.status_code == 401
    assert error_of(missing, schemas)["code"] == "missing_client_secret"
    assert unknown.status_code == 401
    assert error_of(unknown, schemas)["code"] == "invalid_client_secret"
    assert "NotARealSecret" not in unknown.text
    assert missing.headers["x-should-retry"] == unknown.headers["x-should-retry"] == "false"


def test_api_key_is_not_a_client_secret(live: Live, schemas: Schemas) -> None:
    """An API key is refused where a client secret is required."""
    with httpx.Client(base_url=live.url) as http:
        response = http.post("/ratekeeper/admit", headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 401
    error = error_of(response, schemas)
    assert error["code"] == "invalid_client_secret"
    assert API_KEY not in response.text
    assert response.headers["x-should-retry"] == "false"


def _decisions(live: Live, outcome: str) -> float:
    text = httpx.get(f"{live.url}/metrics").text
    found = re.search(rf'^ratekeeper_decisions_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_the_openai_sdk_does_not_retry_a_cancelled_secret(live: Live, user: str) -> None:
    """The real SDK, allowed 3 retries, sends a cancelled session's secret once: 401 says
    ``x-should-retry: false``.

    openai 3.x retries no 401 even without the header, so the single request alone would not
    tell the header's effect; the header is asserted on the SDK's own error too.
    """
    session_id, secret = _session(live, user, limit=10)
    with live.client() as client:
        client.beta.chatkit.sessions.cancel(session_id)
    before = _decisions(live, "cancelled")
    with (
        live.client(api_key=secret, max_retries=3) as sdk,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        sdk.post(f"{live.url}/ratekeeper/admit", cast_to=httpx.Response)
    assert refused.value.code == "session_cancelled"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert _decisions(live, "cancelled") - before == 1.0
