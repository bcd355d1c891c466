"""The engine's expiry index (sessions bucketed by second) and its lazy sweep reports.

Manual clocks only. A hypothesis state machine drives creates, cancels, clock advances, wall
steps and sweeps of any size against a model that knows each session's monotonic deadline,
so a clump split across sweeps, a bucket whose sessions were created on both sides of a wall
step, and cancels of a bucket's earliest session are all exercised.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ratekeeper import (
    CapacityExceeded,
    Engine,
    EngineStatistics,
    ManualClock,
    Reason,
    SessionNotFound,
    SessionStatus,
    UploadReason,
)
from ratekeeper._engine import _session
from ratekeeper._errors import InvalidParameter
from ratekeeper._secrets import session_id_for
from ratekeeper._types import FileUploadLimits, HistoryLimits, Session, SessionSpec
from ratekeeper.redis import session_id_for as redis_session_id_for

START = 1_700_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


def test_a_clump_is_flipped_in_creation_order_across_sweeps(clock: ManualClock) -> None:
    """Sessions due in one second come out in the order they were made, max_items at a time."""
    engine = Engine(clock)
    ids = [engine.create_session(f"u{n}", expires_after_s=5).id for n in range(7)]
    later = engine.create_session("later", expires_after_s=6)
    clock.advance(6)
    first = [e.session.id for e in engine.sweep(3)]
    second = [e.session.id for e in engine.sweep(3)]
    third = [e.session.id for e in engine.sweep(3)]
    assert first + second == ids[:6]
    assert third == [ids[6], later.id]
    assert engine.sweep(3) == []
    assert engine.statistics().active == 0


def test_sessions_of_one_instant_share_their_deadline_float(clock: ManualClock) -> None:
    """Sessions due in the same second at the same deadline share one float (memory), and
    their ``expires_at`` (derived, not stored) is the same."""
    engine = Engine(clock)
    a = engine.create_session("a", expires_after_s=600)
    b = engine.create_session("b", expires_after_s=600)
    assert engine._by_id[a.id].deadline is engine._by_id[b.id].deadline
    assert a.expires_at == b.expires_at == engine.get(b.id).expires_at == int(START) + 600
    clock.step_wall(0.25)  # same second, another deadline: its own float
    c = engine.create_session("c", expires_after_s=600)
    assert c.expires_at == a.expires_at
    assert engine._by_id[c.id].deadline == engine._by_id[a.id].deadline - 0.25


def test_a_record_keeps_six_slots(clock: ManualClock) -> None:
    """An idle session's record is 80 bytes: nothing derivable is stored (the RSS target)."""
    engine = Engine(clock)
    made = engine.create_session("u")
    assert set(type(engine._by_id[made.id]).__slots__) == {
        "created_at",
        "deadline",
        "id",
        "spec",
        "times",
        "user",
    }
    if sys.implementation.name == "cpython":  # object header, GC header and six slots
        assert sys.getsizeof(engine._by_id[made.id]) == 80


def test_cancelling_a_bucket_s_earliest_session_moves_the_next_deadline(
    clock: ManualClock,
) -> None:
    """After a wall step, one second holds two deadlines; cancelling the earlier one counts."""
    engine = Engine(clock, retention_s=10_000)
    early = engine.create_session("early", expires_after_s=60)  # deadline 60
    clock.step_wall(-0.5)
    clock.advance(0.5)  # same wall second again, monotonic 0.5 later
    late = engine.create_session("late", expires_after_s=60)  # same expires_at, deadline 60.5
    assert early.expires_at == late.expires_at
    assert engine.next_deadline() == 60.0
    engine.cancel(early.id)
    assert engine.next_deadline() == 60.5
    clock.advance(59.75)  # monotonic 60.25: nothing due
    assert engine.sweep() == []
    clock.advance(0.25)
    assert [e.session.id for e in engine.sweep()] == [late.id]


