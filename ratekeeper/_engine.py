"""The in-process engine: sessions, the exact sliding-window limiter and the expiry index.

Everything here is synchronous and does no I/O. Time comes from the injected clock, read once
per operation; the rules themselves (:func:`decide`) take ``now`` as an argument.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import fields
from heapq import heappop, heappush, heapreplace
from itertools import repeat
from operator import attrgetter
from typing import Any

from ._clock import Clock, SystemClock
from ._errors import CapacityExceeded, SessionNotFound
from ._params import BYTES_PER_MB, MAX_USER_LENGTH, check_user
from ._secrets import new_client_secret, session_id_for
from ._types import (
    DEFAULT_SPEC,
    Cancellation,
    Decision,
    EngineStatistics,
    Expired,
    FileUploadLimits,
    HistoryLimits,
    Session,
    SessionSpec,
    SessionStatus,
    UploadDecision,
    UploadReason,
    Workflow,
    keyword_spec,
    resolve_spec,
)
from ._window import CANCELLED_AT, Window, decide, unknown_decision

# EngineStatistics and Expired live in ._types, shared with the other backends; imported here,
# they still answer at the old path ratekeeper.engine.

_ACTIVE = SessionStatus.ACTIVE
_EXPIRED = SessionStatus.EXPIRED
_CANCELLED = SessionStatus.CANCELLED
_floor = math.floor
_new = tuple.__new__  # builds an Expired without NamedTuple's Python-level __new__


class _Record:
    """One session's mutable state; its window is ``times`` (see :mod:`._window`).

    Six slots, so a record is 80 bytes (idle sessions are counted by the million): the id is
    the only key (it is a hash of the secret, see :mod:`._secrets`); what the session was
    created with is one reference to its :class:`~ratekeeper.SessionSpec` (shared by every
    session created with the same one), where its rate limit is read; the count of uploads
    lives in a side table, since few sessions ever upload. Nothing is kept that can be
    derived: ``expires_at`` is ``floor(created_at) + spec.expires_after_s``, the window's
    ``head`` lives on the window (idle sessions have none), and the status is read from
    ``deadline``: :data:`~ratekeeper._window.CANCELLED_AT` once cancelled, else expired
    from the deadline on (see :meth:`Engine._status` and
    :func:`~ratekeeper._window.decide`). So a sweep flips a whole second's sessions without
    touching one record (see ``_Flip``), and a report only frees their windows.
    """

    __slots__ = (
        "created_at",
        "deadline",
        "id",
        "spec",
        "times",
        "user",
    )

    # No __init__: Engine.create_session, the one place records are made, sets every slot on
    # an object.__new__ instance, a call frame cheaper (creation is measured per microsecond).
    id: str
    user: str
    times: Window | None
    created_at: float
    deadline: float
    spec: SessionSpec


# A Session snapshot is built as a _SessionDraft (Session's slot layout, without the frozen
# dataclass's __setattr__), filled by plain attribute stores, and then made a Session by
# assigning its __class__, which CPython allows between classes of one slot layout. Every
# create, get and sweep report builds one: the frozen __init__ sets each field through
# object.__setattr__, and setting the slots through their descriptors costs 470 ns; this,
# 170 ns (benchmarks/test_engine_bench.py). The field list is checked at import, so a field
# added to Session fails here rather than leaving a slot unset.
_SESSION_FIELDS = (
    "id",
    "user",
    "status",
    "expires_at",
    "created_at",
    "spec",
    "client_secret",
)
if tuple(f.name for f in fields(Session)) != _SESSION_FIELDS:  # pragma: no cover - a guard
    raise ImportError("ratekeeper._engine: Session's fields changed; update _session()")
_new_object = object.__new__


class _SessionDraft:
    __slots__ = _SESSION_FIELDS


def _session(record: _Record, status: SessionStatus, secret: str | None) -> Session:
    """Return the snapshot of ``record`` with ``status`` (equal to what ``Session(...)`` builds)."""
    spec = record.spec
    created_at = record.created_at
    return _session_at(record, status, secret, _floor(created_at) + spec.expires_after_s)


def _session_at(
    record: _Record, status: SessionStatus, secret: str | None, expires_at: int
) -> Session:
    """:func:`_session`, given the record's ``expires_at`` (creation has it at hand)."""
    draft: Any = _SessionDraft()
    draft.id = record.id
    draft.user = record.user
    draft.status = status
    draft.expires_at = expires_at
    draft.created_at = record.created_at
    draft.spec = record.spec
    draft.client_secret = secret
    draft.__class__ = Session
    session: Session = draft
    return session


