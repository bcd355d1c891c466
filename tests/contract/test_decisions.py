"""The decision rule at its boundaries, on every backend."""

from __future__ import annotations

import math

import pytest

from ratekeeper import Reason

from .conftest import Harness, HarnessFactory


def test_first_request_is_allowed_with_full_window_ahead(harness: Harness) -> None:
    """An admitted request reports the remaining capacity and a 60 s reset."""
    session = harness.create(max_requests_per_1_minute=3)
    decision = harness.admit(session.client_secret)
    assert decision.allowed is True
    assert decision.reason == Reason.ALLOWED
    assert (decision.limit, decision.remaining) == (3, 2)
    assert decision.retry_after == 0.0
    assert decision.reset_after == 60.0
    assert decision.session_id == session.id


def test_limit_is_exact_and_rejections_report_retry_after(harness: Harness) -> None:
    """The N+1th request in a window is refused, with the exact wait until a slot frees."""
    session = harness.create(max_requests_per_1_minute=3)
    secret = session.client_secret
    for expected_remaining in (2, 1):
        assert harness.admit(secret).remaining == expected_remaining
        harness.advance(10)
    assert harness.admit(secret).remaining == 0  # admitted at t=20
    harness.advance(5)
    refused = harness.admit(secret)  # t=25; admissions at 0, 10, 20
    assert refused.allowed is False
    assert refused.reason == Reason.RATE_LIMITED
    assert refused.remaining == 0
    assert refused.retry_after == 35.0  # the admission at 0 stops counting at 60
    assert refused.reset_after == 55.0  # the one at 20 stops counting at 80


def test_admission_stops_counting_exactly_sixty_seconds_later(harness: Harness) -> None:
    """Window is (t - 60, t]: at t0 + 60 - epsilon still full, at t0 + 60 free."""
    session = harness.create(max_requests_per_1_minute=1)
    secret = session.client_secret
    assert harness.admit(secret).allowed
    harness.advance(59.75)
    refused = harness.admit(secret)
    assert refused.reason == Reason.RATE_LIMITED
    assert refused.retry_after == 0.25
    harness.advance(0.25)
    assert harness.admit(secret).allowed


def test_rejections_do_not_consume_capacity(harness: Harness) -> None:
    """Hammering a full window does not push the next admission further out."""
    session = harness.create(max_requests_per_1_minute=2)
    secret = session.client_secret
    assert harness.admit(secret).allowed
    assert harness.admit(secret).allowed
    for _ in range(50):
        harness.advance(1)
        assert not harness.admit(secret).allowed
    harness.advance(10)  # t = 60
    first = harness.admit(secret)
    second = harness.admit(secret)
    assert (first.allowed, first.remaining) == (True, 1)
    assert (second.allowed, second.remaining) == (True, 0)


def test_window_slides_one_admission_at_a_time(harness: Harness) -> None:
    """Capacity returns in the order admissions were made, not all at once."""
    session = harness.create(max_requests_per_1_minute=3)
    secret = session.client_secret
    for _ in range(3):
        assert harness.admit(secret).allowed
        harness.advance(1)
    harness.advance(57)  # t = 60: only the admission at 0 has left
    assert harness.admit(secret).remaining == 0
    refused = harness.admit(secret)
    assert refused.retry_after == 1.0  # the admission at 1 leaves at 61


def test_limit_of_one(harness: Harness) -> None:
    """A limit of one admits exactly one request per minute."""
    session = harness.create(max_requests_per_1_minute=1)
    secret = session.client_secret
    decision = harness.admit(secret)
    assert (decision.allowed, decision.remaining, decision.limit) == (True, 0, 1)
    assert harness.admit(secret).reason == Reason.RATE_LIMITED


def test_huge_limit_admits_without_allocating_the_limit(harness: Harness) -> None:
    """A limit of 10^9 per minute works and counts down from 10^9."""
    session = harness.create(max_requests_per_1_minute=10**9)
    secret = session.client_secret
    for i in range(1, 101):
        assert harness.admit(secret).remaining == 10**9 - i


def test_unknown_secret(harness: Harness) -> None:
    """A secret that matches nothing is refused as unknown, with no limit to report."""
    harness.create()
    decision = harness.admit("ek_not-a-real-secret")
    assert decision.allowed is False
    assert decision.reason == Reason.UNKNOWN_SESSION
    assert (decision.limit, decision.remaining) == (0, 0)
    assert decision.retry_after == math.inf
    assert decision.session_id is None


@pytest.mark.parametrize("secret", ["", "ek_\ud800", "ek_\x00", "ek_" + "x" * 10_000])
def test_malformed_secrets_are_unknown_not_errors(harness: Harness, secret: str) -> None:
    """Empty, unencodable, NUL-bearing or huge secrets are refused as unknown, never raise."""
    harness.create()
    assert harness.admit(secret).reason == Reason.UNKNOWN_SESSION
    assert harness.call(harness.backend.lookup, secret) is None


def test_sessions_do_not_share_windows(harness: Harness) -> None:
    """Each session has its own window."""
    one = harness.create(max_requests_per_1_minute=1)
    two = harness.create(max_requests_per_1_minute=1)
    assert harness.admit(one.client_secret).allowed
    assert not harness.admit(one.client_secret).allowed
    assert harness.admit(two.client_secret).allowed


@pytest.mark.parametrize("limit", [1, 2, 7])
def test_steady_overload_admits_exactly_limit_per_window(
    make_harness: HarnessFactory, limit: int
) -> None:
    """Requests every quarter second for five minutes: every 60 s window holds <= limit."""
    harness = make_harness()
    session = harness.create(max_requests_per_1_minute=limit, expires_after_s=600)
    admitted: list[float] = []
    t = 0.0
    while t < 300:
        if harness.admit(session.client_secret).allowed:
            admitted.append(t)
        harness.advance(0.25)
        t += 0.25
    for i, start in enumerate(admitted):
        in_window = [a for a in admitted[i:] if a < start + 60]
        assert len(in_window) <= limit
    assert len(admitted) == limit * 5  # and the capacity is used fully
