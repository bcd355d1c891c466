"""The HTTP shape of decisions: duration format, Retry-After, rate-limit headers, error bodies."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratekeeper._ratelimit_headers import (
    Verdict,
    backend_unavailable_verdict,
    encoded_headers,
    format_duration,
    missing_secret_verdict,
    rate_limit_headers,
    refusal_headers,
    retry_after_ms,
    retry_after_seconds,
    retry_headers,
    verdict_for,
)
from ratekeeper._types import Decision, Reason


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (-3.0, "0s"),
        (0.0001, "1ms"),
        (0.25, "250ms"),
        (0.999, "999ms"),
        (0.9991, "1s"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (1.05, "1.05s"),
        (59.001, "59.001s"),
        (60.0, "1m0s"),
        (60.000000000001, "1m0s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_format_duration_is_go_style_rounded_up_to_the_millisecond(
    seconds: float, text: str
) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_format_duration_refuses_non_finite_values(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        format_duration(value)


@pytest.mark.parametrize(
    ("wait", "header"),
    [(0.0, 1), (0.001, 1), (1.0, 1), (1.0000001, 2), (12.3, 13), (59.999, 60)],
)
def test_retry_after_is_an_integer_at_least_one_rounded_up(wait: float, header: int) -> None:
    assert retry_after_seconds(wait) == header


@pytest.mark.parametrize(
    ("wait", "header"),
    [(0.0, 1), (0.0001, 1), (0.25, 250), (0.2501, 251), (20.5, 20500), (60.000000000001, 60000)],
)
def test_retry_after_ms_is_the_wait_rounded_up_to_the_millisecond(wait: float, header: int) -> None:
    assert retry_after_ms(wait) == header


@pytest.mark.parametrize("wait", [0.0, 0.0004, 0.25, 0.9991, 1.0, 1.0000001, 20.5, 59.999, 60.0])
def test_retry_after_ms_never_exceeds_retry_after(wait: float) -> None:
    """Both say when to retry: the precise one is never later than the whole seconds."""
    assert 1 <= retry_after_ms(wait) <= retry_after_seconds(wait) * 1000


def test_rate_limit_headers_follow_openai_and_the_ietf_draft() -> None:
    assert dict(rate_limit_headers(10, 3, 12.2)) == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "12.2s",
        "ratelimit-policy": '"session";q=10;w=60',
        "ratelimit": '"session";r=3;t=13',
    }


def test_an_admitted_decision_is_a_200_with_the_window_headers() -> None:
    verdict = verdict_for(Decision(True, Reason.ALLOWED, 5, 4, 0.0, 60.0, "cksess_x"))
    assert (verdict.allowed, verdict.status_code, verdict.error) == (True, 200, None)
    headers = dict(verdict.headers)
    assert headers["x-ratelimit-remaining-requests"] == "4"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"
    assert headers["ratelimit"] == '"session";r=4;t=60'
    assert "retry-after" not in headers
    assert verdict.body() == b""


def test_a_rate_limited_decision_is_a_429_with_retry_after_and_openai_error() -> None:
    decision = Decision(False, Reason.RATE_LIMITED, 3, 0, 20.5, 59.5, "cksess_x")
    verdict = verdict_for(decision)
    assert verdict.status_code == 429
    headers = dict(verdict.headers)
    assert headers["retry-after"] == "21"
    assert headers["retry-after-ms"] == "20500"
    assert "x-should-retry" not in headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "59.5s"
    assert verdict.error is not None
    error = verdict.error["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "requests",
        "rate_limit_exceeded",
        None,
    )
    assert "20.5s" in error["message"]
    assert json.loads(verdict.body()) == verdict.error


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (Reason.UNKNOWN_SESSION, "invalid_client_secret"),
        (Reason.EXPIRED, "session_expired"),
        (Reason.CANCELLED, "session_cancelled"),
    ],
)
def test_session_refusals_are_401_with_distinct_codes(reason: Reason, code: str) -> None:
    verdict = verdict_for(Decision(False, reason, 0, 0, math.inf, 0.0, None))
    assert verdict.status_code == 401
    assert verdict.error is not None
    assert verdict.error["error"]["code"] == code
    assert verdict.error["error"]["type"] == "invalid_request_error"
    assert dict(verdict.headers)["www-authenticate"].startswith("Bearer")
    assert dict(verdict.headers)["x-should-retry"] == "false"


def test_missing_secret_is_a_401_explaining_bearer_auth() -> None:
    verdict = missing_secret_verdict()
    assert verdict.status_code == 401
    assert dict(verdict.headers)["x-should-retry"] == "false"
    assert verdict.error is not None
    assert verdict.error["error"]["code"] == "missing_client_secret"
    assert "Authorization: Bearer" in verdict.error["error"]["message"]


def test_backend_unavailable_is_a_503_server_error() -> None:
    verdict = backend_unavailable_verdict()
    assert verdict.status_code == 503
    assert dict(verdict.headers) == {"retry-after": "1", "retry-after-ms": "1000"}
    assert verdict.error is not None
    assert (verdict.error["error"]["type"], verdict.error["error"]["code"]) == (
        "server_error",
        "backend_unavailable",
    )


@pytest.mark.parametrize(("limit", "remaining"), [(1, 0), (10, 9), (10**9, 123_456)])
def test_the_admitted_fast_path_matches_the_general_rule(limit: int, remaining: int) -> None:
    decision = Decision(True, Reason.ALLOWED, limit, remaining, 0.0, 60.0, "cksess_x")
    verdict = verdict_for(decision)
    expected = rate_limit_headers(limit, remaining, 60.0)
    assert verdict.headers == expected
    assert verdict.raw_headers() == [(n.encode(), v.encode()) for n, v in expected]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (401, {"x-should-retry": "false"}),
        (503, {"retry-after": "1", "retry-after-ms": "1000"}),
        (400, {}),
        (404, {}),
        (500, {}),
    ],
)
def test_refusal_headers_say_whether_and_when_to_retry(
    status: int, headers: dict[str, str]
) -> None:
    """Error responses built outside a verdict get the verdicts' retry headers."""
    assert dict(refusal_headers(status)) == headers