def test_a_bucket_half_due_flips_only_its_due_sessions(clock: ManualClock) -> None:
    """Sessions sharing ``expires_at`` but not a deadline flip each at its own deadline."""
    engine = Engine(clock, max_sessions=2)
    early = engine.create_session("early", expires_after_s=10)  # deadline 10
    clock.step_wall(-0.75)
    clock.advance(0.75)
    late = engine.create_session("late", expires_after_s=10)  # deadline 10.75
    clock.advance(9.25)  # monotonic 10.0
    # At the cap, the due one frees its place though no sweep ran yet.
    engine.create_session("third", expires_after_s=600)
    with pytest.raises(CapacityExceeded):
        engine.create_session("fourth", expires_after_s=600)
    flipped = engine.sweep()
    assert [(e.session.id, e.lag_s) for e in flipped] == [(early.id, 0.0)]
    assert engine.get(late.id).status is SessionStatus.ACTIVE
    assert engine.next_deadline() == 10.75
    clock.advance(0.75)
    assert [(e.session.id, e.lag_s) for e in engine.sweep()] == [(late.id, 0.0)]


def test_flip_due_reports_lazily_what_sweep_reports(clock: ManualClock) -> None:
    """``flip_due`` flips the same sessions; its values, bounds and sum agree with ``sweep``."""
    engine = Engine(clock)
    made = [engine.create_session("u", expires_after_s=1 + n % 3) for n in range(9)]
    clock.advance(5)
    flipped = engine.flip_due(6)
    assert len(flipped) == 6
    expired = flipped.expired()
    assert [e.session.id for e in expired] == [made[n].id for n in (0, 3, 6, 1, 4, 7)]
    lags = [e.lag_s for e in expired]
    assert lags == flipped.lags() == [4.0, 4.0, 4.0, 3.0, 3.0, 3.0]
    assert flipped.lag_bounds() == (3.0, 4.0)
    assert flipped.lag_sum() == sum(lags)
    assert flipped.ids() == [(e.session.id, "u") for e in expired]
    assert all(e.session == engine.get(e.session.id) for e in expired)
    assert len(engine.flip_due()) == 3
    assert len(engine.flip_due()) == 0


def test_the_fast_session_builder_builds_what_the_constructor_builds(clock: ManualClock) -> None:
    """``_session`` sets every field of ``Session`` (the import-time check covers new fields)."""
    engine = Engine(clock)
    made = engine.create_session(
        "u",
        expires_after_s=30,
        max_requests_per_1_minute=7,
        file_upload=FileUploadLimits(enabled=True, max_files=3),
        history=HistoryLimits(recent_threads=4),
        attributes={"workflow": {"id": "wf_1"}},
    )
    record = engine._by_id[made.id]
    assert _session(record, SessionStatus.ACTIVE, made.client_secret) == Session(
        made.id,
        "u",
        SessionStatus.ACTIVE,
        int(START) + 30,
        START,
        SessionSpec(
            30,
            7,
            FileUploadLimits(enabled=True, max_files=3),
            HistoryLimits(recent_threads=4),
            attributes={"workflow": {"id": "wf_1"}},
        ),
        made.client_secret,
    )
    assert made.client_secret is not None


def test_session_ids_derive_from_secrets_as_on_redis(clock: ManualClock) -> None:
    """The id is the same hash of the secret in memory and on Redis; a guess finds nothing."""
    engine = Engine(clock)
    session = engine.create_session("u")
    assert session.client_secret is not None
    assert session.id == session_id_for(session.client_secret)
    assert session.id == redis_session_id_for(session.client_secret)
    assert engine.lookup(session.id) is None  # the id is not a secret
    assert session_id_for("\udc80").startswith("cksess_")  # a lone surrogate does not raise


