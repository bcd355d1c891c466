"""Sessions through the official ``openai`` SDK against a live server: create and cancel."""

from __future__ import annotations

import math
from typing import Any

import anyio
import openai
import pytest

from ratekeeper._types import FileUploadLimits, HistoryLimits

from .conftest import Live, Schemas

FULL_BODY: dict[str, Any] = {
    "workflow": {
        "id": "wf_123",
        "version": "7",
        "state_variables": {"plan": "pro", "seats": 5, "ratio": 0.5, "beta": True},
        "tracing": {"enabled": False},
    },
    "expires_after": {"anchor": "created_at", "seconds": 120},
    "rate_limits": {"max_requests_per_1_minute": 3},
    "chatkit_configuration": {
        "automatic_thread_titling": {"enabled": False},
        "file_upload": {"enabled": True, "max_file_size": 16, "max_files": 2},
        "history": {"enabled": False, "recent_threads": 4},
    },
}


def test_create_with_only_required_fields_resolves_every_default(
    live: Live, schemas: Schemas, user: str
) -> None:
    """The minimal body yields all ten fields, defaults resolved as OpenAI documents them."""
    with live.client() as client:
        raw = client.beta.chatkit.sessions.with_raw_response.create(
            user=user, workflow={"id": "wf_min"}
        )
    assert raw.http_response.status_code == 200
    assert raw.headers["x-request-id"].startswith("req_")
    body = raw.http_response.json()
    schemas.check("ChatSessionResource", body)
    secret = body.pop("client_secret")
    assert secret.startswith("ek_")
    assert body.pop("id").startswith("cksess_")
    expires_at = body.pop("expires_at")
    assert isinstance(expires_at, int)
    assert body == {
        "object": "chatkit.session",
        "workflow": {
            "id": "wf_min",
            "version": None,
            "state_variables": None,
            "tracing": {"enabled": True},
        },
        "user": user,
        "rate_limits": {"max_requests_per_1_minute": 10},
        "max_requests_per_1_minute": 10,
        "status": "active",
        "chatkit_configuration": {
            "automatic_thread_titling": {"enabled": True},
            "file_upload": {"enabled": False, "max_file_size": 512, "max_files": 10},
            "history": {"enabled": True, "recent_threads": None},
        },
    }
    session = raw.parse()
    assert session.client_secret == secret


def test_create_with_every_parameter_echoes_them_resolved(
    live: Live, schemas: Schemas, user: str
) -> None:
    """Every field of the create body is validated, stored and reported back."""
    with live.client() as client:
        raw = client.beta.chatkit.sessions.with_raw_response.create(user=user, **FULL_BODY)
    body = raw.http_response.json()
    schemas.check("ChatSessionResource", body)
    assert body["workflow"] == {
        "id": "wf_123",
        "version": "7",
        "state_variables": {"plan": "pro", "seats": 5, "ratio": 0.5, "beta": True},
        "tracing": {"enabled": False},
    }
    assert body["rate_limits"] == {"max_requests_per_1_minute": 3}
    assert body["max_requests_per_1_minute"] == 3
    assert body["chatkit_configuration"] == {
        "automatic_thread_titling": {"enabled": False},
        "file_upload": {"enabled": True, "max_file_size": 16, "max_files": 2},
        "history": {"enabled": False, "recent_threads": 4},
    }
    # The gate's session carries the same limits, so enforcement matches the response.
    stored = live.context.gate.backend
    session = anyio.run(stored.get, body["id"])
    assert session.max_requests_per_1_minute == 3
    assert session.file_upload == FileUploadLimits(True, 16, 2)
    assert session.history == HistoryLimits(False, 4)
    assert session.expires_at - math.floor(session.created_at) == 120
    assert body["expires_at"] == session.expires_at


def test_largest_json_safe_counts_are_accepted_and_enforced(live: Live, user: str) -> None:
    """2**53 - 1 is the largest count accepted; admission reports it unchanged."""
    largest = 2**53 - 1
    with live.client() as client, live.http() as http:
        session = client.beta.chatkit.sessions.create(
            user=user,
            workflow={"id": "wf"},
            rate_limits={"max_requests_per_1_minute": largest},
            chatkit_configuration={
                "file_upload": {"max_files": largest},
                "history": {"recent_threads": largest},
            },
        )
        admitted = http.post(
            "/ratekeeper/admit", headers={"Authorization": f"Bearer {session.client_secret}"}
        )
    assert session.max_requests_per_1_minute == largest
    assert session.chatkit_configuration.file_upload.max_files == largest
    assert session.chatkit_configuration.history.recent_threads == largest
    assert admitted.json()["limit"] == largest


