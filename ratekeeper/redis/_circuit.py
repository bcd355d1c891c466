"""The Redis backend's circuit breaker: a hung Redis costs a few timeouts, not one per request.

A Redis that stops answering (``SIGSTOP``, a network partition that drops packets, a server
stuck in a slow command) makes every command wait the client's ``socket_timeout`` (2 s by
default) before it fails. After ``failures`` such timeouts in a row the circuit **opens**: every
operation then fails at once with :class:`~ratekeeper.BackendError`, without touching
the network, so the gate answers 503 (or admits, failing open) immediately. Meanwhile one
background task probes Redis with ``PING``, one at a time, ``probe_interval_s`` apart; the
first answer **closes** the circuit, as does any command that was already in flight and comes
back answered. Recovery needs nothing from the operator.

Only timeouts count. A refused connection (Redis killed or restarting) fails at once anyway,
and every request doubles as a probe, so the first request after Redis is back succeeds; a
circuit opened on those would only delay recovery by a probe interval.

asyncio only (like redis-py's asyncio client), one event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import TimeoutError as RedisTimeoutError

from .._errors import BackendError
from .._types import CircuitStatistics
from ._scripts import DRIVER_ERRORS, Client

_logger = logging.getLogger("ratekeeper.redis")


class Circuit:
    """Counts consecutive timeouts, answers at once while open, and probes in the background.

    Args:
        client: the client to probe with ``PING``.
        failures: timeouts in a row that open the circuit; 0 never opens it.
        probe_interval_s: pause between two probes while open.

    Attributes:
        is_open: whether operations are refused at once.
    """

    __slots__ = (
        "_client",
        "_closed",
        "_opened",
        "_probe_interval_s",
        "_prober",
        "_rejected",
        "_threshold",
        "_timeouts",
        "is_open",
    )

    def __init__(self, client: Client, failures: int, probe_interval_s: float) -> None:
        if failures < 0:
            raise ValueError(f"circuit_failures must be >= 0, got {failures!r}")
        if not probe_interval_s > 0:
            raise ValueError(f"circuit_probe_interval_s must be > 0, got {probe_interval_s!r}")
        self._client = client
        self._threshold = failures
        self._probe_interval_s = float(probe_interval_s)
        self._timeouts = 0
        self._opened = 0
        self._closed = 0
        self._rejected = 0
        # The probing task while open; kept referenced so it is not collected mid-run.
        self._prober: asyncio.Task[None] | None = None
        self.is_open = False

    def reject(self) -> BackendError:
        """Count one operation refused while open and return the error to raise."""
        self._rejected += 1
        return BackendError(
            f"Redis backend unavailable: {self._threshold} commands in a row timed out; "
            "answering at once until a background probe reaches Redis again"
        )

    def succeeded(self) -> None:
        """Record an answered command (any answer: Redis is reachable)."""
        self._timeouts = 0
        if self.is_open:
            self._close()

    def failed(self, exc: BaseException) -> None:
        """Record a failed command; a timeout may open the circuit and start the probe."""
        if not isinstance(exc, RedisTimeoutError):
            return
        self._timeouts += 1
        if self.is_open or not self._threshold or self._timeouts < self._threshold:
            return
        self.is_open = True
        self._opened += 1
        _logger.warning(
            "ratekeeper: Redis did not answer %d commands in a row; answering at once "
            "(circuit open) and probing every %.2f s",
            self._timeouts,
            self._probe_interval_s,
        )
        if self._prober is None:
            self._prober = asyncio.ensure_future(self._probe())

    def statistics(self) -> CircuitStatistics:
        """Return the circuit's state and counts."""
        return CircuitStatistics(self.is_open, self._opened, self._closed, self._rejected)

    async def aclose(self) -> None:
        """Stop probing (the backend is closing)."""
        prober, self._prober = self._prober, None
        if prober is not None:
            prober.cancel()
            # Waits without raising the probe's CancelledError (our own cancellation still does).
            await asyncio.wait([prober])

    def _close(self) -> None:
        self.is_open = False
        self._timeouts = 0
        self._closed += 1
        _logger.warning("ratekeeper: Redis answers again; circuit closed")

    async def _probe(self) -> None:
        try:
            while self.is_open:
                await asyncio.sleep(self._probe_interval_s)
                if not self.is_open:
                    break
                try:
                    # Bounded by the client's socket timeout, like every command.
                    await self._client.ping()
                except DRIVER_ERRORS as exc:
                    _logger.debug("ratekeeper: Redis probe failed: %s", type(exc).__name__)
                    continue
                if self.is_open:
                    self._close()
        finally:
            self._prober = None

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed"
        return f"Circuit({state}, failures={self._threshold}, probe={self._probe_interval_s}s)"