(
    _set_id,
    _set_user,
    _set_status,
    _set_expires_at,
    _set_created_at,
    _set_spec,
    _set_client_secret,
) = (getattr(Session, name).__set__ for name in _SESSION_FIELDS)


def _session_by_slots(
    record: _Record, status: SessionStatus, secret: str | None, expires_at: int
) -> Session:
    """:func:`_session_at` through Session's slot descriptors, where ``__class__`` assignment
    is refused (an interpreter other than CPython, or a Session whose layout changed)."""
    session: Session = _new_object(Session)
    _set_id(session, record.id)
    _set_user(session, record.user)
    _set_status(session, status)
    _set_expires_at(session, expires_at)
    _set_created_at(session, record.created_at)
    _set_spec(session, record.spec)
    _set_client_secret(session, secret)
    return session


def _drafts_become_sessions() -> bool:
    draft: Any = _SessionDraft()
    try:
        draft.__class__ = Session
    except TypeError:  # pragma: no cover - CPython allows it for this layout
        return False
    return type(draft) is Session


_DRAFTS_BECOME_SESSIONS = _drafts_become_sessions()
if not _DRAFTS_BECOME_SESSIONS:  # pragma: no cover - see _session_by_slots
    _session_at = _session_by_slots


class _Bucket:
    """The active sessions whose ``expires_at`` is one whole second, in creation order.

    ``expires_at`` is an integer, so sessions fall due in clumps; one bucket per second makes
    indexing a session an append, and flipping a clump a walk along one list. A session's
    monotonic deadline is its own (derived from its creation's readings), so deadlines in one
    bucket differ by the jitter between the two clock readings, or by a wall-clock step:
    ``due_at`` and ``last_at`` bound them, and only when ``last_at`` has passed is every
    session in it due without looking.

    ``records[head:]`` holds the sessions not yet taken; cancelled ones stay in the list (a
    cancel is O(1)) and are skipped; ``live`` counts the active ones. ``due_at`` is exact
    unless ``stale`` (the earliest was cancelled), and may be lower than the earliest left
    after a partial take of a bucket whose sessions are all due anyway. ``heap_key`` is the
    deadline its entry in the engine's heap is ordered by: ``due_at`` or at most
    :data:`_REKEY_S` above it.
    """

    __slots__ = (
        "due_at",
        "expires_at",
        "head",
        "heap_key",
        "last_at",
        "live",
        "records",
        "stale",
    )

    def __init__(self, expires_at: int, record: _Record) -> None:
        self.expires_at = expires_at
        self.records = [record]
        self.head = 0
        self.live = 1
        self.due_at = self.last_at = self.heap_key = record.deadline
        self.stale = False

    def refresh(self) -> None:
        """Drop cancelled records; recompute the bounds from what is left."""
        left = [r for r in self.records[self.head :] if r.deadline is not CANCELLED_AT]
        self.records = left
        self.head = 0
        self.live = len(left)
        self.stale = False
        if left:
            deadlines = [r.deadline for r in left]
            self.due_at = min(deadlines)
            self.last_at = max(deadlines)

    def take_due(self, now: float) -> list[_Record]:
        """Take its sessions due at ``now`` out of it, when some are not due yet.

        Only after a wall step or clock-reading jitter do a bucket's deadlines differ by more
        than :data:`_TOGETHER_S`; then each is looked at. Recomputes the bounds of the rest.
        """
        self.refresh()
        due = [r for r in self.records if r.deadline <= now]
        if due:
            self.records = [r for r in self.records if r.deadline > now]
            self.refresh()
        return due


