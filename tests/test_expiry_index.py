"""The engine's expiry index (sessions bucketed by second) and its lazy sweep reports.

Manual clocks only. A hypothesis state machine drives creates, cancels, clock advances, wall
steps and sweeps of any size against a model that knows each session's monotonic deadline,
so a clump split across sweeps, a bucket whose sessions were created on both sides of a wall
step, and cancels of a bucket's earliest session are all exercised.
"""

from __future__ import annotations

import math
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

from ratekeeper import CapacityExceeded, Engine, ManualClock, SessionStatus
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


def test_one_int_object_per_expiry_second(clock: ManualClock) -> None:
    """Sessions due in the same second share their ``expires_at`` int (memory)."""
    engine = Engine(clock)
    a = engine.create_session("a", expires_after_s=600)
    b = engine.create_session("b", expires_after_s=600)
    assert engine._by_id[a.id].expires_at is engine._by_id[b.id].expires_at


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


class ExpiryIndexMachine(RuleBasedStateMachine):
    """The engine's index against a model: every session flips once, never before its time."""

    @initialize()
    def start(self) -> None:
        self.clock = ManualClock(START)
        self.engine = Engine(self.clock, retention_s=1e9, max_sessions=10_000)
        self.sessions: list[_Model] = []

    def due(self) -> list[_Model]:
        now = self.clock.monotonic()
        return [s for s in self.sessions if s.status == "active" and s.deadline <= now]

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

    @rule(quarters=st.integers(min_value=1, max_value=12))
    def advance(self, quarters: int) -> None:
        self.clock.advance(quarters / 4)

    @rule(quarters=st.integers(min_value=-8, max_value=8))
    def step_wall(self, quarters: int) -> None:
        self.clock.step_wall(quarters / 4)

    @rule(max_items=st.one_of(st.none(), st.integers(min_value=1, max_value=5)))
    def sweep(self, max_items: int | None) -> None:
        due = {s.sid: s for s in self.due()}
        flipped = self.engine.sweep(max_items)
        expected = len(due) if max_items is None else min(len(due), max_items)
        assert len(flipped) == expected
        now = self.clock.monotonic()
        for item in flipped:
            model = due.pop(item.session.id)  # due, and not flipped before
            assert item.lag_s == now - model.deadline
            assert item.session.status is SessionStatus.EXPIRED
            model.status = "expired"

    @invariant()
    def counts_and_next_deadline_agree(self) -> None:
        if not hasattr(self, "engine"):
            return
        active = [s for s in self.sessions if s.status == "active"]
        assert self.engine.statistics().active == len(active)
        expected = min((s.deadline for s in active), default=None)
        got = self.engine.next_deadline()  # a purge (retention 1e9 s) never comes first
        now = self.clock.monotonic()
        if expected is None:
            assert got is None or got >= 1e9
        elif expected > now:
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
