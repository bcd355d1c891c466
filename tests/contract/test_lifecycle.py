"""Session lifecycle, expiry, cancellation, sweeping and uploads, on every backend."""

from __future__ import annotations

import math

import pytest

from ratekeeper import (
    FileUploadLimits,
    HistoryLimits,
    InvalidParameter,
    Reason,
    SessionNotFound,
    SessionSpec,
    SessionStatus,
    Workflow,
)

from .conftest import START, Harness, HarnessFactory


def test_created_session_has_resolved_fields(harness: Harness) -> None:
    """Creation returns every field, the secret included, with defaults resolved."""
    session = harness.create("u_1")
    assert session.id.startswith("cksess_")
    assert session.client_secret.startswith("ek_")
    assert len(session.client_secret) >= 3 + 22  # >= 128 bits of base64url
    assert session.user == "u_1"
    assert session.status is SessionStatus.ACTIVE
    assert session.expires_at == int(START) + 600
    assert isinstance(session.expires_at, int)
    assert session.max_requests_per_1_minute == 10
    assert session.file_upload == FileUploadLimits(False, 512, 10)
    assert session.history == HistoryLimits(True, None)
    assert session.client_secret not in repr(session)


def test_options_and_attributes_round_trip(harness: Harness) -> None:
    """What a session was created with is what ``get`` reads back (minus the secret)."""
    created = harness.create(
        "u_2",
        expires_after_s=30,
        max_requests_per_1_minute=5,
        file_upload=FileUploadLimits(True, 8, 2),
        history=HistoryLimits(False, 3),
        attributes={"workflow": {"id": "wf_1", "version": None}, "n": 1.5},
    )
    read = harness.call(harness.backend.get, created.id)
    assert read == created
    assert read.client_secret is None
    assert read.attributes == {"workflow": {"id": "wf_1", "version": None}, "n": 1.5}
    assert read.expires_at == int(START) + 30


def test_a_spec_round_trips_whole(harness: Harness) -> None:
    """A SessionSpec, workflow and titling included, is what ``get`` and ``admit_session`` read."""
    spec = SessionSpec(
        30,
        5,
        FileUploadLimits(True, 8, 2),
        HistoryLimits(False, 3),
        Workflow("wf_1", "2", {"s": "x", "i": 1, "f": 1.5, "b": True}, tracing_enabled=False),
        automatic_thread_titling=False,
        attributes={"n": 1.5},
    )
    created = harness.call(harness.backend.create_session, "u_2", spec)
    assert created.spec is spec
    read = harness.call(harness.backend.get, created.id)
    assert read == created
    assert read.spec == spec
    _, admitted = harness.call(harness.backend.admit_session, created.client_secret)
    assert admitted is not None
    assert admitted.spec == spec


def test_keywords_and_a_spec_create_the_same_session(harness: Harness) -> None:
    """The keyword form stands for the spec it describes; mixing the two is refused."""
    by_keywords = harness.create("u", expires_after_s=30, max_requests_per_1_minute=5)
    by_spec = harness.call(harness.backend.create_session, "u", SessionSpec(30, 5))
    assert by_keywords.spec == by_spec.spec == SessionSpec(30, 5)
    assert harness.create("u").spec == SessionSpec()
    with pytest.raises(TypeError, match="not both"):
        harness.call(harness.backend.create_session, "u", SessionSpec(), expires_after_s=30)
    with pytest.raises(TypeError, match="SessionSpec"):
        harness.call(harness.backend.create_session, "u", 30)
    assert harness.call(harness.backend.statistics).active == 3


def test_expires_at_floors_the_creation_time(make_harness: HarnessFactory) -> None:
    """``expires_at = floor(created) + seconds``: a session never outlives its request."""
    harness = make_harness(start=START + 0.75)
    session = harness.create(expires_after_s=10)
    assert session.expires_at == int(START) + 10
    harness.advance(9)  # wall = START + 9.75 < expires_at
    assert harness.admit(session.client_secret).allowed
    harness.advance(0.25)  # wall == expires_at
    decision = harness.admit(session.client_secret)
    assert decision.reason == Reason.EXPIRED
    assert decision.retry_after == math.inf


def test_expired_exactly_at_expires_at(harness: Harness) -> None:
    """One quarter second before ``expires_at`` is active; at ``expires_at`` it is expired."""
    session = harness.create(expires_after_s=5)
    harness.advance(4.75)
    assert harness.admit(session.client_secret).allowed
    assert harness.call(harness.backend.get, session.id).status is SessionStatus.ACTIVE
    harness.advance(0.25)
    assert harness.admit(session.client_secret).reason == Reason.EXPIRED
    # Reported expired before any sweep has run: enforcement never waits for the sweeper.
    assert harness.call(harness.backend.get, session.id).status is SessionStatus.EXPIRED


