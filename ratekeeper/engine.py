"""The in-process engine: sessions, the exact sliding-window limiter and the expiry index.

Everything here is synchronous and does no I/O. Time comes from the injected clock, read once
per operation; the rules themselves (:func:`decide`) take ``now`` as an argument.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from sortedcontainers import SortedKeyList

from ._params import validate_limits
from ._secrets import new_client_secret, new_id, secret_digest
from .clock import Clock, SystemClock
from .errors import CapacityExceeded, SessionNotFound
from .types import (
    Decision,
    FileUploadLimits,
    HistoryLimits,
    Session,
    SessionStatus,
    UploadDecision,
)
from .window import decide, unknown_decision

__all__ = ("Engine", "EngineStatistics", "Expired")

_ACTIVE = SessionStatus.ACTIVE
_EXPIRED = SessionStatus.EXPIRED
_CANCELLED = SessionStatus.CANCELLED
_NO_ATTRIBUTES: Mapping[str, Any] = {}
_BYTES_PER_MB = 1024 * 1024
_new = tuple.__new__  # builds an Expired without NamedTuple's Python-level __new__


class Expired(NamedTuple):
    """One session flipped to ``expired`` by a sweep.

    Attributes:
        session: the session as it is now (``status == "expired"``).
        lag_s: seconds between the session's deadline and the flip.
    """

    session: Session
    lag_s: float


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    """Counts of the sessions an engine holds right now.

    Attributes:
        active: sessions not yet flipped (a due session counts until the sweep flips it).
        expired: expired sessions kept for their retention period.
        cancelled: cancelled sessions kept for their retention period.
    """

    active: int
    expired: int
    cancelled: int


class _Record:
    """One session's mutable state. ``times[head:]`` is its window (see :mod:`.window`)."""

    __slots__ = (
        "attributes",
        "created_at",
        "deadline",
        "digest",
        "expires_at",
        "file_upload",
        "files_used",
        "head",
        "history",
        "id",
        "limit",
        "status",
        "times",
        "user",
    )

    def __init__(self, sid: str, digest: bytes, user: str, limit: int) -> None:
        self.id = sid
        self.digest = digest
        self.user = user
        self.limit = limit
        self.status = _ACTIVE
        # Allocated on the first admission, so idle sessions cost no window memory.
        self.times: array[float] | None = None
        self.head = 0
        self.files_used = 0
        self.expires_at = 0
        self.created_at = 0.0
        self.deadline = 0.0
        self.file_upload = FileUploadLimits()
        self.history = HistoryLimits()
        self.attributes: Mapping[str, Any] = _NO_ATTRIBUTES


def _deadline_of(record: _Record) -> float:
    return record.deadline


