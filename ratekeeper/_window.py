"""The decision rule: session status, deadline and the exact sliding window, in one place.

This is the only Python home of the rule; ``ratekeeper/redis/admit.lua`` is its only twin, and
both pass the same conformance table (``tests/test_contract.py``).

The window of a session limited to ``N`` requests per minute is the half-open interval
``(now - 60, now]``: an admission at ``t0`` counts while ``now < t0 + 60`` and stops counting
at exactly ``t0 + 60``. The admissions still counting are kept, oldest first, in
``times[head:]``, each as the instant it stops counting (``t0 + 60``, added once when it is
recorded rather than on every comparison). Each decision drops the ones that stopped counting
by moving ``head`` (amortized O(1)); the array is compacted once half of it is stale, so it
never holds more than about ``2 N`` entries and only grows as admissions are actually made.

``times`` is an ``array('d')``, not a list: its doubles sit unboxed in one buffer, 8 bytes
each instead of a pointer plus a 24-byte float object. A session that has used its 10
requests allocates 216 bytes of window instead of a list's 424, and over 100,000 sessions a
decision touches fewer cache lines and runs about 10 % faster; one hot session pays about 8 %
for boxing the values it reads (docs/benchmarks.md).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Protocol

from ._types import INFINITY, WINDOW_S, Decision, Reason, SessionSpec

_new = tuple.__new__  # builds a Decision without NamedTuple's Python-level __new__
_ALLOWED = Reason.ALLOWED
_RATE_LIMITED = Reason.RATE_LIMITED
_EXPIRED = Reason.EXPIRED
_CANCELLED = Reason.CANCELLED
_UNKNOWN = Decision(False, Reason.UNKNOWN_SESSION, 0, 0, INFINITY, 0.0)
# Compact the window list only when at least this many stale entries lead it.
_COMPACT_AT = 16


#: The deadline of a cancelled session: before every ``now``, so the one comparison of the
#: hot path turns cancelled and expired sessions away alike; then this tells them apart.
CANCELLED_AT = float("-inf")

if TYPE_CHECKING:
    _FloatArray = array[float]
else:
    _FloatArray = array


class Window(_FloatArray):
    """A session's admissions (an ``array('d')``) and ``head``, where the counting ones start.

    ``head`` lives here rather than on the session, so that a session that never admitted a
    request holds no slot for it (sessions are small: see ``ratekeeper._engine._Record``).
    """

    __slots__ = ("head",)
    head: int


class WindowState(Protocol):
    """The per-session state :func:`decide` reads and updates.

    ``times[times.head:]`` holds, oldest first, the instants (monotonic, ``admitted_at + 60``)
    at which the admissions still in the window stop counting; ``None`` before the first one.
    ``deadline`` is :data:`CANCELLED_AT` once the session is cancelled.
    """

    id: str
    deadline: float
    spec: SessionSpec
    times: Window | None


def unknown_decision() -> Decision:
    """Return the decision for a secret that matches no session."""
    return _UNKNOWN


def terminal_decision(state: WindowState, now: float) -> Decision:
    """Return the decision for a session that is cancelled, or expired as of ``now``."""
    reason = _CANCELLED if state.deadline is CANCELLED_AT else _EXPIRED
    limit = state.spec.max_requests_per_1_minute
    return _new(Decision, (False, reason, limit, 0, INFINITY, 0.0, state.id))


def decide(state: WindowState, now: float) -> Decision:
    """Admit one request at monotonic time ``now`` if the session allows it, and record it.

    ``now`` must not go backwards between calls on the same session.
    """
    # The hot path of every admission (benchmarks/test_engine_bench.py): locals over repeated
    # attribute reads, and ``head`` written back only when it moved.
    if now >= state.deadline:  # expired, or cancelled (CANCELLED_AT)
        return terminal_decision(state, now)
    limit = state.spec.max_requests_per_1_minute
    times = state.times
    if times is None:
        times = state.times = Window("d", (now + WINDOW_S,))
        times.head = 0
        return _new(Decision, (True, _ALLOWED, limit, limit - 1, 0.0, WINDOW_S, state.id))
    head = times.head
    size = len(times)
    if head < size and times[head] <= now:
        head += 1
        while head < size and times[head] <= now:
            head += 1
        times.head = head
    count = size - head
    if count >= limit:
        # times[head] is the oldest admission still counting; times[-1] the newest.
        return _new(
            Decision,
            (False, _RATE_LIMITED, limit, 0, times[head] - now, times[-1] - now, state.id),
        )
    if head >= _COMPACT_AT and head >= count:
        del times[:head]
        times.head = 0
    times.append(now + WINDOW_S)
    return _new(Decision, (True, _ALLOWED, limit, limit - count - 1, 0.0, WINDOW_S, state.id))