class _Flip:
    """The sessions one bucket held when the sweep flipped them, waiting to be reported.

    The flip itself is O(1): the engine's active count drops by ``live`` and the bucket's
    list moves here whole, its records untouched (each reads ``expired`` from its deadline).
    Reporting them (``status``, freeing the window, retiring, the values for callbacks) walks
    ``records[head:]`` a batch at a time afterwards, off the path the lag is measured on.
    ``first`` and ``last`` bound their deadlines; ``now`` is the flip's time.
    """

    __slots__ = ("first", "head", "last", "now", "records")

    def __init__(
        self, records: list[_Record], head: int, now: float, first: float, last: float
    ) -> None:
        self.records = records
        self.head = head
        self.now = now
        self.first = first
        self.last = last


# (records, flip time, earliest deadline, latest deadline): one flip's share of a report.
_Segment = tuple[list[_Record], float, float, float]


class Flipped:
    """The sessions one sweep reports flipped to ``expired``, reported lazily.

    Building a :class:`~ratekeeper.Session` for each flipped session costs more than
    flipping it, and a sweep with no one to tell needs only the count and the lags; so the
    snapshots are built only when :meth:`expired` is called. Each session's lag runs from its
    deadline to the flip of its second's sessions, which may come before the report.

    Attributes:
        now: the monotonic time of the report (each flip it reports came at or before it).

    Not thread-safe, like the engine that made it.
    """

    __slots__ = ("_count", "_segments", "now")

    def __init__(self, segments: list[_Segment], count: int, now: float) -> None:
        self._segments = segments
        self._count = count
        self.now = now

    def __len__(self) -> int:
        return self._count

    def lag_bounds(self) -> tuple[float, float]:
        """Return bounds (smallest, largest) of the lags, without looking at each session."""
        segments = self._segments
        if not segments:
            return 0.0, 0.0
        return (
            min(at - last for _, at, _, last in segments),
            max(at - first for _, at, first, _ in segments),
        )

    def lag_sum(self) -> float:
        """Return the sum of the lags."""
        total = 0.0
        for records, at, _, _ in self._segments:
            deadlines: float = sum(map(_deadline_of, records))
            total += len(records) * at - deadlines
        return total

    def lags(self) -> list[float]:
        """Return each session's lag: seconds from its deadline to the flip (never negative)."""
        return [at - record.deadline for records, at, _, _ in self._segments for record in records]

    def ids(self) -> list[tuple[str, str]]:
        """Return ``(session id, user)`` of each flipped session (never a secret)."""
        return [
            (record.id, record.user) for records, _, _, _ in self._segments for record in records
        ]

    def expired(self) -> list[Expired]:
        """Return the flipped sessions as :class:`Expired` values, in flip order."""
        return [
            _new(Expired, (_session(record, _EXPIRED, None), at - record.deadline))
            for records, at, _, _ in self._segments
            for record in records
        ]


_deadline_of = attrgetter("deadline")
# A bucket's heap entry is re-pushed only when a new session's deadline comes this much before
# it. Deadlines of one second's sessions drift apart with the wall clock's slew (NTP: up to
# 0.5 ms a second); re-pushing on every new minimum would leave a stale heap entry per session.
# The cost: two buckets whose deadlines lie within this of each other (only after a wall step)
# may be flipped in the wrong order, the later one first, by at most this much.
_REKEY_S = 0.001
# A bucket whose deadlines all lie within this of each other is due, for the sweeper, at its
# latest: then one O(1) step flips it whole rather than looking at each session. Its deadlines
# differ by the jitter between the two clock readings of each creation, and by the wall
# clock's slew (up to 0.5 ms) over the second its sessions were created in.
_TOGETHER_S = 0.001


