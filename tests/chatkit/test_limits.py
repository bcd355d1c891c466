"""Every session limit at the protocol endpoint: rate, lifetime, uploads, history, titling.

Rate and lifetime tests run on a service built on a manual clock, so the window and the
expiry are exact and no test waits.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ratekeeper import Engine, ManualClock, MemoryBackend, UploadDecision
from ratekeeper._errors import BackendError, SessionNotFound
from ratekeeper.server import ServerSettings, create_app
from ratekeeper.store import MemoryStore
from tests.server.conftest import API_KEY, Live, serve

from .conftest import Protocol, user_input

MB = 1024 * 1024


def _error(response_body: bytes | str) -> dict[str, object]:
    error: dict[str, object] = json.loads(response_body)["error"]
    return error


# -- max_requests_per_1_minute ---------------------------------------------------------------


def test_the_request_that_crosses_the_limit_gets_429_before_any_stream(
    clocked: Live, clocked_protocol: Protocol
) -> None:
    """Streaming and JSON requests all count; the 4th of 3 is refused before any work."""
    protocol = clocked_protocol
    session = protocol.mint(rate_limits={"max_requests_per_1_minute": 3})
    thread_id, first = protocol.create_thread(session, "one")
    second = protocol.post(session.secret, "threads.list", {})
    third = protocol.post(session.secret, "items.list", {"thread_id": thread_id})
    remaining = [r.headers["x-ratelimit-remaining-requests"] for r in (first, second, third)]
    assert remaining == ["2", "1", "0"]
    items_before = clocked.threads.list_items(thread_id, limit=100).data

    fourth = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("too many")},
    )
    assert fourth.status_code == 429
    assert fourth.events == []  # not a stream: a JSON error
    assert fourth.headers["content-type"] == "application/json"
    assert fourth.headers["retry-after"] == "60"
    assert fourth.headers["retry-after-ms"] == "60000"
    assert fourth.headers["x-ratelimit-limit-requests"] == "3"
    assert fourth.headers["x-ratelimit-remaining-requests"] == "0"
    assert fourth.headers["ratelimit-policy"] == '"session";q=3;w=60'
    error = _error(fourth.body)
    assert error["code"] == "rate_limit_exceeded"
    assert clocked.threads.list_items(thread_id, limit=100).data == items_before

    assert clocked.clock is not None
    clocked.clock.advance(59.999)
    still = protocol.post(session.secret, "threads.list", {})
    assert still.status_code == 429
    assert still.headers["retry-after"] == "1"
    assert still.headers["retry-after-ms"] == "1"  # 1 ms left: the precise wait
    clocked.clock.advance(0.001)  # the first three admissions leave the window exactly now
    again = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("now")},
    )
    assert again.status_code == 200
    assert again.headers["x-ratelimit-remaining-requests"] == "2"
    assert again.events[-1]["item"]["content"][0]["text"] == "now"


# -- lifetime: cancel, expiry, unknown secrets -------------------------------------------------


def test_secret_used_after_cancel_is_refused_with_401(protocol: Protocol) -> None:
    """Cancelling a session refuses its secret at once, for JSON and streaming requests."""
    session = protocol.mint()
    thread_id, _ = protocol.create_thread(session, "before cancel")
    protocol.cancel(session)

    listed = protocol.post(session.secret, "threads.list", {})
    assert listed.status_code == 401
    assert _error(listed.content)["code"] == "session_cancelled"
    assert "invalid_token" in listed.headers["www-authenticate"]
    assert listed.headers["x-should-retry"] == "false"
    streamed = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("after cancel")},
    )
    assert streamed.status_code == 401
    assert streamed.headers["x-should-retry"] == "false"
    assert streamed.events == []
    assert _error(streamed.body)["code"] == "session_cancelled"


def test_secret_used_at_expires_at_is_refused_with_401(
    clocked: Live, clocked_protocol: Protocol
) -> None:
    """A session is expired exactly at ``expires_at`` (manual clock), before any work."""
    protocol = clocked_protocol
    session = protocol.mint(expires_after={"anchor": "created_at", "seconds": 60})
    thread_id, _ = protocol.create_thread(session, "hello")
    assert clocked.clock is not None
    clocked.clock.advance(59.9)
    assert protocol.post(session.secret, "threads.list", {}).status_code == 200
    clocked.clock.advance(0.1)

    expired = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("too late")},
    )
    assert expired.status_code == 401
    assert expired.events == []
    assert _error(expired.body)["code"] == "session_expired"
    assert len(clocked.threads.list_items(thread_id, limit=100).data) == 2
    with clocked.client() as client:
        assert client.beta.chatkit.sessions.cancel(session.id).status == "expired"


def test_unknown_missing_and_api_key_secrets_are_refused(protocol: Protocol) -> None:
    """No secret, a wrong one, or an API key: 401 with distinct codes, nothing done."""
    missing = protocol.post(None, "threads.list", {})
    assert missing.status_code == 401
    assert missing.headers["x-should-retry"] == "false"
    assert _error(missing.content)["code"] == "missing_client_secret"
    unknown = protocol.post("ek_not_a_real_secret", "threads.list", {})
    assert unknown.status_code == 401
    assert _error(unknown.content)["code"] == "invalid_client_secret"
    assert "ek_not_a_real_secret" not in unknown.text
    api_key = protocol.post(protocol.live.client().api_key, "threads.list", {})
    assert api_key.status_code == 401
    basic = protocol.http.post(
        "/chatkit",
        json={"type": "threads.list", "params": {}},
        headers={"Authorization": "Basic x"},
    )
    assert basic.status_code == 401


def test_bad_bodies_get_clear_errors_and_still_count(protocol: Protocol) -> None:
    """Malformed requests get 400/413/415 in OpenAI's shape, never a 500."""
    session = protocol.mint(rate_limits={"max_requests_per_1_minute": 100})
    headers = protocol.headers(session.secret)
    not_json = protocol.http.post("/chatkit", content=b"{nope", headers=headers)
    assert not_json.status_code == 400
    assert _error(not_json.content)["code"] == "invalid_chatkit_request"
    unknown_type = protocol.post(session.secret, "threads.explode", {})
    assert unknown_type.status_code == 400
    missing = protocol.post(session.secret, "items.list", {})
    assert missing.status_code == 400
    assert _error(missing.content)["param"] == "params.thread_id"
    wrong_type = protocol.http.post(
        "/chatkit",
        content=b"{}",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert wrong_type.status_code == 415
    huge = protocol.http.post("/chatkit", content=b"x" * (16 * MB + 1), headers=headers)
    assert huge.status_code == 413
    assert huge.headers["x-ratelimit-remaining-requests"] == "95"  # each one counted
    unsupported = protocol.post(
        session.secret, "input.transcribe", {"audio_base64": "AAAA", "mime_type": "audio/webm"}
    )
    assert unsupported.status_code == 501
    assert _error(unsupported.content)["code"] == "unsupported_operation"


def test_a_negative_page_limit_is_a_400_not_a_500(protocol: Protocol) -> None:
    """``params.limit`` below zero is refused on both listings, windowed by history or not."""
    plain = protocol.mint()
    windowed = protocol.mint(chatkit_configuration={"history": {"recent_threads": 2}})
    thread_id, _ = protocol.create_thread(plain, "hi")
    for session, type_, params in (
        (plain, "items.list", {"thread_id": thread_id, "limit": -1}),
        (plain, "threads.list", {"limit": -1}),
        (windowed, "threads.list", {"limit": -1}),
    ):
        response = protocol.post(session.secret, type_, params)
        assert response.status_code == 400, (type_, response.text)
        error = _error(response.content)
        assert (error["param"], error["code"]) == ("params.limit", "integer_below_min_value")


# -- file_upload ----------------------------------------------------------------------------


def _create(protocol: Protocol, secret: str, size: int) -> tuple[int, dict[str, Any]]:
    response = protocol.post(
        secret, "attachments.create", {"name": "f.bin", "size": size, "mime_type": "a/b"}
    )
    return response.status_code, response.json()


def test_uploads_are_refused_when_disabled(protocol: Protocol) -> None:
    """file_upload.enabled defaults to false: attachments.create gets 403."""
    session = protocol.mint()
    status, body = _create(protocol, session.secret, 10)
    assert status == 403
    assert body["error"]["code"] == "file_upload_disabled"


def test_upload_larger_than_max_file_size_is_refused(protocol: Protocol) -> None:
    """max_file_size is in MB: exactly that many bytes pass, one more does not."""
    session = protocol.mint(
        chatkit_configuration={"file_upload": {"enabled": True, "max_file_size": 1}}
    )
    status, body = _create(protocol, session.secret, MB + 1)
    assert status == 413
    assert body["error"]["code"] == "file_too_large"
    assert body["error"]["param"] == "params.size"
    status, body = _create(protocol, session.secret, MB)
    assert status == 200
    assert body["name"] == "f.bin"
    status, body = _create(protocol, session.secret, -1)
    assert status == 400
    assert body["error"]["code"] == "integer_below_min_value"


def test_session_at_max_files_cannot_create_more(protocol: Protocol) -> None:
    """max_files counts created attachments; refused ones do not count."""
    session = protocol.mint(
        chatkit_configuration={"file_upload": {"enabled": True, "max_files": 2, "max_file_size": 1}}
    )
    assert _create(protocol, session.secret, 5)[0] == 200
    assert _create(protocol, session.secret, 2 * MB)[0] == 413  # not counted
    assert _create(protocol, session.secret, 5)[0] == 200
    status, body = _create(protocol, session.secret, 5)
    assert status == 403
    assert body["error"]["code"] == "max_files_exceeded"
    assert "2 files" in str(body["error"]["message"])


def test_upload_of_more_bytes_than_declared_is_refused(protocol: Protocol) -> None:
    """The bytes that arrive may not exceed the declared size (which the limits checked)."""
    session = protocol.mint(chatkit_configuration={"file_upload": {"enabled": True}})
    status, body = _create(protocol, session.secret, 4)
    assert status == 200
    url = body["upload_descriptor"]["url"]
    refused = protocol.http.post(url, files={"file": ("f.bin", b"12345", "a/b")})
    assert refused.status_code == 413
    missing_file = protocol.http.post(url, files={"other": ("f.bin", b"1234", "a/b")})
    assert missing_file.status_code == 400
    wrong_token = protocol.http.post(
        url.split("?")[0] + "?token=nope", files={"file": ("f.bin", b"1234", "a/b")}
    )
    assert wrong_token.status_code == 404
    two_files = protocol.http.post(
        url, files=[("file", ("a.bin", b"12", "a/b")), ("file", ("b.bin", b"34", "a/b"))]
    )
    assert two_files.status_code == 400
    assert _error(two_files.content)["code"] == "invalid_upload"
    accepted = protocol.http.post(url, files={"file": ("f.bin", b"1234", "a/b")})
    assert accepted.status_code == 200


def test_upload_after_the_session_ended_is_refused(protocol: Protocol) -> None:
    """An upload URL dies with the session that created it."""
    session = protocol.mint(chatkit_configuration={"file_upload": {"enabled": True}})
    status, body = _create(protocol, session.secret, 4)
    assert status == 200
    protocol.cancel(session)
    url = body["upload_descriptor"]["url"]
    refused = protocol.http.post(url, files={"file": ("f.bin", b"1234", "a/b")})
    assert refused.status_code == 401
    assert _error(refused.content)["code"] == "session_cancelled"


# -- history --------------------------------------------------------------------------------


def test_threads_list_is_refused_when_history_is_disabled(protocol: Protocol) -> None:
    """history.enabled=false: listing is refused; the current thread still works."""
    session = protocol.mint(chatkit_configuration={"history": {"enabled": False}})
    thread_id, _ = protocol.create_thread(session, "hello")
    refused = protocol.post(session.secret, "threads.list", {})
    assert refused.status_code == 403
    assert _error(refused.content)["code"] == "history_disabled"
    assert refused.headers["x-ratelimit-remaining-requests"] == "8"
    items = protocol.post(session.secret, "items.list", {"thread_id": thread_id})
    assert items.status_code == 200


def test_threads_list_shows_only_recent_threads(live: Live, protocol: Protocol) -> None:
    """history.recent_threads=2: the two newest threads, paged within that window."""
    session = protocol.mint(
        chatkit_configuration={"history": {"enabled": True, "recent_threads": 2}},
        rate_limits={"max_requests_per_1_minute": 100},
    )
    ids = [protocol.create_thread(session, f"t{n}")[0] for n in range(3)]
    listed = protocol.post(session.secret, "threads.list", {}).json()
    assert [t["id"] for t in listed["data"]] == [ids[2], ids[1]]
    assert listed["has_more"] is False
    first = protocol.post(session.secret, "threads.list", {"limit": 1}).json()
    assert [t["id"] for t in first["data"]] == [ids[2]]
    assert first["has_more"] is True
    second = protocol.post(
        session.secret, "threads.list", {"limit": 1, "after": first["after"]}
    ).json()
    assert [t["id"] for t in second["data"]] == [ids[1]]
    assert second["has_more"] is False
    oldest_first = protocol.post(session.secret, "threads.list", {"order": "asc"}).json()
    assert [t["id"] for t in oldest_first["data"]] == [ids[1], ids[2]]
    with live.client() as client:  # the REST surface (API key) is not a session's view
        assert len(client.beta.chatkit.threads.list(user=session.user).data) == 3


# -- automatic_thread_titling ---------------------------------------------------------------


def test_no_title_when_titling_is_disabled(live: Live, protocol: Protocol) -> None:
    """automatic_thread_titling.enabled=false: the thread stays untitled."""
    session = protocol.mint(chatkit_configuration={"automatic_thread_titling": {"enabled": False}})
    thread_id, stream = protocol.create_thread(session, "Please do not title me")
    assert "thread.updated" not in stream.types()
    protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("nor me")},
    )
    with live.client() as client:
        assert client.beta.chatkit.threads.retrieve(thread_id).title is None


