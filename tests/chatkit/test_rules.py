"""The pure parts: limit rules, titles, paging, the echo, the Authorization header."""

from __future__ import annotations

from datetime import datetime

import pytest
from chatkit.errors import CustomStreamError
from chatkit.types import (
    FileAttachment,
    InferenceOptions,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
)

from ratekeeper import (
    FileUploadLimits,
    HistoryLimits,
    InvalidParameter,
    RatekeeperError,
    UploadDecision,
    UploadReason,
)
from ratekeeper._gate import FAIL_OPEN_DECISION
from ratekeeper._ratelimit_headers import fail_open_verdict, missing_secret_verdict
from ratekeeper.chatkit import (
    ChatKitLimitError,
    bearer_secret,
    echo_text,
    thread_title,
    verdict_response,
)
from ratekeeper.chatkit._limits import (
    check_upload_size,
    history_refusal,
    page_after,
    recent_window,
    upload_refusal,
)


def message(*texts: str, attachments: tuple[str, ...] = ()) -> UserMessageItem:
    return UserMessageItem(
        id="cthi_1",
        thread_id="cthr_1",
        created_at=datetime(2025, 1, 1),
        content=[UserMessageTextContent(text=t) for t in texts],
        attachments=[FileAttachment(id=f"atc_{n}", name=n, mime_type="x/y") for n in attachments],
        inference_options=InferenceOptions(),
    )


@pytest.mark.parametrize(
    ("texts", "attachments", "title"),
    [
        (("Hello",), (), "Hello"),
        (("  many \n\t spaces  ",), (), "many spaces"),
        (("two", "parts"), (), "two parts"),
        (("x" * 60,), (), "x" * 60),
        (("x" * 61,), (), "x" * 59 + "…"),
        (("word " * 20,), (), ("word " * 12).strip() + "…"),
        (("",), ("report.pdf",), "report.pdf"),
        (("",), (), None),
        ((), (), None),
    ],
)
def test_thread_title(
    texts: tuple[str, ...], attachments: tuple[str, ...], title: str | None
) -> None:
    assert thread_title(message(*texts, attachments=attachments)) == title


def test_thread_title_reads_tags_by_their_label() -> None:
    item = message("ask")
    item.content.append(UserMessageTagContent(id="t", text="@Alice", data={}))
    assert thread_title(item) == "ask @Alice"


def test_history_refusal_only_when_disabled() -> None:
    assert history_refusal(HistoryLimits()) is None
    assert history_refusal(HistoryLimits(enabled=True, recent_threads=1)) is None
    refusal = history_refusal(HistoryLimits(enabled=False))
    assert refusal is not None
    assert (refusal.status_code, refusal.code) == (403, "history_disabled")
    assert refusal.error_body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("reason", "status", "code"),
    [
        ("uploads_disabled", 403, "file_upload_disabled"),
        ("file_too_large", 413, "file_too_large"),
        ("too_many_files", 403, "max_files_exceeded"),
        ("expired", 401, "session_expired"),
        ("cancelled", 401, "session_cancelled"),
        ("unknown_session", 401, "invalid_client_secret"),
        ("something_new", 403, "upload_refused"),
    ],
)
def test_upload_refusals(reason: str, status: int, code: str) -> None:
    refusal = upload_refusal(
        # Plain strings, one of them ("something_new") unknown to this version: the fallback.
        UploadDecision(False, reason, 3, 3),  # type: ignore[arg-type]
        2 * 1024 * 1024,
        FileUploadLimits(),
    )
    assert refusal is not None
    assert (refusal.status_code, refusal.code) == (status, code)
    assert str(refusal) == refusal.message
    assert refusal.allow_retry is False


def test_allowed_upload_is_no_refusal_and_sizes_are_checked() -> None:
    assert (
        upload_refusal(UploadDecision(True, UploadReason.ALLOWED, 1, 3), 5, FileUploadLimits())
        is None
    )
    check_upload_size(0)
    with pytest.raises(InvalidParameter) as caught:
        check_upload_size(-1)
    assert caught.value.param == "params.size"


def test_too_large_message_names_sizes() -> None:
    refusal = upload_refusal(
        UploadDecision(False, UploadReason.FILE_TOO_LARGE, 0, 10),
        3 * 1024 * 1024,
        FileUploadLimits(enabled=True, max_file_size=2),
    )
    assert refusal is not None
    assert "3.00 MB" in refusal.message
    assert "limit of 2 MB" in refusal.message
    assert refusal.param == "params.size"


def test_too_large_message_just_over_the_limit_names_the_bytes() -> None:
    """One byte over 1 MB must not read as "1.00 MB is more than 1 MB"."""
    refusal = upload_refusal(
        UploadDecision(False, UploadReason.FILE_TOO_LARGE, 0, 10),
        1024 * 1024 + 1,
        FileUploadLimits(enabled=True, max_file_size=1),
    )
    assert refusal is not None
    assert "1048577 bytes" in refusal.message
    assert "(1048576 bytes)" in refusal.message


def test_limit_error_is_both_a_ratekeeper_error_and_a_chatkit_stream_error() -> None:
    error = ChatKitLimitError("nope", status_code=403, code="x", param="p")
    assert isinstance(error, CustomStreamError)
    assert isinstance(error, RatekeeperError)
    assert error.error_body() == {
        "error": {"message": "nope", "type": "invalid_request_error", "param": "p", "code": "x"}
    }


def test_page_after_and_recent_window() -> None:
    entries = ["a", "b", "c", "d", "e"]
    assert page_after(entries, after=None, limit=2, id_of=str) == (["a", "b"], True)
    assert page_after(entries, after="b", limit=2, id_of=str) == (["c", "d"], True)
    assert page_after(entries, after="c", limit=2, id_of=str) == (["d", "e"], False)
    assert page_after(entries, after="e", limit=2, id_of=str) == ([], False)
    assert page_after(entries, after="zz", limit=2, id_of=str) == ([], False)
    assert page_after(entries, after=None, limit=0, id_of=str) == ([], True)
    assert recent_window(entries, None) == entries
    assert recent_window(entries, 2) == ["a", "b"]


def test_echo_text() -> None:
    assert echo_text(message("hi", "there")) == "hi there"
    assert echo_text(message(attachments=("a.txt", "b.png"))) == "Attached: a.txt, b.png"
    assert echo_text(message()) == "(empty message)"
    assert echo_text(None) == "(nothing to echo)"


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        ("Bearer ek_abc", "ek_abc"),
        ("bearer   ek_abc  ", "ek_abc"),
        ("BEARER ek_abc", "ek_abc"),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic ek_abc", None),
        ("ek_abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_secret(header: str | None, secret: str | None) -> None:
    assert bearer_secret(header) == secret


def test_verdict_response_refuses_only_refusals() -> None:
    response = verdict_response(missing_secret_verdict())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert b"missing_client_secret" in response.body
    with pytest.raises(ValueError, match="admitted"):
        verdict_response(fail_open_verdict(FAIL_OPEN_DECISION))
