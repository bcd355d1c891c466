"""Engine behaviour beyond the shared contract: retention, capacity, clocks, memory, secrets."""

from __future__ import annotations

import dataclasses

import pytest

import ratekeeper
from ratekeeper import (
    CapacityExceeded,
    Engine,
    ManualClock,
    Reason,
    SessionNotFound,
    SessionStatus,
    SystemClock,
)
from ratekeeper._secrets import session_id_for


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine(clock, retention_s=300)


def test_ended_sessions_answer_until_retention_then_vanish(
    engine: Engine, clock: ManualClock
) -> None:
    """A late request learns ``expired`` during retention, ``unknown_session`` after it."""
    session = engine.create_session("u", expires_after_s=10)
    assert session.client_secret is not None
    clock.advance(10)
    assert [e.session.id for e in engine.sweep()] == [session.id]
    clock.advance(299)
    engine.sweep()
    assert engine.admit(session.client_secret).reason is Reason.EXPIRED
    clock.advance(1)
    engine.sweep()
    assert engine.admit(session.client_secret).reason is Reason.UNKNOWN_SESSION
    with pytest.raises(SessionNotFound):
        engine.get(session.id)
    assert engine.statistics() == ratekeeper.EngineStatistics(0, 0, 0)


def test_cancelled_sessions_are_purged_after_retention(engine: Engine, clock: ManualClock) -> None:
    """Retention counts from the cancel."""
    session = engine.create_session("u")
    engine.cancel(session.id)
    assert engine.next_deadline() == 300.0  # the purge is the next thing to do
    clock.advance(300)
    engine.sweep()
    with pytest.raises(SessionNotFound):
        engine.cancel(session.id)


def test_cancel_returns_the_session_and_cancel_reporting_says_which_call_changed_it(
    engine: Engine,
) -> None:
    """``cancel`` returns a Session; ``cancel_reporting`` the same, and ``changed`` once."""
    session = engine.create_session("u")
    first = engine.cancel_reporting(session.id)
    assert (first.session.status, first.changed) == (SessionStatus.CANCELLED, True)
    assert engine.cancel_reporting(session.id) == (first.session, False)
    assert engine.cancel(session.id) == first.session


def test_capacity_cap_refuses_creation_clearly(clock: ManualClock) -> None:
    """The cap on active sessions raises CapacityExceeded and creates nothing."""
    engine = Engine(clock, max_sessions=2)
    engine.create_session("u")
    engine.create_session("u")
    with pytest.raises(CapacityExceeded, match="2 sessions are active"):
        engine.create_session("u")
    assert engine.statistics().active == 2


def test_capacity_frees_when_sessions_are_due(clock: ManualClock) -> None:
    """Due sessions do not hold capacity, even if no sweep has run yet."""
    engine = Engine(clock, max_sessions=1)
    engine.create_session("u", expires_after_s=5)
    clock.advance(5)
    assert engine.create_session("u").status is SessionStatus.ACTIVE


def test_capacity_check_leaves_due_sessions_for_the_sweep(clock: ManualClock) -> None:
    """A create at the cap does not flip due sessions itself: the sweep still reports them."""
    engine = Engine(clock, max_sessions=1)
    due = engine.create_session("u", expires_after_s=5)
    clock.advance(5)
    engine.create_session("u")
    assert [e.session.id for e in engine.sweep()] == [due.id]


def test_ended_sessions_retained_are_bounded_under_churn(clock: ManualClock) -> None:
    """No more ended sessions are kept than ``max_sessions``: memory stays bounded."""
    engine = Engine(clock, max_sessions=10, retention_s=3600)
    for _ in range(100):
        engine.cancel(engine.create_session("u").id)
    stats = engine.statistics()
    assert stats.cancelled == 10
    assert len(engine._by_id) == 10


def test_wall_clock_step_does_not_move_enforcement(engine: Engine, clock: ManualClock) -> None:
    """A wall-clock step (NTP, operator) neither expires a session early nor late."""
    session = engine.create_session("u", expires_after_s=60)
    assert session.client_secret is not None
    clock.step_wall(+3600)
    assert engine.admit(session.client_secret).allowed
    clock.step_wall(-7200)
    clock.advance(60)
    assert engine.admit(session.client_secret).reason is Reason.EXPIRED