def test_cancel_refuses_the_secret_at_once(harness: Harness) -> None:
    """After cancel, the very next request is refused as cancelled."""
    session = harness.create()
    assert harness.admit(session.client_secret).allowed
    cancelled, changed = harness.call(harness.backend.cancel, session.id)
    assert cancelled.status is SessionStatus.CANCELLED
    assert changed
    decision = harness.admit(session.client_secret)
    assert (decision.allowed, decision.reason) == (False, Reason.CANCELLED)


def test_cancel_is_idempotent(harness: Harness) -> None:
    """Cancelling twice returns the cancelled session both times; only the first changed it."""
    session = harness.create()
    assert harness.call(harness.backend.cancel, session.id).changed
    again, changed = harness.call(harness.backend.cancel, session.id)
    assert again.status is SessionStatus.CANCELLED
    assert not changed


def test_cancelled_stays_cancelled_after_its_expiry_time(harness: Harness) -> None:
    """A terminal state never changes: cancelled beats a later expiry."""
    session = harness.create(expires_after_s=5)
    harness.call(harness.backend.cancel, session.id)
    harness.advance(10)
    assert harness.call(harness.backend.sweep, 100) == []
    assert harness.call(harness.backend.get, session.id).status is SessionStatus.CANCELLED
    assert harness.admit(session.client_secret).reason == Reason.CANCELLED


def test_cancel_after_expiry_reports_expired(harness: Harness) -> None:
    """Cancelling an expired session changes nothing and says ``expired``."""
    session = harness.create(expires_after_s=5)
    harness.advance(5)
    after, changed = harness.call(harness.backend.cancel, session.id)
    assert after.status is SessionStatus.EXPIRED
    assert not changed
    assert harness.admit(session.client_secret).reason == Reason.EXPIRED


def test_admit_session_returns_the_session_it_admitted(harness: Harness) -> None:
    """admit_session: the same decision as admit, with the session only when admitted."""
    session = harness.create(max_requests_per_1_minute=1, attributes={"workflow": {"id": "wf"}})
    decision, admitted = harness.call(harness.backend.admit_session, session.client_secret)
    assert (decision.allowed, decision.limit, decision.remaining) == (True, 1, 0)
    assert decision.session_id == session.id
    assert admitted == harness.call(harness.backend.get, session.id)
    assert admitted is not None
    assert admitted.attributes == {"workflow": {"id": "wf"}}
    assert admitted.client_secret is None
    refused, none = harness.call(harness.backend.admit_session, session.client_secret)
    assert (refused.reason, none) == (Reason.RATE_LIMITED, None)
    harness.call(harness.backend.cancel, session.id)
    cancelled, none = harness.call(harness.backend.admit_session, session.client_secret)
    assert (cancelled.reason, none) == (Reason.CANCELLED, None)
    unknown, none = harness.call(harness.backend.admit_session, "ek_unknown")
    assert (unknown.reason, none) == (Reason.UNKNOWN_SESSION, None)


def test_unknown_session_id(harness: Harness) -> None:
    """``get`` and ``cancel`` of an id that never existed raise SessionNotFound."""
    with pytest.raises(SessionNotFound, match="cksess_nope"):
        harness.call(harness.backend.get, "cksess_nope")
    with pytest.raises(SessionNotFound):
        harness.call(harness.backend.cancel, "cksess_nope")


def test_sweep_flips_each_due_session_once(harness: Harness) -> None:
    """Sweep returns due sessions earliest first, with their lag, and never twice."""
    late = harness.create(expires_after_s=20)
    early = harness.create(expires_after_s=10)
    harness.create(expires_after_s=600)
    assert harness.call(harness.backend.sweep, 100) == []
    harness.advance(25)
    flipped = harness.call(harness.backend.sweep, 100)
    assert [e.session.id for e in flipped] == [early.id, late.id]
    assert [e.lag_s for e in flipped] == [15.0, 5.0]
    assert all(e.session.status is SessionStatus.EXPIRED for e in flipped)
    assert harness.call(harness.backend.sweep, 100) == []
    assert harness.admit(early.client_secret).reason == Reason.EXPIRED


def test_sweep_respects_max_items(harness: Harness) -> None:
    """A sweep flips at most ``max_items``; the next one continues."""
    for _ in range(5):
        harness.create(expires_after_s=1)
    harness.advance(1)
    assert len(harness.call(harness.backend.sweep, 2)) == 2
    assert len(harness.call(harness.backend.sweep, 2)) == 2
    assert len(harness.call(harness.backend.sweep, 2)) == 1
    assert harness.call(harness.backend.sweep, 2) == []


def test_time_to_next_deadline(harness: Harness) -> None:
    """The sweeper is told how long to sleep until the earliest deadline."""
    assert harness.call(harness.backend.time_to_next_deadline) is None
    harness.create(expires_after_s=30)
    harness.create(expires_after_s=10)
    assert harness.call(harness.backend.time_to_next_deadline) == 10.0
    harness.advance(4)
    assert harness.call(harness.backend.time_to_next_deadline) == 6.0
    harness.advance(10)
    due = harness.call(harness.backend.time_to_next_deadline)
    assert due is not None
    assert due <= 0


