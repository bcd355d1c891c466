"""The only module that reads time.

Two kinds of time matter to ratekeeper:

* **wall time** (Unix seconds) gives ``expires_at``, the number a client sees;
* **monotonic time** drives enforcement, so a wall-clock step (NTP, an operator) can neither
  expire a session early nor keep it alive late.

A session's monotonic deadline is derived once, at creation, from both readings taken together.
Everything else receives ``now`` as an argument (trio's functional-core habit), so tests pass a
:class:`ManualClock` and never sleep.
"""

from __future__ import annotations

import time as _time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """What ratekeeper needs from a clock: wall seconds and monotonic seconds."""

    def time(self) -> float:
        """Return wall-clock Unix time in seconds."""
        ...

    def monotonic(self) -> float:
        """Return seconds on a clock that never goes backwards."""
        ...


class SystemClock:
    """The process's real clocks: :func:`time.time` and :func:`time.monotonic`.

    Stateless, so safe to share across threads.
    """

    __slots__ = ()

    # Bound straight to the C functions: no Python frame on the hot path.
    time = staticmethod(_time.time)
    monotonic = staticmethod(_time.monotonic)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; wall and monotonic time move together.

    Args:
        start: the initial wall-clock reading (Unix seconds). Monotonic time starts at 0.

    This is **not** thread-safe; it is meant for tests and simulations.
    """

    __slots__ = ("_mono", "_wall")

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._wall = float(start)
        self._mono = 0.0

    def time(self) -> float:
        """Return the current simulated wall time."""
        return self._wall

    def monotonic(self) -> float:
        """Return the current simulated monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds!r})")
        self._wall += seconds
        self._mono += seconds

    def step_wall(self, seconds: float) -> None:
        """Step only the wall clock (either direction), as NTP or an operator might."""
        self._wall += seconds

    def __repr__(self) -> str:
        return f"ManualClock(time={self._wall!r}, monotonic={self._mono!r})"


class LoopClock:
    """Monotonic time from the running event loop (anyio), wall time anchored to it.

    Under trio's ``MockClock`` the event loop's time is virtual, so sessions expire on virtual
    time too and sweeper tests take milliseconds. Wall time is ``wall_start`` plus the loop
    time elapsed since the first reading.

    Args:
        wall_start: the wall time at the first reading; the real wall time when omitted.

    Must be read from inside a running event loop. Not thread-safe.
    """

    __slots__ = ("_current_time", "_loop_start", "_wall_start")

    def __init__(self, wall_start: float | None = None) -> None:
        # Imported here so the core never imports anyio unless this clock is chosen.
        from anyio import current_time

        self._current_time = current_time
        self._wall_start = _time.time() if wall_start is None else float(wall_start)
        self._loop_start: float | None = None

    def monotonic(self) -> float:
        """Return the event loop's current time."""
        return self._current_time()

    def time(self) -> float:
        """Return wall time derived from the event loop's time."""
        now = self._current_time()
        if self._loop_start is None:
            self._loop_start = now
        return self._wall_start + (now - self._loop_start)

    def __repr__(self) -> str:
        return f"LoopClock(wall_start={self._wall_start!r})"
