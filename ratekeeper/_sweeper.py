"""The gate's expiry sweeper: sleep until the next deadline, flip, count, call back.

A :class:`~ratekeeper.Gate` owns one :class:`Sweeper` and forwards ``run_sweeper``,
``sweep_now`` and ``on_expire`` to it; admission never depends on it (the backend checks the
deadline on every request).
"""

from __future__ import annotations

import inspect
import logging
import math
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint
from prometheus_client import Histogram

from ._backend import Backend, MemoryBackend
from ._engine import Engine, Flipped
from ._errors import BackendError
from ._metrics import GateMetrics
from ._types import Expired

#: A function called with each session the sweeper flips to ``expired``; sync or async.
ExpiryCallback: TypeAlias = Callable[[Expired], Awaitable[None] | None]

# The gate's logger: the sweeper is part of the gate, and users configure one name for it.
_logger = logging.getLogger("ratekeeper.gate")
# After a sweep that found nothing although a deadline was due (e.g. another process swept
# it first), wait this long before asking again rather than spinning.
_IDLE_RETRY_S = 0.001
# The sweeper sleeps until this long before a deadline, then yields to the event loop until
# the deadline itself: a sleep on asyncio ends up to ~2 ms late (epoll's timeout is rounded up
# to the millisecond, and waking the task takes a loop iteration or two), a lag every session
# of the clump would carry. The price is one core busy for at most this long per deadline.
_EARLY_S = 0.002


class Outage:
    """A run of backend failures of one kind, so an outage is logged once, not per retry.

    The first failure logs one warning (its traceback only at debug), later ones only at debug,
    and the first success after them one warning with the count and the duration. Times are
    the event loop's (``anyio.current_time()``). Not thread-safe: one gate's event loop owns it.
    """

    __slots__ = ("_what", "failures", "started_at")

    def __init__(self, what: str) -> None:
        self._what = what
        self.failures = 0
        self.started_at = 0.0

    def failed(self, exc: BaseException) -> None:
        """Log a failure: a warning line if it starts an outage; at debug with its traceback."""
        self.failures += 1
        if self.failures == 1:
            self.started_at = anyio.current_time()
            _logger.warning(
                "ratekeeper: %s failed (%s: %s); retrying, and logging again at recovery",
                self._what,
                type(exc).__name__,
                exc,
            )
        _logger.debug("ratekeeper: %s failure %d", self._what, self.failures, exc_info=exc)

    def succeeded(self) -> None:
        """Log the end of an outage, if one was running."""
        if self.failures:
            _logger.warning(
                "ratekeeper: %s: backend recovered after %d failures over %.1f s",
                self._what,
                self.failures,
                anyio.current_time() - self.started_at,
            )
            self.failures = 0


