"""``/ratekeeper/admit``: one admission decision per call, by client secret."""

from __future__ import annotations

import httpx

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


def test_api_key_is_not_a_client_secret(live: Live, schemas: Schemas) -> None:
    """An API key is refused where a client secret is required."""
    with httpx.Client(base_url=live.url) as http:
        response = http.post("/ratekeeper/admit", headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 401
    error = error_of(response, schemas)
    assert error["code"] == "invalid_client_secret"
    assert API_KEY not in response.text
