"""A gate on a manual clock, for tests of code that uses the library (no server, no HTTP)."""

from __future__ import annotations

from typing import Any

from .._clock import ManualClock
from .._engine import Engine
from .._gate import Gate


class ManualGate(Gate):
    """A :class:`~ratekeeper.Gate` over an in-memory :class:`~ratekeeper.Engine`
    on a :class:`~ratekeeper.ManualClock`: the ``ratekeeper_gate`` fixture.

    Time moves only when the test says so: :meth:`advance` moves the clock and expires what fell
    due before it returns (flipped, counted in the metrics, ``on_expire`` callbacks run), so a
    test of a ten-minute session takes milliseconds and never sleeps. Admission needs no
    sweeper (it checks the deadline itself), so ``async with gate:`` is optional; enter it to
    run the sweeper as production does. Runs on asyncio and trio alike.

    Args:
        clock: the clock; a new :class:`~ratekeeper.ManualClock` when omitted.
        retention_s: how long ended sessions are remembered (see :class:`Engine`).
        max_sessions: cap on active sessions (see :class:`Engine`).
        **options: the :class:`~ratekeeper.Gate` options (``fail_open``, ``registry``,
            ``on_expire``, ...).

    Attributes:
        clock: the manual clock.
        engine: the engine behind the gate.

    Not thread-safe, like the gate and the clock.
    """

    def __init__(
        self,
        clock: ManualClock | None = None,
        *,
        retention_s: float = 3600.0,
        max_sessions: int = 1_000_000,
        **options: Any,
    ) -> None:
        self.clock = clock if clock is not None else ManualClock()
        self.engine = Engine(self.clock, retention_s=retention_s, max_sessions=max_sessions)
        super().__init__(self.engine, **options)

    async def advance(self, seconds: float) -> int:
        """Move the clock forward by ``seconds`` and expire what fell due; return how many.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        self.clock.advance(seconds)
        return await self.sweep_now()