def test_title_comes_from_the_first_message_cut_at_a_word(live: Live, protocol: Protocol) -> None:
    """A long first message gives a title of at most 60 characters, ending in an ellipsis."""
    session = protocol.mint()
    text = "Summarise   the quarterly figures for the northern region and compare them to last year"
    thread_id, stream = protocol.create_thread(session, text)
    title = stream.first("thread.updated")["thread"]["title"]
    assert title == "Summarise the quarterly figures for the northern region and…"
    assert len(title) <= 60
    with live.client() as client:
        assert client.beta.chatkit.threads.retrieve(thread_id).title == title


# -- what the metrics say -------------------------------------------------------------------


def test_protocol_requests_show_in_the_metrics(clocked: Live, clocked_protocol: Protocol) -> None:
    """Every protocol request is one decision in ratekeeper_decisions_total, by outcome."""
    protocol = clocked_protocol
    session = protocol.mint(rate_limits={"max_requests_per_1_minute": 2})
    protocol.create_thread(session, "one")
    protocol.post(session.secret, "threads.list", {})
    protocol.post(session.secret, "threads.list", {})  # the third of two
    protocol.post("ek_unknown", "threads.list", {})
    protocol.post(None, "threads.list", {})
    protocol.cancel(session)
    protocol.post(session.secret, "threads.list", {})

    text = protocol.http.get("/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ratekeeper_")
    }
    assert samples['ratekeeper_decisions_total{outcome="allowed"}'] == 2
    assert samples['ratekeeper_decisions_total{outcome="rate_limited"}'] == 1
    assert samples['ratekeeper_decisions_total{outcome="unknown_session"}'] == 1
    assert samples['ratekeeper_decisions_total{outcome="missing_secret"}'] == 1
    assert samples['ratekeeper_decisions_total{outcome="cancelled"}'] == 1
    assert samples["ratekeeper_sessions_created_total"] == 1
    assert samples["ratekeeper_sessions_cancelled_total"] == 1
    assert session.secret not in text


