"""The expiry sweeper, on virtual time: trio's MockClock jumps whenever every task waits.

The engine reads the event loop's clock (LoopClock), so sessions expire on virtual time and
these tests take milliseconds however long the sessions live.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from ratekeeper import BackendError, Engine, Gate, LoopClock, ManualClock, MemoryBackend
from ratekeeper._types import Expired

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """Trio on a mock clock that jumps to the next deadline as soon as every task sleeps."""
    return ("trio", {"clock": MockClock(autojump_threshold=0)})


@pytest.fixture
def engine() -> Engine:
    return Engine(LoopClock(wall_start=1_700_000_000.25))


def count(gate: Gate, name: str, **labels: str) -> float:
    value = gate.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_session_is_flipped_at_its_deadline(engine: Engine) -> None:
    flips: list[tuple[float, Expired]] = []
    gate = Gate(engine, poll_interval_s=3600)
    gate.on_expire(lambda item: flips.append((anyio.current_time(), item)))
    async with gate:
        start = anyio.current_time()
        session = await gate.create_session("u1", expires_after_s=5)
        await anyio.sleep(10)
    [(at, item)] = flips
    # expires_at = floor(wall) + 5 and wall started at .25 past the second: 4.75 s to live.
    assert at - start == pytest.approx(4.75)
    assert item.session.id == session.id
    assert item.session.status == "expired"
    assert item.lag_s == pytest.approx(0.0)
    assert count(gate, "ratekeeper_sessions_expired_total") == 1
    assert count(gate, "ratekeeper_expiry_lag_seconds_bucket", le="0.0005") == 1


async def test_an_earlier_deadline_wakes_the_sleeping_sweeper(engine: Engine) -> None:
    flips: list[float] = []
    gate = Gate(engine, poll_interval_s=3600)
    gate.on_expire(lambda item: flips.append(anyio.current_time()))
    async with gate:
        start = anyio.current_time()
        await gate.create_session("late", expires_after_s=600)
        await anyio.sleep(1)  # the sweeper now sleeps until the 600 s deadline
        await gate.create_session("early", expires_after_s=3)
        await anyio.sleep(700)
    assert [round(t - start, 6) for t in flips] == [3.75, 599.75]


async def test_a_session_created_while_the_sweeper_reads_the_backend_still_wakes_it(
    engine: Engine,
) -> None:
    """A deadline made while the sweeper awaits the backend (a Redis round trip) is not lost."""

    class Slow(MemoryBackend):
        """Holds the first deadline reply in flight until told to deliver it (a test double)."""

        def __init__(self, engine: Engine) -> None:
            super().__init__(engine)
            self.read = anyio.Event()
            self.deliver = anyio.Event()

        async def time_to_next_deadline(self) -> float | None:
            remaining = await super().time_to_next_deadline()
            if not self.read.is_set():
                self.read.set()
                await self.deliver.wait()
            return remaining

    backend = Slow(engine)
    flips: list[float] = []
    gate = Gate(backend, poll_interval_s=3600)
    gate.on_expire(lambda item: flips.append(anyio.current_time()))
    async with gate:
        start = anyio.current_time()
        await backend.read.wait()  # the sweeper has read "no deadline" and awaits the reply
        await gate.create_session("u1", expires_after_s=3)
        backend.deliver.set()
        await anyio.sleep(10)
    assert [round(t - start, 6) for t in flips] == [2.75]


async def test_sessions_created_behind_the_gates_back_are_swept_within_the_poll_interval(
    engine: Engine,
) -> None:
    flips: list[tuple[float, float]] = []
    gate = Gate(engine, poll_interval_s=2)
    gate.on_expire(lambda item: flips.append((anyio.current_time(), item.lag_s)))
    async with gate:
        start = anyio.current_time()
        await anyio.sleep(0.5)  # the sweeper is asleep on an empty engine
        engine.create_session("elsewhere", expires_after_s=1)  # not through the gate
        await anyio.sleep(10)
    [(at, lag)] = flips
    # The deadline (0.5 + 0.75 s) is unknown to the sleeping sweeper; its 2 s poll finds it.
    assert at - start == pytest.approx(2.0)
    assert lag == pytest.approx(0.75)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_due_sessions_are_flipped_in_batches_that_yield_to_other_tasks() -> None:
    """On asyncio (FIFO scheduling) a task that only checkpoints runs between any two batches.

    Trio randomizes the order within a scheduling round, so this ordering check needs asyncio;
    a manual clock makes every session due at once without waiting.
    """
    clock = ManualClock()
    gate = Gate(Engine(clock), sweep_batch=100, poll_interval_s=3600)
    events: list[str] = []

    def callback(item: Expired) -> None:
        if events[-1] != "flip":
            events.append("flip")

    gate.on_expire(callback)
    for n in range(250):
        await gate.create_session(f"u{n}", expires_after_s=5)
    clock.advance(5)
    events.append("start")
    async with gate:
        for _ in range(1000):  # bounded: a few hundred turns are plenty
            events.append("tick")
            await anyio.lowlevel.checkpoint()
            if count(gate, "ratekeeper_sessions_expired_total") == 250:
                break
    flips = [i for i, e in enumerate(events) if e == "flip"]
    assert len(flips) == 3  # 100 + 100 + 50
    assert all(events[i + 1] == "tick" for i in flips[:-1])  # the loop ran between batches
    assert count(gate, "ratekeeper_sessions_expired_total") == 250
    assert count(gate, "ratekeeper_sweep_batch_size_count") == 3
    assert count(gate, "ratekeeper_sweep_batch_size_sum") == 250


async def test_the_sweeper_stops_cleanly_when_cancelled_and_can_restart(engine: Engine) -> None:
    gate = Gate(engine, poll_interval_s=3600)
    with anyio.move_on_after(1):
        await gate.run_sweeper()
    async with gate:
        session = await gate.create_session("u1", expires_after_s=2)
        await anyio.sleep(3)
    assert (await gate.get(session.id)).status == "expired"
    assert count(gate, "ratekeeper_sessions_expired_total") == 1


async def test_a_second_sweeper_on_one_gate_is_refused(engine: Engine) -> None:
    gate = Gate(engine)
    async with gate:
        with pytest.raises(RuntimeError, match="already running"):
            await gate.run_sweeper()


async def test_entering_a_gate_whose_sweeper_runs_raises_runtime_error_unwrapped(
    engine: Engine,
) -> None:
    gate = Gate(engine)
    async with gate:
        with pytest.raises(RuntimeError, match="already running"):
            async with gate:
                pass
        assert gate._sweeper.running  # the first sweeper is untouched


async def test_sync_and_async_callbacks_both_run(engine: Engine) -> None:
    seen: list[str] = []
    gate = Gate(engine)

    @gate.on_expire
    def sync_callback(item: Expired) -> None:
        seen.append("sync " + item.session.user)

    @gate.on_expire
    async def async_callback(item: Expired) -> None:
        await anyio.sleep(0.1)
        seen.append("async " + item.session.user)

    async with gate:
        await gate.create_session("alice", expires_after_s=1)
        await anyio.sleep(2)
    assert seen == ["sync alice", "async alice"]


async def test_a_failing_callback_is_logged_counted_and_survived(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def broken(item: Expired) -> None:
        raise RuntimeError("boom")

    gate = Gate(engine, on_expire=[broken, lambda item: seen.append(item.session.id)])
    async with gate:
        first = await gate.create_session("u1", expires_after_s=1)
        second = await gate.create_session("u2", expires_after_s=3)
        await anyio.sleep(5)
    assert seen == [first.id, second.id]
    assert count(gate, "ratekeeper_expiry_callback_errors_total") == 2
    failures = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(failures) == 2
    assert first.client_secret is not None
    assert second.client_secret is not None
    for record in failures:
        assert record.levelno == logging.ERROR
        assert first.client_secret not in record.getMessage()
        assert second.client_secret not in record.getMessage()


async def test_the_sweeper_survives_backend_failures_and_resumes(engine: Engine) -> None:
    class Flaky(MemoryBackend):
        """A memory backend that fails its sweeps while ``down`` (a test double)."""

        down = True

        async def sweep(self, max_items: int) -> list[Expired]:
            if self.down:
                raise BackendError("unreachable")
            return await super().sweep(max_items)

    backend = Flaky(engine)
    gate = Gate(backend, poll_interval_s=1)
    async with gate:
        session = await gate.create_session("u1", expires_after_s=1)
        await anyio.sleep(3.5)
        assert count(gate, "ratekeeper_backend_errors_total", operation="sweep") >= 2
        backend.down = False
        await anyio.sleep(1.5)
        assert engine.statistics().expired == 1
    assert (await gate.get(session.id)).status == "expired"
    assert count(gate, "ratekeeper_sessions_expired_total") == 1


async def test_failing_statistics_do_not_hold_up_expiry(failing_backend: Any) -> None:
    """On a shared backend the sweeper reads statistics for the gauge; their failure is theirs."""

    async def broken() -> Any:
        raise BackendError("statistics unavailable")

    failing_backend.failing = False
    failing_backend.statistics = broken
    gate = Gate(failing_backend, poll_interval_s=3600)
    async with gate:
        await gate.create_session("u1", expires_after_s=2)
        await anyio.sleep(3)
    assert count(gate, "ratekeeper_sessions_expired_total") == 1
    assert count(gate, "ratekeeper_backend_errors_total", operation="statistics") >= 1
    assert count(gate, "ratekeeper_backend_errors_total", operation="sweep") == 0


async def test_an_error_in_the_block_comes_out_unwrapped(engine: Engine) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with Gate(engine):
            raise KeyError("mine")


class _Down(MemoryBackend):
    """A memory backend whose sweeps and deadline reads fail while ``down`` (a test double)."""

    down = True

    async def sweep(self, max_items: int) -> list[Expired]:
        if self.down:
            raise BackendError("unreachable")
        return await super().sweep(max_items)

    async def time_to_next_deadline(self) -> float | None:
        if self.down:
            raise BackendError("unreachable")
        return await super().time_to_next_deadline()


async def test_an_outage_is_logged_once_and_its_recovery_once_with_the_count(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """Many failed retries make one warning without a traceback, then one recovery line."""
    caplog.set_level(logging.INFO, logger="ratekeeper")
    backend = _Down(engine)
    gate = Gate(backend, poll_interval_s=1)
    async with gate:
        await anyio.sleep(12.5)  # between two retries: trio orders same-instant wakeups randomly
        backend.down = False
        await anyio.sleep(2)
    failures = count(gate, "ratekeeper_backend_errors_total", operation="sweep")
    assert failures >= 6
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    first, recovered = warnings
    assert "sweeper failed (BackendError: unreachable)" in first.getMessage()
    assert first.exc_info is None
    assert first.exc_text is None
    # It comes back at 12.5 s; the sweeper sees it at its next retry, a poll interval later.
    assert recovered.getMessage() == (
        f"ratekeeper: sweeper: backend recovered after {failures:.0f} failures over 13.0 s"
    )
    assert recovered.exc_info is None


async def test_outage_tracebacks_are_logged_at_debug(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    gate = Gate(_Down(engine), poll_interval_s=1)
    async with gate:
        await anyio.sleep(3.5)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "failure" in r.msg]
    assert len(debug) >= 3
    assert all(r.exc_info is not None for r in debug)


async def test_failing_statistics_are_logged_once_while_expiry_works(
    failing_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The gauge's statistics failing each turn do not make expiry "recover" each turn."""

    async def broken() -> Any:
        raise BackendError("statistics unavailable")

    caplog.set_level(logging.INFO, logger="ratekeeper")
    failing_backend.failing = False
    failing_backend.statistics = broken
    gate = Gate(failing_backend, poll_interval_s=1)
    async with gate:
        await gate.create_session("u1", expires_after_s=2)
        await anyio.sleep(10)
    assert count(gate, "ratekeeper_backend_errors_total", operation="statistics") >= 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "ratekeeper: statistics failed (BackendError: statistics unavailable); retrying, "
        "and logging again at recovery"
    ]