def test_window_memory_follows_admissions(engine: Engine, clock: ManualClock) -> None:
    """A huge limit allocates nothing up front; the window list stays near what it holds."""
    session = engine.create_session("u", max_requests_per_1_minute=10**9)
    assert session.client_secret is not None
    record = engine._by_id[session.id]
    assert record.times is None
    for _ in range(1_000):
        engine.admit(session.client_secret)
        clock.advance(0.5)  # 120 admissions per window
    assert record.times is not None
    assert len(record.times) - record.times.head == 120
    assert len(record.times) <= 2 * 120 + 16


def test_ended_sessions_free_their_window(engine: Engine, clock: ManualClock) -> None:
    """Cancel and expiry drop the admission times at once."""
    a = engine.create_session("u", expires_after_s=5)
    b = engine.create_session("u")
    assert a.client_secret is not None
    assert b.client_secret is not None
    engine.admit(a.client_secret)
    engine.admit(b.client_secret)
    engine.cancel(b.id)
    clock.advance(5)
    engine.sweep()
    assert engine._by_id[a.id].times is None
    assert engine._by_id[b.id].times is None


def test_only_a_hash_of_the_secret_is_kept(engine: Engine) -> None:
    """The session id is the one hash of the secret the engine keeps; the secret is nowhere."""
    session = engine.create_session("u")
    assert session.client_secret is not None
    assert session.id == session_id_for(session.client_secret)
    assert list(engine._by_id) == [session.id]
    record = engine._by_id[session.id]
    state = [getattr(record, name) for name in record.__slots__]
    assert session.client_secret not in state
    assert session.client_secret not in repr(engine)
    assert session.client_secret not in repr(session)


def test_secrets_are_unique_and_long(engine: Engine) -> None:
    """Secrets carry at least 128 bits: 1000 of them never collide."""
    secrets = {engine.create_session("u").client_secret for _ in range(1000)}
    assert len(secrets) == 1000
    assert all(s is not None and len(s) >= 3 + 43 for s in secrets)


def test_decision_and_session_are_immutable(engine: Engine) -> None:
    """Values handed out cannot be changed by the caller."""
    session = engine.create_session("u")
    assert session.client_secret is not None
    decision = engine.admit(session.client_secret)
    with pytest.raises(AttributeError):
        decision.allowed = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        session.user = "other"  # type: ignore[misc]


def test_invalid_engine_settings() -> None:
    """Nonsense settings fail at construction."""
    with pytest.raises(ValueError, match="retention_s"):
        Engine(retention_s=-1)
    with pytest.raises(ValueError, match="max_sessions"):
        Engine(max_sessions=0)


class TestClocks:
    """The clock seam."""

    def test_manual_clock_moves_both_readings(self) -> None:
        """``advance`` moves wall and monotonic time together."""
        clock = ManualClock(100.0)
        clock.advance(2.5)
        assert (clock.time(), clock.monotonic()) == (102.5, 2.5)

    def test_manual_clock_refuses_to_go_back(self) -> None:
        """A negative advance is a bug in the caller."""
        with pytest.raises(ValueError, match="backwards"):
            ManualClock().advance(-1)

    def test_step_wall_moves_only_wall_time(self) -> None:
        """``step_wall`` simulates an NTP step."""
        clock = ManualClock(100.0)
        clock.step_wall(-50)
        assert (clock.time(), clock.monotonic()) == (50.0, 0.0)

    def test_system_clock_reads_real_time(self) -> None:
        """The default clock's readings move forward."""
        clock = SystemClock()
        first = clock.monotonic()
        assert clock.monotonic() >= first
        assert clock.time() > 1_600_000_000
        assert isinstance(Engine().clock, SystemClock)


def test_public_names() -> None:
    """``__all__`` is a tuple of distinct names that exist."""
    assert isinstance(ratekeeper.__all__, tuple)
    assert len(set(ratekeeper.__all__)) == len(ratekeeper.__all__)
    for name in ratekeeper.__all__:
        assert hasattr(ratekeeper, name), name


def test_a_snapshot_is_a_frozen_session_whichever_way_it_is_built(engine: Engine) -> None:
    """The fast snapshot (a draft whose class becomes Session) equals the one built through
    Session's slot descriptors, the fallback where ``__class__`` assignment is refused."""
    from ratekeeper._engine import _session, _session_by_slots

    made = engine.create_session("u", expires_after_s=30)
    record = engine._by_id[made.id]
    fast = _session(record, SessionStatus.ACTIVE, made.client_secret)
    slow = _session_by_slots(record, SessionStatus.ACTIVE, made.client_secret, made.expires_at)
    assert type(fast) is type(slow) is ratekeeper.Session
    assert fast == slow == made
    assert hash(fast) == hash(slow)
    assert repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.user = "someone else"  # type: ignore[misc]  # frozen: the point of the test