@pytest.mark.parametrize(
    ("file_upload", "history"),
    [
        (FileUploadLimits(enabled=1), HistoryLimits()),  # type: ignore[arg-type]
        (FileUploadLimits(max_file_size=513), HistoryLimits()),
        (FileUploadLimits(max_file_size=True), HistoryLimits()),
        (FileUploadLimits(max_files=0), HistoryLimits()),
        (FileUploadLimits(max_files=2**53), HistoryLimits()),
        (FileUploadLimits(), HistoryLimits(enabled=None)),  # type: ignore[arg-type]
        (FileUploadLimits(), HistoryLimits(recent_threads=0)),
        (FileUploadLimits(), HistoryLimits(recent_threads=False)),
        ({"enabled": True}, HistoryLimits()),
        (FileUploadLimits(), {"enabled": True}),
    ],
)
def test_the_validation_fast_path_lets_nothing_invalid_through(
    file_upload: Any, history: Any
) -> None:
    """Limits the full checks refuse are refused with the fast path in front of them."""
    with pytest.raises(InvalidParameter):
        SessionSpec(600, 10, file_upload, history)


@pytest.mark.parametrize(
    ("user", "expires", "limit"),
    [("", 600, 10), ("u" * 513, 600, 10), ("u", 601, 10), ("u", 0, 10), ("u", True, 10)],
)
def test_the_validation_fast_path_checks_scalars(user: str, expires: int, limit: int) -> None:
    """Out-of-range or mistyped scalars still fail, given as keywords or as a spec."""
    with pytest.raises(InvalidParameter):
        Engine().create_session(user, expires_after_s=expires, max_requests_per_1_minute=limit)
    with pytest.raises(InvalidParameter):
        Engine().create_session(user, SessionSpec(expires, limit))


@dataclass
class _Model:
    sid: str
    deadline: float
    status: str = "active"
    flipped_at: float | None = None  # when a sweep flipped it (expired, maybe not reported)
    reported: bool = False


class ExpiryIndexMachine(RuleBasedStateMachine):
    """The engine's index against a model: every session flips once, never before its time.

    A sweep flips every due session at once (off the active count), whatever its
    ``max_items``, and reports at most ``max_items`` of them, oldest flip first; each is
    reported once, with the lag to its flip.
    """

    @initialize()
    def start(self) -> None:
        self.clock = ManualClock(START)
        self.engine = Engine(self.clock, retention_s=1e9, max_sessions=10_000)
        self.sessions: list[_Model] = []

    def due(self) -> list[_Model]:
        now = self.clock.monotonic()
        return [s for s in self.sessions if s.status == "active" and s.deadline <= now]

    def unreported(self) -> list[_Model]:
        return [s for s in self.sessions if s.flipped_at is not None and not s.reported]

    @rule(lifetime=st.integers(min_value=1, max_value=4), copies=st.integers(1, 3))
    def create(self, lifetime: int, copies: int) -> None:
        for _ in range(copies):
            wall, mono = self.clock.time(), self.clock.monotonic()
            session = self.engine.create_session("u", expires_after_s=lifetime)
            deadline = mono + (math.floor(wall) + lifetime - wall)
            self.sessions.append(_Model(session.id, deadline))

    @rule(index=st.integers(min_value=0))
    def cancel(self, index: int) -> None:
        if not self.sessions:
            return
        model = self.sessions[index % len(self.sessions)]
        result = self.engine.cancel(model.sid)
        if model.status == "active" and self.clock.monotonic() < model.deadline:
            model.status = "cancelled"
        assert result.status.value == (
            "expired"
            if model.status == "active" and self.clock.monotonic() >= model.deadline
            else model.status
        )

    @rule(index=st.integers(min_value=0))
    def get(self, index: int) -> None:
        """The status read equals the one a sweep would have set (derived, not stored)."""
        if not self.sessions:
            return
        model = self.sessions[index % len(self.sessions)]
        expected = model.status
        if expected == "active" and self.clock.monotonic() >= model.deadline:
            expected = "expired"
        assert self.engine.get(model.sid).status.value == expected

    @rule(quarters=st.integers(min_value=1, max_value=12))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters / 4)

    @rule(quarters=st.integers(min_value=-8, max_value=8))
    def step_wall(self, quarters: int) -> None:
        self.clock.step_wall(quarters / 4)

    @rule(max_items=st.one_of(st.none(), st.integers(min_value=1, max_value=5)))
    def sweep(self, max_items: int | None) -> None:
        now = self.clock.monotonic()
        for model in self.due():
            model.status = "expired"
            model.flipped_at = now
        waiting = {s.sid: s for s in self.unreported()}
        flipped = self.engine.sweep(max_items)
        expected = len(waiting) if max_items is None else min(len(waiting), max_items)
        assert len(flipped) == expected
        for item in flipped:
            model = waiting.pop(item.session.id)  # flipped, and not reported before
            assert model.flipped_at is not None
            assert item.lag_s == model.flipped_at - model.deadline
            assert item.session.status is SessionStatus.EXPIRED
            model.reported = True

    @invariant()
    def counts_and_next_deadline_agree(self) -> None:
        if not hasattr(self, "engine"):
            return
        active = [s for s in self.sessions if s.status == "active"]
        stats = self.engine.statistics()
        assert stats.active == len(active)
        assert stats.expired == sum(
            s.status == "expired" and s.flipped_at is not None for s in self.sessions
        )
        expected = min((s.deadline for s in active), default=None)
        got = self.engine.next_deadline()  # a purge (retention 1e9 s) never comes first
        now = self.clock.monotonic()
        if self.unreported():  # the sweeper must come back to report them
            assert got is not None
            assert got <= now
        elif expected is None:
            assert got is None or got >= 1e9
        elif expected > now:
            # The earliest deadline (the manual clock's deadlines of one second are equal,
            # or a wall step of at least 0.25 s apart).
            assert got == expected
        else:  # something is due: the sweeper must be told so
            assert got is not None
            assert got <= now