def test_cancel_returns_the_full_session_cancelled_and_is_idempotent(
    live: Live, schemas: Schemas, user: str
) -> None:
    """Cancel rebuilds the whole session object; a second cancel answers the same."""
    with live.client() as client:
        created = client.beta.chatkit.sessions.create(user=user, **FULL_BODY)
        first = client.beta.chatkit.sessions.with_raw_response.cancel(created.id)
        second = client.beta.chatkit.sessions.with_raw_response.cancel(created.id)
    body = first.http_response.json()
    schemas.check("ChatSessionResource", body)
    assert body["status"] == "cancelled"
    assert body["client_secret"] == "ek_redacted"
    expected = created.model_dump()
    expected.update(status="cancelled", client_secret="ek_redacted")
    assert body == expected
    assert second.http_response.json() == body


def test_cancelled_secret_is_refused_at_once(live: Live, user: str) -> None:
    """After cancel, the admission endpoint refuses the session's secret with 401."""
    with live.client() as client, live.http() as http:
        session = client.beta.chatkit.sessions.create(user=user, workflow={"id": "wf"})
        auth = {"Authorization": f"Bearer {session.client_secret}"}
        assert http.post("/ratekeeper/admit", headers=auth).status_code == 200
        client.beta.chatkit.sessions.cancel(session.id)
        refused = http.post("/ratekeeper/admit", headers=auth)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "session_cancelled"


def test_cancel_of_an_expired_session_reports_expired(fresh_live: Live, schemas: Schemas) -> None:
    """A session past its expires_at cannot be cancelled: it stays (and reads) expired."""
    assert fresh_live.clock is not None
    with fresh_live.client() as client:
        session = client.beta.chatkit.sessions.create(
            user="u", workflow={"id": "wf"}, expires_after={"anchor": "created_at", "seconds": 5}
        )
        fresh_live.clock.advance(5)
        raw = client.beta.chatkit.sessions.with_raw_response.cancel(session.id)
    body = raw.http_response.json()
    schemas.check("ChatSessionResource", body)
    assert body["status"] == "expired"
    assert body["expires_at"] == 1_700_000_005


def test_cancel_of_an_unknown_session_is_404_with_openai_message(live: Live) -> None:
    """The SDK raises NotFoundError carrying OpenAI's wording."""
    with live.client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.beta.chatkit.sessions.cancel("cksess_nope")
    assert caught.value.status_code == 404
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "Chatkit Session with id 'cksess_nope' not found."
    assert caught.value.param is None


def test_cancel_with_a_client_secret_as_id_does_not_echo_it(live: Live, user: str) -> None:
    """Passing the secret where the session id belongs gets a 404 that never shows it."""
    with live.client() as client:
        session = client.beta.chatkit.sessions.create(user=user, workflow={"id": "wf"})
        with pytest.raises(openai.NotFoundError) as caught:
            client.beta.chatkit.sessions.cancel(session.client_secret)
    assert session.client_secret not in str(caught.value.body)
    assert "cksess_" in caught.value.message


@pytest.mark.anyio
async def test_async_client_creates_and_cancels(live: Live, schemas: Schemas, user: str) -> None:
    """The async SDK client works the same (on asyncio and on trio)."""
    async with live.aclient() as client:
        raw = await client.beta.chatkit.sessions.with_raw_response.create(
            user=user, workflow={"id": "wf_async"}, rate_limits={"max_requests_per_1_minute": 7}
        )
        created = raw.parse()
        cancelled = await client.beta.chatkit.sessions.cancel(created.id)
    schemas.check("ChatSessionResource", raw.http_response.json())
    assert created.max_requests_per_1_minute == 7
    assert cancelled.status == "cancelled"
    assert cancelled.id == created.id


@pytest.mark.anyio
async def test_async_client_surfaces_validation_errors(live: Live, user: str) -> None:
    """A 400 from the async client is the SDK's BadRequestError with param and code."""
    async with live.aclient() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await client.beta.chatkit.sessions.create(
                user=user,
                workflow={"id": "wf"},
                expires_after={"anchor": "created_at", "seconds": 601},
            )
    assert caught.value.param == "expires_after.seconds"
    assert caught.value.code == "integer_above_max_value"