class Engine:
    """Sessions with a lifetime and an exact per-session sliding-window limit, in memory.

    Args:
        clock: where time comes from; :class:`~ratekeeper.SystemClock` by default.
        retention_s: how long expired and cancelled sessions are kept, so that a late request
            learns ``expired``/``cancelled`` rather than ``unknown_session``.
        max_sessions: cap on active sessions; creating one more raises
            :class:`~ratekeeper.CapacityExceeded`. At most as many ended sessions are
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
        # Sessions by id. The id is a hash of the secret (see ._secrets), so this one table
        # serves admissions by secret and management by id alike.
        self._by_id: dict[str, _Record] = {}
        # Files counted against a session, for the few sessions that ever upload one.
        self._uploads: dict[str, int] = {}
        # The expiry index: active sessions bucketed by expires_at (a whole second), and a
        # heap of (earliest deadline, expires_at), one live entry per bucket; entries whose
        # deadline no longer matches their bucket's are stale and skipped.
        self._buckets: dict[int, _Bucket] = {}
        self._heap: list[tuple[float, int]] = []
        self._active = 0
        # Ended sessions in the order they ended; monotonic time makes that purge order.
        # Two parallel queues rather than one of (time, record) pairs: a pair per ended
        # session is one more object for the cyclic GC to track and promote, and at a million
        # sessions those promotions set off full collections in the middle of sweeps.
        self._retired: deque[_Record] = deque()
        self._purge_at: deque[float] = deque()
        self._cancelled = 0
        # Flipped sessions not reported yet (see _Flip), and how many: they are expired, and
        # neither active nor retired.
        self._unreported: deque[_Flip] = deque()
        self._unreported_count = 0

    # -- creation -------------------------------------------------------------------------

    def create_session(
        self,
        user: str,
        spec: SessionSpec | None = None,
        *,
        expires_after_s: int | None = None,
        max_requests_per_1_minute: int | None = None,
        file_upload: FileUploadLimits | None = None,
        history: HistoryLimits | None = None,
        workflow: Workflow | None = None,
        automatic_thread_titling: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Session:
        """Create an active session and return it with its ``client_secret``.

        ``spec`` says what the session is created with (:data:`~ratekeeper._types.DEFAULT_SPEC`
        when omitted); or give its fields as keywords instead, ``None`` standing for a field's
        default (``create_session("u", expires_after_s=60, max_requests_per_1_minute=5)``).
        ``expires_at = floor(now) + spec.expires_after_s``, so a session never outlives what
        it asked for; enforcement runs on a monotonic deadline derived from the same reading.

        Raises:
            InvalidParameter: ``user``, or a keyword, is of the wrong type or out of range.
            TypeError: both ``spec`` and keywords were given.
            CapacityExceeded: ``max_sessions`` sessions are already active.
        """
        # The keywords are spelled out here, not taken as **options (SessionOptions) as the
        # other layers do: building and reading that dict cost this, the hottest creation
        # path, about 7 % (measured against the keyword form before SessionSpec).
        if type(user) is not str or not 0 < len(user) <= MAX_USER_LENGTH:
            check_user(user)  # raises the precise error (the test accepts only what it accepts)
        if (
            expires_after_s is None
            and max_requests_per_1_minute is None
            and file_upload is None
            and history is None
            and workflow is None
            and automatic_thread_titling is None
            and attributes is None
        ):
            if type(spec) is not SessionSpec:
                spec = DEFAULT_SPEC if spec is None else resolve_spec(spec, {})
        elif spec is None:
            spec = keyword_spec(
                expires_after_s,
                max_requests_per_1_minute,
                file_upload,
                history,
                workflow,
                automatic_thread_titling,
                attributes,
            )
        else:
            resolve_spec(  # raises: a spec and keywords
                spec,
                {
                    "expires_after_s": expires_after_s,
                    "max_requests_per_1_minute": max_requests_per_1_minute,
                    "file_upload": file_upload,
                    "history": history,
                    "workflow": workflow,
                    "automatic_thread_titling": automatic_thread_titling,
                    "attributes": attributes,
                },
            )
        # A SessionSpec was validated when it was built: nothing here looks at it again.
        clock = self.clock
        wall = clock.time()
        mono = clock.monotonic()
        # Due sessions hold no capacity; they stay in the index for the sweep to flip and
        # report (flipping them here would hide their expiry from metrics and callbacks).
        if self._active >= self.max_sessions and (
            self._active - self._count_due(mono) >= self.max_sessions
        ):
            raise CapacityExceeded(
                f"cannot create a session: {self.max_sessions} sessions are active "
                "(raise max_sessions, or cancel sessions)"
            )
        by_id = self._by_id
        secret = new_client_secret()
        sid = session_id_for(secret)
        while sid in by_id:  # pragma: no cover - 128-bit ids of 256-bit secrets do not collide
            secret = new_client_secret()
            sid = session_id_for(secret)
        expires_at = _floor(wall) + spec.expires_after_s
        deadline = mono + (expires_at - wall)
        bucket = self._buckets.get(expires_at)
        record: _Record = _new_object(_Record)
        record.id = sid
        record.user = user
        record.times = None  # allocated on the first admission: idle sessions hold no window
        record.created_at = wall
        record.spec = spec
        by_id[sid] = record
        if bucket is None:
            record.deadline = deadline
            self._buckets[expires_at] = _Bucket(expires_at, record)
            heappush(self._heap, (deadline, expires_at))
        else:
            expires_at = bucket.expires_at  # one int object per second, not one per session
            last_at = bucket.last_at
            if deadline == last_at:
                # Sessions made at one instant of a clock (or whose readings agree to the
                # last bit) share one deadline float: 32 bytes a session, as the sessions of
                # one second share their bucket's expires_at int.
                record.deadline = last_at
            else:
                record.deadline = deadline
                if deadline < bucket.due_at:
                    bucket.due_at = deadline
                    if deadline < bucket.heap_key - _REKEY_S:
                        bucket.heap_key = deadline
                        heappush(self._heap, (deadline, expires_at))
                elif deadline > last_at:
                    bucket.last_at = deadline
            bucket.records.append(record)
            bucket.live += 1
        self._active += 1
        if _DRAFTS_BECOME_SESSIONS:
            # _session_at spelled out: a call frame less on the hottest creation path.
            draft: Any = _SessionDraft()
            draft.id = sid
            draft.user = user
            draft.status = _ACTIVE
            draft.expires_at = expires_at
            draft.created_at = wall
            draft.spec = spec
            draft.client_secret = secret
            draft.__class__ = Session
            session: Session = draft
            return session
        return _session_at(record, _ACTIVE, secret, expires_at)  # pragma: no cover

    # -- the hot path ---------------------------------------------------------------------

    def admit(self, client_secret: str) -> Decision:
        """Decide whether one request on the session behind ``client_secret`` may proceed.

        Admitted requests are counted; rejected ones are not. Never raises for a rejection.
        """
        record = self._by_id.get(session_id_for(client_secret))
        if record is None:
            return unknown_decision()
        return decide(record, self.clock.monotonic())

    def lookup(self, client_secret: str) -> Session | None:
        """Return the session behind ``client_secret`` as of now, without counting a request."""
        record = self._by_id.get(session_id_for(client_secret))
        if record is None:
            return None
        return self._snapshot(record, self.clock.monotonic())

    def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        """Count one file upload against the session's ``file_upload`` limits, if it fits.

        Raises:
            SessionNotFound: no such session.
        """
        record = self._record(session_id)
        limits = record.spec.file_upload
        used = self._uploads.get(session_id, 0)
        status = self._status(record, self.clock.monotonic())
        if status is not _ACTIVE:
            return UploadDecision(False, UploadReason(status.value), used, limits.max_files)
        if not limits.enabled:
            return UploadDecision(False, UploadReason.UPLOADS_DISABLED, used, limits.max_files)
        if size_bytes > limits.max_file_size * BYTES_PER_MB:
            return UploadDecision(False, UploadReason.FILE_TOO_LARGE, used, limits.max_files)
        if used >= limits.max_files:
            return UploadDecision(False, UploadReason.TOO_MANY_FILES, used, limits.max_files)
        used = self._uploads[record.id] = used + 1
        return UploadDecision(True, UploadReason.ALLOWED, used, limits.max_files)

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
        return self.cancel_reporting(session_id).session

    def cancel_reporting(self, session_id: str) -> Cancellation:
        """Do what :meth:`cancel` does, and say whether this call changed the session.

        Returns a :class:`~ratekeeper.Cancellation`: the session as :meth:`cancel`
        returns it, and ``changed``, true only for the call that turned it from ``active``
        into ``cancelled`` (what :meth:`Backend.cancel <ratekeeper.Backend.cancel>`
        reports).

        Raises:
            SessionNotFound: no such session.
        """
        record = self._record(session_id)
        now = self.clock.monotonic()
        changed = now < record.deadline  # not cancelled (CANCELLED_AT), not expired
        if changed:
            self._unindex(record)
            record.deadline = CANCELLED_AT
            record.times = None
            self._cancelled += 1
            self._retire(record, now)
        return Cancellation(self._snapshot(record, now), changed)

    def sweep(self, max_items: int | None = None) -> list[Expired]:
        """Flip every due session to ``expired``, report at most ``max_items``, purge old ones.

        Returns the sessions reported, earliest deadline first (sessions due in the same whole
        second in the order they were created). Every due session is flipped (off the active
        count, ``expired`` to every reader) by this call whatever ``max_items``; those beyond
        it are reported, their windows freed, by the next calls, each with the lag to its
        flip. Ended sessions whose retention is over are forgotten, at most ``max_items`` of
        them too.
        """
        return self.flip_due(max_items).expired()

    def flip_due(self, max_items: int | None = None) -> Flipped:
        """Do what :meth:`sweep` does, but report the flipped sessions lazily.

        For a sweeper that needs only counts and lags (metrics) unless someone asked to be
        told each session: :meth:`Flipped.expired` builds the values :meth:`sweep` returns.
        """
        now = self.clock.monotonic()
        flipped = self._flip_due(now, max_items)
        self._purge(now, max_items)
        return flipped

    def next_deadline(self) -> float | None:
        """Return the monotonic time at which :meth:`sweep` next has work, or ``None``.

        That is the earliest deadline, or up to 1 ms after it when the sessions of its second
        all fall due within that ms, so that they are flipped together in one step; a time
        already past while flipped sessions wait to be reported.
        """
        if self._unreported:
            return self._unreported[0].now
        bucket = self._first_bucket()
        due_at = None
        if bucket is not None:
            due_at = bucket.due_at
            if bucket.last_at - due_at <= _TOGETHER_S:
                due_at = bucket.last_at
        if self._purge_at:
            purge_at = self._purge_at[0]
            return purge_at if due_at is None else min(due_at, purge_at)
        return due_at

    def statistics(self) -> EngineStatistics:
        """Return how many sessions are active, and how many ended ones are retained."""
        expired = len(self._retired) - self._cancelled + self._unreported_count
        return EngineStatistics(self._active, expired, self._cancelled)

    # -- internals ------------------------------------------------------------------------

    def _record(self, session_id: str) -> _Record:
        record = self._by_id.get(session_id)
        if record is None:
            raise SessionNotFound(session_id)
        return record

    @staticmethod
    def _status(record: _Record, now: float) -> SessionStatus:
        deadline = record.deadline
        if now < deadline:
            return _ACTIVE
        return _CANCELLED if deadline is CANCELLED_AT else _EXPIRED

    def _snapshot(self, record: _Record, now: float) -> Session:
        return _session(record, self._status(record, now), None)

    def _first_bucket(self) -> _Bucket | None:
        """Return the bucket with the earliest deadline (heap top), dropping stale entries."""
        heap = self._heap
        buckets = self._buckets
        while heap:
            key, expires_at = heap[0]
            bucket = buckets.get(expires_at)
            if bucket is None or bucket.heap_key != key:
                heappop(heap)
                continue
            if bucket.stale:
                before = bucket.due_at
                bucket.refresh()
                if bucket.due_at != before:
                    bucket.heap_key = bucket.due_at
                    heapreplace(heap, (bucket.due_at, expires_at))
                    continue
            return bucket
        return None

    def _flip_due(self, now: float, max_items: int | None) -> Flipped:
        self._flip(now)
        limit = self._unreported_count if max_items is None else max_items
        if not self._unreported or limit <= 0:
            return Flipped([], 0, now)
        return self._report(now, limit)

    def _flip(self, now: float) -> None:
        """Flip every session due at ``now``: O(1) a bucket whose last deadline has passed."""
        heap = self._heap
        buckets = self._buckets
        unreported = self._unreported
        while True:
            bucket = self._first_bucket()
            if bucket is None or bucket.due_at > now:
                return
            if bucket.last_at <= now:
                # The whole second is due: take it off the index as it is, records untouched.
                del buckets[bucket.expires_at]
                heappop(heap)
                live = bucket.live
                self._active -= live
                self._unreported_count += live
                unreported.append(
                    _Flip(bucket.records, bucket.head, now, bucket.due_at, bucket.last_at)
                )
                continue
            # Its deadlines differ (a wall step, or jitter): flip the due ones, one by one.
            due = bucket.take_due(now)
            if due:
                deadlines = [r.deadline for r in due]
                self._active -= len(due)
                self._unreported_count += len(due)
                unreported.append(_Flip(due, 0, now, min(deadlines), max(deadlines)))
            if bucket.live == 0:
                del buckets[bucket.expires_at]
                heappop(heap)
            else:
                # What is left of it falls due later (its bounds were just recomputed).
                bucket.heap_key = bucket.due_at
                heapreplace(heap, (bucket.due_at, bucket.expires_at))

    def _report(self, now: float, limit: int) -> Flipped:
        """Report up to ``limit`` flipped sessions: free their windows and retire them, a
        batch at a time, oldest flip first (their status reads ``expired`` already)."""
        unreported = self._unreported
        segments: list[_Segment] = []
        count = 0
        while unreported and count < limit:
            flip = unreported[0]
            records = flip.records
            head = flip.head
            size = len(records)
            out: list[_Record] = []
            while head < size and count + len(out) < limit:
                end = head + limit - count - len(out)
                chunk = records[head:end]
                # Let go of them here, a batch at a time: a list holding a million records
                # dropped in one step is a 20-30 ms stall of reference-count updates on cold
                # memory (benchmarks/expiry_bench.py --only stall).
                records[head:end] = [None] * len(chunk)  # type: ignore[list-item]
                head += len(chunk)
                for record in chunk:
                    # Cancelled sessions stay in their bucket's list (a cancel is O(1)): skip.
                    if record.deadline is not CANCELLED_AT:
                        record.times = None
                        out.append(record)
            flip.head = head
            if head >= size:
                unreported.popleft()
            if out:
                segments.append((out, flip.now, flip.first, flip.last))
                count += len(out)
                self._retired.extend(out)
        if count:
            self._unreported_count -= count
            # Retained from the report, which never comes before the flip: the purge queue
            # stays in order, and no session is kept less than retention_s.
            self._purge_at.extend(repeat(now + self.retention_s, count))
            self._bound_retired()
        return Flipped(segments, count, now)

    def _unindex(self, record: _Record) -> None:
        """Take an active session off the expiry index (it stays in its bucket, skipped)."""
        self._active -= 1
        expires_at = _floor(record.created_at) + record.spec.expires_after_s
        bucket = self._buckets[expires_at]
        bucket.live -= 1
        if bucket.live == 0:
            del self._buckets[expires_at]  # its heap entry is stale now
        elif record.deadline == bucket.due_at:
            bucket.stale = True

    def _count_due(self, now: float) -> int:
        """Count active sessions due at ``now`` but not yet flipped (only at the capacity cap)."""
        due = 0
        for bucket in self._buckets.values():
            if bucket.due_at > now:
                continue
            if bucket.last_at <= now:
                due += bucket.live
            else:
                records = bucket.records[bucket.head :]
                due += sum(1 for r in records if CANCELLED_AT is not r.deadline <= now)
        return due

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

    def _purge(self, now: float, limit: int | None) -> None:
        """Forget up to ``limit`` ended sessions whose retention is over (all: ``None``).

        Bounded like a report: a whole second's sessions reach the end of their retention
        together, and forgetting 25,000 of them (each a cold record, id and window to free)
        in one step would hold the event loop for 10-20 ms.
        """
        retired = self._retired
        purge_at = self._purge_at
        left = len(purge_at) if limit is None else limit
        while left > 0 and purge_at and purge_at[0] <= now:
            purge_at.popleft()
            self._forget(retired.popleft())
            left -= 1

    def _forget(self, record: _Record) -> None:
        del self._by_id[record.id]
        if self._uploads:
            self._uploads.pop(record.id, None)
        if record.deadline is CANCELLED_AT:
            self._cancelled -= 1

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"Engine(clock={self.clock!r}, active={stats.active}, "
            f"expired={stats.expired}, cancelled={stats.cancelled})"
        )
