"""The gate's ways in (admit, enter, guard, check), sessions through the gate, failure modes."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from anyio import WouldBlock
from prometheus_client import CollectorRegistry

from ratekeeper import (
    BackendError,
    Decision,
    Engine,
    Gate,
    ManualClock,
    MemoryBackend,
    RateLimited,
    Reason,
    SessionCancelled,
    SessionExpired,
    SessionNotFound,
    UnknownSession,
    Verdict,
)
from ratekeeper._gate import FAIL_OPEN_DECISION

pytestmark = pytest.mark.anyio


def count(gate: Gate, name: str, **labels: str) -> float:
    value = gate.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_admit_returns_the_engine_decision_and_counts_it(gate: Gate) -> None:
    session = await gate.create_session("u1", max_requests_per_1_minute=2)
    assert session.client_secret is not None
    first = await gate.admit(session.client_secret)
    assert (first.allowed, first.remaining, first.session_id) == (True, 1, session.id)
    await gate.admit(session.client_secret)
    third = await gate.admit(session.client_secret)
    assert third.reason is Reason.RATE_LIMITED
    assert count(gate, "ratekeeper_decisions_total", outcome="allowed") == 2
    assert count(gate, "ratekeeper_decisions_total", outcome="rate_limited") == 1


async def test_an_engine_is_wrapped_in_a_memory_backend(engine: Engine) -> None:
    gate = Gate(engine)
    assert isinstance(gate.backend, MemoryBackend)
    assert gate.backend.engine is engine


async def test_each_gate_gets_a_private_registry_unless_given_one(engine: Engine) -> None:
    registry = CollectorRegistry()
    assert Gate(engine).registry is not Gate(engine).registry
    assert Gate(engine, registry=registry).registry is registry


async def test_enter_runs_the_block_when_admitted(gate: Gate) -> None:
    session = await gate.create_session("u1")
    async with gate.enter(session.client_secret) as decision:
        assert decision.allowed
        assert decision.session_id == session.id


async def test_enter_raises_rate_limited_with_retry_after(gate: Gate, clock: ManualClock) -> None:
    session = await gate.create_session("u1", max_requests_per_1_minute=1)
    async with gate.enter(session.client_secret):
        pass
    clock.advance(15)
    with pytest.raises(RateLimited) as info:
        async with gate.enter(session.client_secret):
            pytest.fail("a refused request must not run the block")
    assert info.value.retry_after == pytest.approx(45.0)
    assert info.value.decision is not None
    assert info.value.decision.reason is Reason.RATE_LIMITED


async def test_enter_raises_session_expired_after_expires_at(
    gate: Gate, clock: ManualClock
) -> None:
    session = await gate.create_session("u1", expires_after_s=5)
    clock.advance(5)
    with pytest.raises(SessionExpired, match="expired"):
        async with gate.enter(session.client_secret):
            pytest.fail("unreachable")


async def test_enter_raises_session_cancelled_after_cancel(gate: Gate) -> None:
    session = await gate.create_session("u1")
    await gate.cancel(session.id)
    with pytest.raises(SessionCancelled):
        async with gate.enter(session.client_secret):
            pytest.fail("unreachable")


@pytest.mark.parametrize("secret", ["ek_not_a_real_secret", "", None])
async def test_enter_raises_unknown_session_for_unknown_or_missing_secret(
    gate: Gate, secret: str | None
) -> None:
    with pytest.raises(UnknownSession) as info:
        async with gate.enter(secret):
            pytest.fail("unreachable")
    if secret:
        assert secret not in str(info.value)


async def test_guard_finds_the_secret_by_keyword_or_position(gate: Gate) -> None:
    session = await gate.create_session("u1", max_requests_per_1_minute=2)

    @gate.guard(secret_arg="client_secret")
    async def handler(payload: str, client_secret: str) -> str:
        return payload.upper()

    assert await handler("a", client_secret=session.client_secret) == "A"  # type: ignore[arg-type]
    assert await handler("b", session.client_secret) == "B"  # type: ignore[arg-type]
    with pytest.raises(RateLimited):
        await handler("c", session.client_secret)  # type: ignore[arg-type]
    assert handler.__name__ == "handler"


async def test_guard_accepts_a_callable_extractor(gate: Gate) -> None:
    session = await gate.create_session("u1")
    calls: list[dict[str, str]] = []

    @gate.guard(lambda request: request["authorization"].removeprefix("Bearer "))
    async def handler(request: dict[str, str]) -> int:
        calls.append(request)
        return 7

    assert await handler({"authorization": f"Bearer {session.client_secret}"}) == 7
    with pytest.raises(UnknownSession):
        await handler({"authorization": "Bearer ek_wrong"})
    assert len(calls) == 1


def test_guard_without_parentheses_fails_at_decoration(gate: Gate) -> None:
    """``@gate.guard`` (no call) would hand the handler over as the secret extractor."""

    async def handler(client_secret: str) -> str:
        return client_secret

    with pytest.raises(TypeError, match=r"@gate.guard\(\)"):
        gate.guard(handler)  # type: ignore[arg-type]  # the mistake under test


def test_guard_refuses_a_handler_without_the_named_parameter(gate: Gate) -> None:
    async def handler(payload: str) -> str:
        return payload

    with pytest.raises(TypeError, match="client_secret"):
        gate.guard()(handler)


async def test_check_gives_verdicts_for_every_outcome(gate: Gate, clock: ManualClock) -> None:
    limited = await gate.create_session("u1", max_requests_per_1_minute=1)
    cancelled = await gate.create_session("u2")
    expiring = await gate.create_session("u3", expires_after_s=1)
    await gate.cancel(cancelled.id)
    assert (await gate.check(limited.client_secret)).status_code == 200
    assert (await gate.check(limited.client_secret)).status_code == 429
    assert (await gate.check(None)).status_code == 401
    clock.advance(1)
    codes = {}
    for name, secret in [
        ("cancelled", cancelled.client_secret),
        ("expired", expiring.client_secret),
        ("unknown", "ek_unknown"),
        ("missing", ""),
    ]:
        verdict = await gate.check(secret)
        assert verdict.status_code == 401
        assert verdict.error is not None
        codes[name] = verdict.error["error"]["code"]
    assert codes == {
        "cancelled": "session_cancelled",
        "expired": "session_expired",
        "unknown": "invalid_client_secret",
        "missing": "missing_client_secret",
    }
    assert count(gate, "ratekeeper_decisions_total", outcome="missing_secret") == 2


async def test_cancel_counts_a_session_once_however_often_it_is_cancelled(gate: Gate) -> None:
    session = await gate.create_session("u1")
    for _ in range(3):
        assert (await gate.cancel(session.id)).status == "cancelled"
    assert count(gate, "ratekeeper_sessions_cancelled_total") == 1
    assert (await gate.get(session.id)).status == "cancelled"


async def test_cancel_of_an_expired_session_is_not_counted(gate: Gate, clock: ManualClock) -> None:
    session = await gate.create_session("u1", expires_after_s=1)
    clock.advance(2)
    assert (await gate.cancel(session.id)).status == "expired"
    assert count(gate, "ratekeeper_sessions_cancelled_total") == 0


async def test_unknown_session_ids_raise_session_not_found(gate: Gate) -> None:
    with pytest.raises(SessionNotFound):
        await gate.cancel("cksess_missing")
    with pytest.raises(SessionNotFound):
        await gate.get("cksess_missing")


async def test_lookup_reads_a_session_without_counting_a_request(gate: Gate) -> None:
    session = await gate.create_session("u1", max_requests_per_1_minute=1)
    assert session.client_secret is not None
    found = await gate.lookup(session.client_secret)
    assert found is not None
    assert found.id == session.id
    assert await gate.lookup("ek_unknown") is None
    assert (await gate.admit(session.client_secret)).allowed


# -- backend failures ----------------------------------------------------------------------


async def test_failing_closed_check_answers_503_and_counts_it(
    failing_backend: Any,
) -> None:
    gate = Gate(failing_backend)
    verdict = await gate.check("ek_anything")
    assert (verdict.allowed, verdict.status_code) == (False, 503)
    assert verdict.error is not None
    assert verdict.error["error"]["type"] == "server_error"
    assert verdict.error["error"]["code"] == "backend_unavailable"
    assert count(gate, "ratekeeper_decisions_total", outcome="fail_closed") == 1
    assert count(gate, "ratekeeper_backend_errors_total", operation="admit") == 1


async def test_failing_closed_enter_and_admit_raise_backend_error(
    failing_backend: Any,
) -> None:
    gate = Gate(failing_backend)
    with pytest.raises(BackendError):
        await gate.admit("ek_anything")
    with pytest.raises(BackendError):
        async with gate.enter("ek_anything"):
            pytest.fail("unreachable")
    assert count(gate, "ratekeeper_decisions_total", outcome="fail_closed") == 2


async def test_failing_open_admits_with_a_synthetic_decision_and_counts_it(
    failing_backend: Any,
) -> None:
    gate = Gate(failing_backend, fail_open=True)
    assert await gate.admit("ek_anything") is FAIL_OPEN_DECISION
    verdict = await gate.check("ek_anything")
    assert (verdict.allowed, verdict.status_code, verdict.headers) == (True, 200, ())
    async with gate.enter("ek_anything") as decision:
        assert decision.allowed
    assert count(gate, "ratekeeper_decisions_total", outcome="fail_open") == 3
    assert count(gate, "ratekeeper_decisions_total", outcome="allowed") == 0
    assert count(gate, "ratekeeper_backend_errors_total", operation="admit") == 3


async def test_failing_open_still_refuses_a_missing_secret(
    failing_backend: Any,
) -> None:
    gate = Gate(failing_backend, fail_open=True)
    assert (await gate.check(None)).status_code == 401
    assert failing_backend.calls == 0


async def test_the_gate_recovers_when_the_backend_does(failing_backend: Any) -> None:
    gate = Gate(failing_backend)
    failing_backend.failing = False
    session = await gate.create_session("u1")
    failing_backend.failing = True
    assert (await gate.check(session.client_secret)).status_code == 503
    failing_backend.failing = False
    assert (await gate.check(session.client_secret)).status_code == 200


async def test_session_operations_count_backend_errors_and_raise(
    failing_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate(failing_backend, fail_open=True)
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendError):
        await gate.create_session("u1")
    with pytest.raises(BackendError):
        await gate.cancel("cksess_x")
    with pytest.raises(BackendError):
        await gate.get("cksess_x")
    with pytest.raises(BackendError):
        await gate.lookup("ek_x")
    for operation in ("create_session", "cancel", "get", "lookup"):
        assert count(gate, "ratekeeper_backend_errors_total", operation=operation) == 1
    assert count(gate, "ratekeeper_sessions_created_total") == 0


def test_gate_rejects_nonsense_settings(engine: Engine) -> None:
    with pytest.raises(ValueError, match="sweep_batch"):
        Gate(engine, sweep_batch=0)
    with pytest.raises(ValueError, match="poll_interval_s"):
        Gate(engine, poll_interval_s=0)


# -- check without awaiting ----------------------------------------------------------------


def _answer(verdict: Verdict) -> tuple[Any, ...]:
    """A verdict as a client sees it, and its decision without the (random) session id."""
    decision = verdict.decision
    made = None if decision is None else decision._replace(session_id=None)
    return (verdict.allowed, verdict.status_code, verdict.headers, verdict.error, made)


async def test_check_nowait_answers_and_counts_as_check_does(clock: ManualClock) -> None:
    awaited, direct = Gate(Engine(clock)), Gate(Engine(clock))
    answers: dict[str, list[tuple[Any, ...]]] = {"check": [], "check_nowait": []}
    for gate, name in ((awaited, "check"), (direct, "check_nowait")):
        limited = await gate.create_session("u1", max_requests_per_1_minute=2)
        cancelled = await gate.create_session("u2")
        await gate.cancel(cancelled.id)
        secrets = [limited.client_secret] * 3 + [cancelled.client_secret, "ek_unknown", "", None]
        for secret in secrets:
            if name == "check":
                verdict = await gate.check(secret)
            else:
                verdict = gate.check_nowait(secret)
            answers[name].append(_answer(verdict))
    assert answers["check"] == answers["check_nowait"]
    assert [verdict[1] for verdict in answers["check"]] == [200, 200, 429, 401, 401, 401, 401]
    for outcome in ("allowed", "rate_limited", "cancelled", "unknown_session", "missing_secret"):
        expected = count(awaited, "ratekeeper_decisions_total", outcome=outcome)
        assert count(direct, "ratekeeper_decisions_total", outcome=outcome) == expected > 0


async def test_check_nowait_would_block_when_the_backend_must_be_awaited(
    failing_backend: Any,
) -> None:
    gate = Gate(failing_backend)
    with pytest.raises(WouldBlock):
        gate.check_nowait("ek_anything")
    assert failing_backend.calls == 0
    assert count(gate, "ratekeeper_decisions_total", outcome="fail_closed") == 0


async def test_an_overridden_admit_or_check_is_never_bypassed(engine: Engine) -> None:
    """A MemoryBackend whose admit is overridden, or a Gate whose check is, is awaited."""
    asked: list[str] = []

    class Watched(MemoryBackend):
        async def admit(self, client_secret: str) -> Decision:
            asked.append("backend")
            return await super().admit(client_secret)

    class Noting(Gate):
        async def check(self, client_secret: str | None) -> Verdict:
            asked.append("gate")
            return await super().check(client_secret)

    watched = Gate(Watched(engine))
    noting = Noting(engine)
    session = await watched.create_session("u1")
    assert session.client_secret is not None
    for gate in (watched, noting):
        with pytest.raises(WouldBlock):
            gate.check_nowait(session.client_secret)
    assert (await watched.check(session.client_secret)).allowed
    assert (await noting.check(session.client_secret)).allowed
    assert asked == ["backend", "gate"]