def _latin1(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers)


limits = st.integers(min_value=1, max_value=2**53 - 1) | st.integers(min_value=1, max_value=40)


@given(data=st.data(), limit=limits)
def test_cached_admitted_headers_equal_the_reference_builder(
    data: st.DataObject, limit: int
) -> None:
    """Admitted headers (cached per limit and remaining) equal the general rule, every time.

    Small limits make cache hits: each remaining is asked for several times, in any order.
    """
    remainders = data.draw(st.lists(st.integers(min_value=0, max_value=limit - 1), max_size=20))
    for remaining in remainders:
        decision = Decision(True, Reason.ALLOWED, limit, remaining, 0.0, 60.0, "cksess_x")
        verdict = verdict_for(decision)
        expected = rate_limit_headers(limit, remaining, 60.0)
        assert verdict.headers == expected
        assert encoded_headers(verdict) == _latin1(expected)
        assert verdict.raw_headers() == list(_latin1(expected))


@given(
    limit=limits,
    retry_after=st.floats(min_value=0.0, max_value=60.0),
    reset_after=st.floats(min_value=0.0, max_value=60.0),
)
def test_rate_limited_headers_equal_the_reference_builder(
    limit: int, retry_after: float, reset_after: float
) -> None:
    decision = Decision(False, Reason.RATE_LIMITED, limit, 0, retry_after, reset_after, "cksess_x")
    verdict = verdict_for(decision)
    expected = (*rate_limit_headers(limit, 0, reset_after), *retry_headers(retry_after))
    assert verdict.headers == expected
    assert encoded_headers(verdict) == _latin1(expected)


@pytest.mark.parametrize("reason", [Reason.UNKNOWN_SESSION, Reason.EXPIRED, Reason.CANCELLED])
def test_refusal_headers_are_encoded_as_they_read(reason: Reason) -> None:
    decision = Decision(False, reason, 10, 0, math.inf, 0.0, "cksess_x")
    for verdict in (verdict_for(decision), missing_secret_verdict(), backend_unavailable_verdict()):
        assert encoded_headers(verdict) == _latin1(verdict.headers)


def test_headers_of_a_verdict_built_elsewhere_are_encoded_too() -> None:
    verdict = Verdict(False, 400, (("a", "b\xe9"),), None, None)
    assert encoded_headers(verdict) == ((b"a", b"b\xe9"),)