class _UploadFailingBackend(MemoryBackend):
    """A memory backend whose upload count fails (the store is down, or lost the session)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(Engine(ManualClock(start=1_700_000_000.0)))
        self.error = error

    async def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BackendError("redis down"), 503, "backend_unavailable"),
        (SessionNotFound("cksess_gone"), 401, "invalid_client_secret"),
    ],
)
def test_a_failing_upload_count_is_answered_and_counted(
    error: Exception, status: int, code: str
) -> None:
    """attachments.create when reserve_upload fails: 503 or 401, never a 500; errors metered."""
    app = create_app(
        ServerSettings(api_keys=(API_KEY,)),
        backend=_UploadFailingBackend(error),
        store=MemoryStore(),
    )
    with serve(app) as url:
        protocol = Protocol(Live(url, app))
        try:
            session = protocol.mint(chatkit_configuration={"file_upload": {"enabled": True}})
            response = protocol.post(
                session.secret,
                "attachments.create",
                {"name": "f.bin", "size": 10, "mime_type": "a/b"},
            )
            metrics = protocol.http.get("/metrics").text
        finally:
            protocol.close()
    assert (response.status_code, _error(response.content)["code"]) == (status, code)
    # A 503 says when to retry; a 401 (the session is gone) says not to.
    retry = (
        {"retry-after": "1", "retry-after-ms": "1000"}
        if status == 503
        else {"x-should-retry": "false"}
    )
    assert {name: response.headers.get(name) for name in retry} == retry
    expected = 1.0 if isinstance(error, BackendError) else 0.0
    line = 'ratekeeper_backend_errors_total{operation="reserve_upload"} '
    assert f"{line}{expected}" in metrics