class Sweeper:
    """Flips due sessions to ``expired``, counts them and runs the expiry callbacks.

    Args:
        backend: the gate's backend.
        metrics: the gate's collectors.
        engine: the backend's in-process engine (its
            :class:`~ratekeeper._backend.InProcess` capability), or ``None`` for a shared
            backend. When the backend's ``sweep`` is the engine's own, the sweeper flips the
            engine directly (see :meth:`_sweep_engine`).
        batch: most sessions flipped per sweep call.
        poll_interval_s: the longest the sweeper sleeps.
        callbacks: run for each flipped session.
        refresh_statistics: awaited once per sweeper turn to refresh the sessions gauge of a
            shared backend (it counts and logs its own failures); ``None`` when the gauge reads
            an in-process engine live.

    Attributes:
        callbacks: the expiry callbacks, in the order they run.
        running: whether :meth:`run` is running.
        wake: set to cut the sweeper's sleep short; ``None`` unless it sleeps.
        wake_at: the event loop time it sleeps until (``math.inf`` when awake).
        sleep_s: how long that sleep was meant to last.
        recheck: set when a deadline may have been made while the sweeper was awake (e.g.
            awaiting the backend's next deadline), which may be earlier than the one it read,
            so it must not sleep on that one.

    This is **not** thread-safe: one gate's event loop owns it.
    """

    def __init__(
        self,
        backend: Backend,
        metrics: GateMetrics,
        *,
        engine: Engine | None,
        batch: int,
        poll_interval_s: float,
        callbacks: list[ExpiryCallback],
        refresh_statistics: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        # The engine's own sweep, unless a subclass changed what sweeping means.
        sweeps_engine = engine is not None and type(backend).sweep is MemoryBackend.sweep
        self._engine = engine if sweeps_engine else None
        self.batch = batch
        self.poll_interval_s = poll_interval_s
        self.callbacks = callbacks
        self._refresh_statistics = refresh_statistics
        # Backend outages of expiry (deadlines and sweeps); the statistics have their own.
        self._outage = Outage("sweeper")
        self.wake: anyio.Event | None = None
        self.wake_at = math.inf
        self.sleep_s = 0.0
        self.recheck = False
        self.running = False

    async def sweep_now(self) -> int:
        """Flip every session due now, then wake the sweeper; see ``Gate.sweep_now``."""
        flipped = await self.sweep_due()
        self._wake_up()
        return flipped

    def deadline_made(self, expires_in_s: float) -> None:
        """A session was created that falls due in ``expires_in_s``: wake the sweeper if that
        is before it means to wake (or, mid-sweep, make it look again before sleeping)."""
        wake = self.wake
        if wake is not None:
            # Loop time runs at the rate of the backend's clocks. A session due no sooner than
            # the whole sleep is due after it ends (the sleep began at or before now), so the
            # clock is not read: most sessions outlive the sweeper's sleeps (~1 µs a create).
            if expires_in_s < self.sleep_s and (
                anyio.current_time() + max(0.0, expires_in_s) < self.wake_at
            ):
                wake.set()
        elif self.running:
            self.recheck = True

    def _wake_up(self) -> None:
        wake = self.wake
        if wake is not None:
            wake.set()
        elif self.running:
            self.recheck = True

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Flip due sessions until cancelled; see ``Gate.run_sweeper``.

        Raises:
            RuntimeError: the sweeper is already running.
        """
        if self.running:
            raise RuntimeError("this gate's sweeper is already running")
        self.running = True
        task_status.started()
        try:
            idle = False
            while True:
                self.recheck = False
                delay = await self._time_to_sweep()
                if idle and delay <= 0:
                    delay = _IDLE_RETRY_S
                if delay > 0 and not self.recheck:
                    await self._sleep(delay, accurate=delay < self.poll_interval_s)
                flipped = await self.sweep_due()
                if flipped < 0:  # the backend failed: back off
                    await self._sleep(self.poll_interval_s)
                idle = flipped == 0
        finally:
            self.running = False
            self.wake = None
            self.wake_at = math.inf

    async def _time_to_sweep(self) -> float:
        refresh = self._refresh_statistics
        if refresh is not None:
            # Shared backends: refresh the sessions gauge once per sweeper turn. Only the gauge
            # needs it, so its failure (counted and logged by ``refresh``) must not hold up
            # expiry.
            await refresh()
        try:
            remaining = await self.backend.time_to_next_deadline()
        except BackendError as exc:
            self.metrics.backend_error["sweep"].inc()
            self._outage.failed(exc)
            return self.poll_interval_s
        self._outage.succeeded()
        if remaining is None:
            return self.poll_interval_s
        return min(remaining, self.poll_interval_s)

    async def _sleep(self, delay: float, *, accurate: bool = False) -> None:
        """Sleep ``delay`` s unless woken; ``accurate``: end as close to it as the loop can."""
        wake = self.wake = anyio.Event()
        self.sleep_s = delay
        until = self.wake_at = anyio.current_time() + delay
        try:
            with anyio.move_on_after(delay - _EARLY_S if accurate else delay):
                await wake.wait()
            if accurate:
                await _yield_until(until, wake)
        finally:
            self.wake = None
            self.wake_at = math.inf

    async def sweep_due(self) -> int:
        """Sweep every due session in batches; return how many flipped, -1 on failure."""
        engine = self._engine
        if engine is not None:
            return await self._sweep_engine(engine)
        total = 0
        batch = self.batch
        while True:
            try:
                flipped = await self.backend.sweep(batch)
            except BackendError as exc:
                self.metrics.backend_error["sweep"].inc()
                self._outage.failed(exc)
                return -1
            self._outage.succeeded()
            if flipped:
                total += len(flipped)
                self._observe(flipped)
                if self.callbacks:
                    await self._run_callbacks(flipped)
            # Between batches (and after the last) let every other task run.
            await checkpoint()
            if len(flipped) < batch:
                return total

    async def _sweep_engine(self, engine: Engine) -> int:
        """:meth:`sweep_due` for an in-process engine: flip first, tell the callbacks after.

        Each :meth:`Engine.flip_due` call first flips every due session, a whole second's in
        one O(1) step (off the active count, ``expired`` to every reader), and then reports a
        batch of them (status set, window freed, retired): the metrics observe the batch and
        the callbacks are told of it, yielding to the event loop between batches. Sessions
        falling due while earlier ones are being reported are flipped by the next call, so
        ``lag_s`` (the time to the flip) stays within a few ms of the deadline however slow
        the callbacks are. The values are built only when there are callbacks.
        """
        total = 0
        batch = self.batch
        while True:
            flipped = engine.flip_due(batch)
            count = len(flipped)
            if count:
                total += count
                self._observe_flipped(flipped)
                if self.callbacks:
                    await self._run_callbacks(flipped.expired())
            # Between steps (and after the last) let every other task run.
            await checkpoint()
            if count < batch:
                return total

    def _observe_flipped(self, flipped: Flipped) -> None:
        metrics = self.metrics
        count = len(flipped)
        metrics.sessions_expired.inc(count)
        metrics.sweep_batch_size.observe(count)
        low, high = flipped.lag_bounds()
        if low < 0.0 or not _observe_together(
            metrics.expiry_lag, count, low, high, flipped.lag_sum()
        ):
            _observe_many(metrics.expiry_lag, flipped.lags())
        if _logger.isEnabledFor(logging.DEBUG):
            for session_id, user in flipped.ids():
                _logger.debug("ratekeeper: session %s expired for user %s", session_id, user)

    def _observe(self, flipped: list[Expired]) -> None:
        metrics = self.metrics
        metrics.sessions_expired.inc(len(flipped))
        metrics.sweep_batch_size.observe(len(flipped))
        _observe_many(metrics.expiry_lag, [item.lag_s for item in flipped])
        if _logger.isEnabledFor(logging.DEBUG):
            for item in flipped:
                _logger.debug(
                    "ratekeeper: session %s expired for user %s",
                    item.session.id,
                    item.session.user,
                )

    async def _run_callbacks(self, flipped: list[Expired]) -> None:
        for callback in self.callbacks:
            for item in flipped:
                try:
                    result = callback(item)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    self.metrics.callback_errors.inc()
                    # The session id only: sessions from a sweep never carry their secret.
                    _logger.exception(
                        "ratekeeper expiry callback %r failed for session %s",
                        getattr(callback, "__qualname__", callback),
                        item.session.id,
                    )


async def _yield_until(until: float, wake: anyio.Event) -> None:
    """Yield to the event loop until its time reaches ``until`` (or ``wake`` is set).

    Each turn lets every other task run. Under a clock that stands still while tasks are
    runnable (trio's ``MockClock`` with autojump), it sleeps the rest instead of spinning.
    """
    current_time = anyio.current_time
    before = current_time()
    while before < until and not wake.is_set():
        await checkpoint()
        now = current_time()
        if now == before:  # a virtual clock: only sleeping moves it
            with anyio.move_on_after(until - now):
                await wake.wait()
            return
        before = now


def _observe_many(histogram: Histogram, values: list[float]) -> None:
    """Observe every value in ``values`` (clamped at 0), as ``observe`` would one at a time."""
    if values and not _observe_together(
        histogram, len(values), min(values), max(values), sum(v for v in values if v > 0.0)
    ):
        for value in values:
            histogram.observe(value if value > 0.0 else 0.0)


def _observe_together(
    histogram: Histogram, count: int, low: float, high: float, total: float
) -> bool:
    """Observe ``count`` values lying in ``[low, high]`` and summing to ``total`` in one step.

    A sweep flips sessions that fell due together, so their lags nearly always fall in one
    bucket: then that bucket's count goes up by their number and the sum by their total, in
    one step, instead of one locked ``observe`` each (1.3 us apiece: 30 ms for a clump of
    25,000). The histogram ends up exactly as after observing each value. Returns ``False``,
    having done nothing, when the values may span buckets (the caller observes each then).
    This reaches into prometheus-client's ``Histogram`` (``_upper_bounds``, ``_buckets``,
    ``_sum``, stable since 0.4); if they are missing it returns ``False`` too.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    sum_value = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or sum_value is None:  # pragma: no cover - other versions
        return False
    # observe() clamps nothing, but lags below 0 are observed as 0 by the sweeper.
    first = bisect_left(bounds, low if low > 0.0 else 0.0)  # observe's bucket: first bound >= it
    if first != bisect_left(bounds, high if high > 0.0 else 0.0):
        return False
    buckets[first].inc(count)
    sum_value.inc(total)
    return True
