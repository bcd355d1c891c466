"""``ratekeeper._http_errors``: one exception-to-answer table and one error response."""

from __future__ import annotations

import json

from ratekeeper._errors import InvalidParameter, SessionNotFound
from ratekeeper._http_errors import ApiError, ErrorAnswer, answer_for, error_response
from ratekeeper._redact import Redactor
from ratekeeper.store import StoreUnavailable, ThreadNotFound, UnstorableValue


def _answer(exc: Exception) -> ErrorAnswer:
    answer = answer_for(exc)
    assert answer is not None
    return answer


def test_each_shared_exception_has_its_status() -> None:
    """The table both HTTP edges share gives each failure its status and code."""
    assert answer_for(InvalidParameter("bad", param="p", code="invalid_type")) == ErrorAnswer(
        400, "bad", code="invalid_type", param="p", quotes_input=True
    )
    assert _answer(SessionNotFound("cksess_x")).status_code == 404
    assert _answer(ThreadNotFound("cthr_x")).status_code == 404
    assert _answer(UnstorableValue("x"))[:4] == (
        400,
        UnstorableValue.public_message,
        "invalid_request_error",
        "invalid_value",
    )
    assert _answer(ApiError(415, "no", code="unsupported_media_type"))[:4] == (
        415,
        "no",
        "invalid_request_error",
        "unsupported_media_type",
    )


def test_a_subclass_answers_as_its_nearest_row() -> None:
    """Rows are found along the MRO: a store failure is a backend failure with its own code."""
    answer = answer_for(StoreUnavailable("db down at host"))
    assert answer is not None
    assert (answer.status_code, answer.code) == (503, "store_unavailable")
    assert "host" not in answer.message


def test_unknown_exceptions_have_no_answer() -> None:
    """Anything else is the caller's 500."""
    assert answer_for(RuntimeError("boom")) is None


def test_error_response_is_openai_shaped_and_redacted() -> None:
    """Message and param are redacted; a 503 carries its retry headers."""
    redactor = Redactor(["rk-key-12345678"])
    response = error_response(
        ErrorAnswer(503, "key rk-key-12345678", code="c", param="rk-key-12345678"), redactor
    )
    raw = bytes(response.body)
    body = json.loads(raw)
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "rk-key-12345678" not in raw.decode()
    assert response.headers["retry-after"] == "1"