class Engine:
    """Sessions with a lifetime and an exact per-session sliding-window limit, in memory.

    Args:
        clock: where time comes from; :class:`~ratekeeper.clock.SystemClock` by default.
        retention_s: how long expired and cancelled sessions are kept, so that a late request
            learns ``expired``/``cancelled`` rather than ``unknown_session``.
        max_sessions: cap on active sessions; creating one more raises
            :class:`~ratekeeper.errors.CapacityExceeded`. At most as many ended sessions are
            retained, so memory stays bounded under any churn.

    This is **not** thread-safe: use it from one thread (one event loop), as the gate does.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        retention_s: float = 3600.0,
        max_sessions: int = 1_000_000,
    ) -> None:
        if retention_s < 0:
            raise ValueError(f"retention_s must be >= 0, got {retention_s!r}")
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions!r}")
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.retention_s = float(retention_s)
        self.max_sessions = max_sessions
        self._by_id: dict[str, _Record] = {}
        self._by_digest: dict[bytes, _Record] = {}
        # Active sessions ordered by monotonic deadline: O(log n) insert and removal.
        self._expiry: SortedKeyList = SortedKeyList(key=_deadline_of)
        # Ended sessions in the order they ended; monotonic time makes that purge order.
        # Two parallel queues rather than one of (time, record) pairs: a pair per ended
        # session is one more object for the cyclic GC to track and promote, and at a million
        # sessions those promotions set off full collections in the middle of sweeps.
        self._retired: deque[_Record] = deque()
        self._purge_at: deque[float] = deque()
        self._cancelled = 0

    # -- creation -------------------------------------------------------------------------

    def create_session(
        self,
        user: str,
        *,
        expires_after_s: int = 600,
        max_requests_per_1_minute: int = 10,
        file_upload: FileUploadLimits = FileUploadLimits(),  # noqa: B008 - frozen value
        history: HistoryLimits = HistoryLimits(),  # noqa: B008 - frozen value
        attributes: Mapping[str, Any] | None = None,
    ) -> Session:
        """Create an active session and return it with its ``client_secret``.

        ``expires_at = floor(now) + expires_after_s``, so a session never outlives what it
        asked for; enforcement runs on a monotonic deadline derived from the same reading.

        Raises:
            InvalidParameter: a value is missing, of the wrong type or out of range.
            CapacityExceeded: ``max_sessions`` sessions are already active.
        """
        validate_limits(user, expires_after_s, max_requests_per_1_minute, file_upload, history)
        wall = self.clock.time()
        mono = self.clock.monotonic()
        expiry = self._expiry
        # Due sessions hold no capacity; they stay in the index for the sweep to flip and
        # report (flipping them here would hide their expiry from metrics and callbacks).
        active = len(expiry)
        if active >= self.max_sessions and active - expiry.bisect_key_right(mono) >= (
            self.max_sessions
        ):
            raise CapacityExceeded(
                f"cannot create a session: {self.max_sessions} sessions are active "
                "(raise max_sessions, or cancel sessions)"
            )
        secret = new_client_secret()
        record = _Record(new_id("cksess"), secret_digest(secret), user, max_requests_per_1_minute)
        record.created_at = wall
        record.expires_at = math.floor(wall) + expires_after_s
        record.deadline = mono + (record.expires_at - wall)
        record.file_upload = file_upload
        record.history = history
        if attributes:
            record.attributes = dict(attributes)
        self._by_id[record.id] = record
        self._by_digest[record.digest] = record
        expiry.add(record)
        return self._snapshot(record, mono, secret)

    # -- the hot path ---------------------------------------------------------------------

    def admit(self, client_secret: str) -> Decision:
        """Decide whether one request on the session behind ``client_secret`` may proceed.

        Admitted requests are counted; rejected ones are not. Never raises for a rejection.
        """
        record = self._by_digest.get(secret_digest(client_secret))
        if record is None:
            return unknown_decision()
        return decide(record, self.clock.monotonic())

    def lookup(self, client_secret: str) -> Session | None:
        """Return the session behind ``client_secret`` as of now, without counting a request."""
        record = self._by_digest.get(secret_digest(client_secret))
        if record is None:
            return None
        return self._snapshot(record, self.clock.monotonic())

    def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        """Count one file upload against the session's ``file_upload`` limits, if it fits.

        Raises:
            SessionNotFound: no such session.
        """
        record = self._record(session_id)
        limits = record.file_upload
        status = self._status(record, self.clock.monotonic())
        if status is not _ACTIVE:
            return UploadDecision(False, status.value, record.files_used, limits.max_files)
        if not limits.enabled:
            return UploadDecision(False, "uploads_disabled", record.files_used, limits.max_files)
        if size_bytes > limits.max_file_size * _BYTES_PER_MB:
            return UploadDecision(False, "file_too_large", record.files_used, limits.max_files)
        if record.files_used >= limits.max_files:
            return UploadDecision(False, "too_many_files", record.files_used, limits.max_files)
        record.files_used += 1
        return UploadDecision(True, "allowed", record.files_used, limits.max_files)

    # -- lifecycle ------------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        """Return the session as of now (a due session reads ``expired`` before any sweep).

        Raises:
            SessionNotFound: no such session (or it was purged after its retention).
        """
        return self._snapshot(self._record(session_id), self.clock.monotonic())

    def cancel(self, session_id: str) -> Session:
        """Cancel an active session; idempotent, and a no-op on an expired one.

        Returns the session as it stands afterwards: ``cancelled``, or ``expired`` if its time
        had already come.

        Raises:
            SessionNotFound: no such session.
        """
        record = self._record(session_id)
        now = self.clock.monotonic()
        if record.status is _ACTIVE and now < record.deadline:
            self._expiry.remove(record)
            record.status = _CANCELLED
            record.times = None
            self._cancelled += 1
            self._retire(record, now)
        return self._snapshot(record, now)

    def sweep(self, max_items: int | None = None) -> list[Expired]:
        """Flip due sessions to ``expired`` (at most ``max_items``), purge old ended ones.

        Returns the sessions flipped, earliest deadline first.
        """
        now = self.clock.monotonic()
        self._purge(now)
        return self._flip_due(now, max_items)

    def next_deadline(self) -> float | None:
        """Return the monotonic time at which :meth:`sweep` next has work, or ``None``."""
        candidates = []
        if self._expiry:
            candidates.append(self._expiry[0].deadline)
        if self._purge_at:
            candidates.append(self._purge_at[0])
        return min(candidates) if candidates else None

    def statistics(self) -> EngineStatistics:
        """Return how many sessions are active, and how many ended ones are retained."""
        retained = len(self._retired)
        return EngineStatistics(len(self._expiry), retained - self._cancelled, self._cancelled)

    # -- internals ------------------------------------------------------------------------

    def _record(self, session_id: str) -> _Record:
        record = self._by_id.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record

    @staticmethod
    def _status(record: _Record, now: float) -> SessionStatus:
        if record.status is _ACTIVE and now >= record.deadline:
            return _EXPIRED
        return record.status

    def _snapshot(self, record: _Record, now: float, secret: str | None = None) -> Session:
        # Positional, in Session's field order: a quarter cheaper than keywords, and every
        # create, get and sweep builds one (benchmarks/test_engine_bench.py).
        return Session(
            record.id,
            record.user,
            self._status(record, now),
            record.expires_at,
            record.created_at,
            record.limit,
            record.file_upload,
            record.history,
            record.attributes,
            secret,
        )

    def _flip_due(self, now: float, max_items: int | None) -> list[Expired]:
        expiry = self._expiry
        due = expiry.bisect_key_right(now)  # deadline <= now: expired exactly at the deadline
        if max_items is not None:
            due = min(due, max_items)
        if due == 0:
            return []
        if due == len(expiry):
            records = list(expiry)
            expiry.clear()
        else:
            # Popping the front one at a time stays near 0.5 us a session at any batch size;
            # del expiry[:due] matches it for small batches but, past the first sublist,
            # rebuilds the positional index again and again and costs 2-3x as much
            # (benchmarks/sweep_options.py, docs/benchmarks.md).
            pop = expiry.pop
            records = [pop(0) for _ in range(due)]
        self._retired.extend(records)
        self._purge_at.extend(repeat(now + self.retention_s, due))
        flipped = []
        snapshot = self._snapshot
        for record in records:
            record.status = _EXPIRED
            record.times = None
            flipped.append(_new(Expired, (snapshot(record, now), now - record.deadline)))
        self._bound_retired()
        return flipped

    def _retire(self, record: _Record, now: float) -> None:
        self._retired.append(record)
        self._purge_at.append(now + self.retention_s)
        self._bound_retired()

    def _bound_retired(self) -> None:
        # Never hold more ended sessions than active ones may exist: bounded memory.
        retired = self._retired
        purge_at = self._purge_at
        while len(retired) > self.max_sessions:
            purge_at.popleft()
            self._forget(retired.popleft())

    def _purge(self, now: float) -> None:
        retired = self._retired
        purge_at = self._purge_at
        while purge_at and purge_at[0] <= now:
            purge_at.popleft()
            self._forget(retired.popleft())

    def _forget(self, record: _Record) -> None:
        del self._by_id[record.id]
        del self._by_digest[record.digest]
        if record.status is _CANCELLED:
            self._cancelled -= 1

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"Engine(clock={self.clock!r}, active={stats.active}, "
            f"expired={stats.expired}, cancelled={stats.cancelled})"
        )