def test_the_expiry_index_against_a_model() -> None:
    """Creates, cancels, advances, wall steps and sweeps of any size, against the model."""
    run_state_machine_as_test(
        ExpiryIndexMachine,
        settings=settings(
            max_examples=150,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_a_bucket_lets_go_of_the_sessions_it_handed_out(clock: ManualClock) -> None:
    """A swept batch is dropped from its bucket at once, not when the whole second is done."""
    engine = Engine(clock)
    for _ in range(7):
        engine.create_session("u", expires_after_s=5)
    [bucket] = engine._buckets.values()
    clock.advance(5)
    engine.sweep(3)
    assert bucket.records[:3] == [None, None, None]
    assert None not in bucket.records[3:]


def _due_clump(
    clock: ManualClock, sessions: int, **engine_options: Any
) -> tuple[Engine, list[str]]:
    """An engine with ``sessions`` sessions of one second, all due 0.25 s ago."""
    engine = Engine(clock, **engine_options)
    secrets = []
    for n in range(sessions):
        made = engine.create_session(f"u{n}", expires_after_s=5)
        assert made.client_secret is not None
        secrets.append(made.client_secret)
    clock.advance(5.25)
    return engine, secrets


def test_one_sweep_step_flips_a_whole_second(clock: ManualClock) -> None:
    """``statistics().active`` drops by the whole clump in one call, whatever ``max_items``."""
    engine, _ = _due_clump(clock, 1000)
    flipped = engine.flip_due(10)
    assert len(flipped) == 10
    assert engine.statistics() == EngineStatistics(active=0, expired=1000, cancelled=0)
    assert flipped.lag_bounds() == (0.25, 0.25)


def test_flipped_sessions_are_reported_later_with_the_lag_to_their_flip(
    clock: ManualClock,
) -> None:
    """Every flipped session is reported once, in creation order, lag measured to the flip."""
    engine, secrets = _due_clump(clock, 25)
    assert len(engine.sweep(10)) == 10
    clock.advance(1.0)  # reported a second after the flip: the lag is still the flip's
    rest = engine.sweep(10) + engine.sweep()
    assert [e.session.id for e in rest] == [session_id_for(s) for s in secrets[10:]]
    assert {e.lag_s for e in rest} == {0.25}
    assert engine.sweep() == []


def test_a_flipped_session_reads_expired_before_it_is_reported(clock: ManualClock) -> None:
    """Status derived from the deadline equals what a report sets, for every reader."""
    engine, secrets = _due_clump(clock, 3)
    engine.flip_due(1)
    for secret in secrets:  # one reported, two waiting to be
        sid = session_id_for(secret)
        assert engine.get(sid).status is SessionStatus.EXPIRED
        lookup = engine.lookup(secret)
        assert lookup is not None
        assert lookup.status is SessionStatus.EXPIRED
        assert engine.admit(secret).reason is Reason.EXPIRED
        assert engine.reserve_upload(sid, 1).reason is UploadReason.EXPIRED
        assert engine.cancel_reporting(sid) == (engine.get(sid), False)
        assert engine.get(sid).status is SessionStatus.EXPIRED
    assert engine.statistics() == EngineStatistics(active=0, expired=3, cancelled=0)


def test_a_report_frees_windows_and_skips_cancelled_sessions(clock: ManualClock) -> None:
    """The window goes when the session is reported; a cancelled one is never reported."""
    engine = Engine(clock, retention_s=10)
    made = [engine.create_session(f"u{n}", expires_after_s=5) for n in range(4)]
    for session in made:
        assert session.client_secret is not None
        engine.admit(session.client_secret)
    engine.cancel(made[1].id)
    clock.advance(5)
    first = engine.flip_due(2)
    assert [e.session.id for e in first.expired()] == [made[0].id, made[2].id]
    assert engine._by_id[made[0].id].times is None
    assert engine._by_id[made[3].id].times is not None  # flipped, not reported yet
    assert [e.session.id for e in engine.sweep()] == [made[3].id]
    assert all(engine._by_id[s.id].times is None for s in made)
    assert engine.statistics() == EngineStatistics(active=0, expired=3, cancelled=1)


def test_reported_sessions_are_purged_after_retention(clock: ManualClock) -> None:
    """Retention runs from the report; then the session is gone."""
    engine, secrets = _due_clump(clock, 5, retention_s=10)
    engine.sweep()
    clock.advance(9.75)
    engine.sweep()
    assert engine.statistics().expired == 5
    clock.advance(0.25)
    engine.sweep()
    assert engine.statistics() == EngineStatistics(active=0, expired=0, cancelled=0)
    with pytest.raises(SessionNotFound):
        engine.get(session_id_for(secrets[0]))


def test_a_second_due_within_a_millisecond_is_due_at_its_latest(clock: ManualClock) -> None:
    """Deadlines of one second within 1 ms: the sweeper is sent to the latest, to flip it whole;
    a sweep before that still flips the due ones, each at its own deadline."""
    engine = Engine(clock)
    early = engine.create_session("early", expires_after_s=10)  # deadline 10
    clock.step_wall(-0.0005)
    clock.advance(0.0005)
    late = engine.create_session("late", expires_after_s=10)  # deadline 10.0005
    assert early.expires_at == late.expires_at
    assert engine.next_deadline() == 10.0005
    clock.advance(9.9995)  # monotonic 10.0
    assert [e.session.id for e in engine.sweep()] == [early.id]
    assert engine.statistics().active == 1
    assert engine.next_deadline() == 10.0005


def test_a_purge_is_bounded_by_max_items_like_a_report(clock: ManualClock) -> None:
    """Sessions whose retention ends together are forgotten ``max_items`` per call; the
    sweeper is told to come straight back until they are all gone."""
    engine, _ = _due_clump(clock, 5, retention_s=10)
    engine.sweep()
    clock.advance(10)
    engine.sweep(2)
    assert engine.statistics().expired == 3
    deadline = engine.next_deadline()
    assert deadline is not None
    assert deadline <= clock.monotonic()
    engine.sweep(2)
    engine.sweep(2)
    assert engine.statistics().expired == 0
    assert engine.next_deadline() is None