async def test_session_lifecycle_is_logged_at_debug_without_the_secret(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ratekeeper")
    gate = Gate(engine, poll_interval_s=3600)
    async with gate:
        kept = await gate.create_session("alice", expires_after_s=2)
        dropped = await gate.create_session("bob", expires_after_s=600)
        await gate.cancel(dropped.id)
        await gate.cancel(dropped.id)  # already cancelled: no second event
        await anyio.sleep(3)
    events = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert events == [
        f"ratekeeper: session {kept.id} created for user alice",
        f"ratekeeper: session {dropped.id} created for user bob",
        f"ratekeeper: session {dropped.id} cancelled for user bob",
        f"ratekeeper: session {kept.id} expired for user alice",
    ]
    assert not any("ek_" in event for event in events)


async def test_the_sweeper_sleeps_short_of_a_deadline_then_yields_up_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last ms before a deadline are turns of the event loop (a sleep can end ms late):
    it returns once the loop's time reaches the deadline, not before, and not by sleeping."""
    import trio

    from ratekeeper._sweeper import _yield_until

    readings: list[float] = []

    def moving_time() -> float:  # a loop clock that moves 0.5 ms with every turn
        readings.append(0.0005 * len(readings))
        return readings[-1]

    monkeypatch.setattr(anyio, "current_time", moving_time)
    virtual = trio.current_time()
    await _yield_until(0.002, anyio.Event())
    assert readings[-1] == 0.002
    assert trio.current_time() == virtual  # it never slept


async def test_a_wake_ends_the_last_turns_before_a_deadline_at_once() -> None:
    """Set ``wake`` (a new, earlier deadline) and the sweeper stops waiting for the old one."""
    from ratekeeper._sweeper import _yield_until

    wake = anyio.Event()
    wake.set()
    before = anyio.current_time()
    await _yield_until(before + 10, wake)
    assert anyio.current_time() == before
