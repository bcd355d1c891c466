"""Every backend against a brute-force model, driven by hypothesis.

The model keeps, per session, the plain list of admission times and recomputes every decision
from scratch. Time moves in quarter seconds, which floats and Redis' microseconds both hold
exactly, so boundaries (exactly 60 s later, exactly at ``expires_at``) are hit often and
decisions, ``remaining`` and ``retry_after`` must agree to the bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ratekeeper import Reason, SessionStatus

from .conftest import START, Harness, HarnessFactory

WINDOW = 60.0


@dataclass
class ModelSession:
    """What the model knows about one session."""

    id: str
    secret: str
    limit: int
    expires_at: int
    status: str = "active"
    admissions: list[float] = field(default_factory=list)


class Model:
    """A brute-force reference: lists and arithmetic, no cleverness."""

    def __init__(self) -> None:
        self.now = START
        self.sessions: dict[str, ModelSession] = {}

    def status(self, s: ModelSession) -> str:
        if s.status == "active" and self.now >= s.expires_at:
            return "expired"
        return s.status

    def admit(self, s: ModelSession | None) -> tuple[bool, str, int, int, float, float]:
        if s is None:
            return (False, "unknown_session", 0, 0, math.inf, 0.0)
        status = self.status(s)
        if status != "active":
            return (False, status, s.limit, 0, math.inf, 0.0)
        window = [t for t in s.admissions if t + WINDOW > self.now]
        if len(window) >= s.limit:
            return (
                False,
                "rate_limited",
                s.limit,
                0,
                min(window) + WINDOW - self.now,
                max(window) + WINDOW - self.now,
            )
        s.admissions.append(self.now)
        return (True, "allowed", s.limit, s.limit - len(window) - 1, 0.0, WINDOW)


limits = st.sampled_from([1, 2, 3, 5, 10**9])
lifetimes = st.sampled_from([1, 2, 30, 61, 120, 600])
# Boundary-sized steps often (60 s exactly after an admission), any quarter second sometimes.
steps = st.one_of(
    st.sampled_from([0.25, 1.0, 15.0, 30.0, 59.75, 60.0]),
    st.integers(min_value=0, max_value=4 * 90).map(lambda quarters: quarters / 4),
)


class BackendMachine(RuleBasedStateMachine):
    """Random creates, admits, cancels, sweeps and clock moves; decisions must match."""

    sessions = Bundle("sessions")

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.model = Model()

    @initialize()
    def align(self) -> None:
        """Start the model where the harness clock is."""
        self.model.now = self.harness.clock.time()

    @rule(target=sessions, limit=limits, lifetime=lifetimes)
    def create(self, limit: int, lifetime: int) -> ModelSession:
        session = self.harness.create(
            "u_model", max_requests_per_1_minute=limit, expires_after_s=lifetime
        )
        assert session.expires_at == math.floor(self.model.now) + lifetime
        model = ModelSession(session.id, session.client_secret, limit, session.expires_at)
        self.model.sessions[session.id] = model
        return model

    @rule(session=sessions, repeat=st.integers(min_value=1, max_value=4))
    def admit(self, session: ModelSession, repeat: int) -> None:
        for _ in range(repeat):
            decision = self.harness.admit(session.secret)
            got = (
                decision.allowed,
                decision.reason.value,
                decision.limit,
                decision.remaining,
                decision.retry_after,
                decision.reset_after,
            )
            assert got == self.model.admit(session)

    @rule()
    def admit_unknown(self) -> None:
        decision = self.harness.admit("ek_unknown-secret")
        assert decision.reason is Reason.UNKNOWN_SESSION
        assert tuple(decision)[:6] == self.model.admit(None)

    @rule(session=consumes(sessions))
    def cancel(self, session: ModelSession) -> None:
        result, changed = self.harness.call(self.harness.backend.cancel, session.id)
        was_active = self.model.status(session) == "active"
        if was_active:
            session.status = "cancelled"
        assert result.status.value == self.model.status(session)
        assert changed == was_active

    @rule(seconds=steps)
    def advance(self, seconds: float) -> None:
        self.harness.advance(seconds)
        self.model.now += seconds

    @rule(session=sessions, edge=st.sampled_from(["oldest", "newest", "expiry"]))
    def jump_to_boundary(self, session: ModelSession, edge: str) -> None:
        """Move the clock to exactly where a decision changes for ``session``, and admit there."""
        window = [t for t in session.admissions if t + WINDOW > self.model.now]
        targets = {
            "oldest": min(window) + WINDOW if window else None,
            "newest": max(window) + WINDOW if window else None,
            "expiry": float(session.expires_at),
        }
        target = targets[edge]
        if target is not None and target > self.model.now:
            self.advance(target - self.model.now)
        # Decide right on the boundary: that is where an off-by-one would show.
        self.admit(session, 1)

    @rule()
    def sweep(self) -> None:
        flipped = self.harness.call(self.harness.backend.sweep, 10_000)
        for expired in flipped:
            model = self.model.sessions[expired.session.id]
            assert model.status == "active"
            assert self.model.now >= model.expires_at
            assert expired.lag_s == self.model.now - model.expires_at
            model.status = "expired"
        due = [
            s
            for s in self.model.sessions.values()
            if s.status == "active" and self.model.now >= s.expires_at
        ]
        assert due == [], "a sweep must flip every due session"

    @invariant()
    def statuses_agree(self) -> None:
        for model in self.model.sessions.values():
            session = self.harness.call(self.harness.backend.get, model.id)
            assert session.status == SessionStatus(self.model.status(model))


def test_backend_matches_the_model(make_harness: HarnessFactory) -> None:
    """Random operation sequences give exactly the model's decisions."""
    run_state_machine_as_test(
        # A factory, which hypothesis documents ("a class or a function") but annotates as a class.
        lambda: BackendMachine(make_harness()),  # type: ignore[arg-type]
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