def test_lookup_does_not_count(harness: Harness) -> None:
    """Looking a session up by secret consumes no capacity."""
    session = harness.create(max_requests_per_1_minute=1)
    for _ in range(3):
        found = harness.call(harness.backend.lookup, session.client_secret)
        assert found is not None
        assert found.id == session.id
    assert harness.admit(session.client_secret).allowed
    assert harness.call(harness.backend.lookup, "ek_unknown") is None


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"user": ""}, "user", "string_below_min_length"),
        ({"user": 7}, "user", "invalid_type"),
        ({"expires_after_s": 0}, "expires_after.seconds", "integer_below_min_value"),
        ({"expires_after_s": 601}, "expires_after.seconds", "integer_above_max_value"),
        ({"expires_after_s": 1.5}, "expires_after.seconds", "invalid_type"),
        ({"expires_after_s": True}, "expires_after.seconds", "invalid_type"),
        (
            {"max_requests_per_1_minute": 0},
            "rate_limits.max_requests_per_1_minute",
            "integer_below_min_value",
        ),
        (
            {"max_requests_per_1_minute": "10"},
            "rate_limits.max_requests_per_1_minute",
            "invalid_type",
        ),
        (
            {"file_upload": FileUploadLimits(True, 513, 1)},
            "chatkit_configuration.file_upload.max_file_size",
            "integer_above_max_value",
        ),
        (
            {"file_upload": FileUploadLimits(True, 1, 0)},
            "chatkit_configuration.file_upload.max_files",
            "integer_below_min_value",
        ),
        (
            {"max_requests_per_1_minute": 2**53},
            "rate_limits.max_requests_per_1_minute",
            "integer_above_max_value",
        ),
        (
            {"history": HistoryLimits(True, 0)},
            "chatkit_configuration.history.recent_threads",
            "integer_below_min_value",
        ),
    ],
)
def test_invalid_parameters_create_nothing(
    harness: Harness, kwargs: dict[str, object], param: str, code: str
) -> None:
    """Each bad value raises InvalidParameter naming the parameter, and no session exists."""
    arguments: dict[str, object] = {"user": "u_1", **kwargs}
    user = arguments.pop("user")
    with pytest.raises(InvalidParameter) as raised:
        harness.call(harness.backend.create_session, user, **arguments)
    assert raised.value.param == param
    assert raised.value.code == code
    stats = harness.call(harness.backend.statistics)
    assert stats.active == 0


def test_statistics_count_by_status(harness: Harness) -> None:
    """Active, expired and cancelled sessions are counted."""
    harness.create(expires_after_s=1)
    cancelled = harness.create()
    harness.create()
    harness.call(harness.backend.cancel, cancelled.id)
    harness.advance(1)
    harness.call(harness.backend.sweep, 100)
    stats = harness.call(harness.backend.statistics)
    assert (stats.active, stats.expired, stats.cancelled) == (1, 1, 1)


class TestUploads:
    """``file_upload`` limits: enabled, per-file size, files per session."""

    MB = 1024 * 1024

    def test_disabled_by_default(self, harness: Harness) -> None:
        """Uploads are refused when the session did not enable them."""
        session = harness.create()
        decision = harness.call(harness.backend.reserve_upload, session.id, 10)
        assert (decision.allowed, decision.reason) == (False, "uploads_disabled")

    def test_size_limit_is_inclusive(self, harness: Harness) -> None:
        """A file of exactly ``max_file_size`` MB fits; one byte more does not."""
        session = harness.create(file_upload=FileUploadLimits(True, 2, 5))
        reserve = harness.backend.reserve_upload
        assert harness.call(reserve, session.id, 2 * self.MB).allowed
        too_big = harness.call(reserve, session.id, 2 * self.MB + 1)
        assert (too_big.allowed, too_big.reason) == (False, "file_too_large")
        assert too_big.files_used == 1  # a refused file is not counted

    def test_max_files_per_session(self, harness: Harness) -> None:
        """The ``max_files + 1``th upload is refused."""
        session = harness.create(file_upload=FileUploadLimits(True, 1, 2))
        reserve = harness.backend.reserve_upload
        assert harness.call(reserve, session.id, 1).files_used == 1
        assert harness.call(reserve, session.id, 1).files_used == 2
        refused = harness.call(reserve, session.id, 1)
        assert (refused.allowed, refused.reason, refused.max_files) == (
            False,
            "too_many_files",
            2,
        )

    def test_refused_on_ended_sessions(self, harness: Harness) -> None:
        """Expired and cancelled sessions take no uploads."""
        cancelled = harness.create(file_upload=FileUploadLimits(True, 1, 2))
        expired = harness.create(file_upload=FileUploadLimits(True, 1, 2), expires_after_s=1)
        harness.call(harness.backend.cancel, cancelled.id)
        harness.advance(1)
        reserve = harness.backend.reserve_upload
        assert harness.call(reserve, cancelled.id, 1).reason == "cancelled"
        assert harness.call(reserve, expired.id, 1).reason == "expired"
        with pytest.raises(SessionNotFound):
            harness.call(reserve, "cksess_missing", 1)
