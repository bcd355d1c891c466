"""Value objects shared by every layer: sessions, decisions and what the backends report."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Length of the sliding window behind ``max_requests_per_1_minute``, in seconds.
WINDOW_S = 60.0

#: ``retry_after`` of a decision that no amount of waiting will turn into an admission.
INFINITY = math.inf


class SessionStatus(enum.StrEnum):
    """A session's lifecycle state, spelled as in ChatKit's ``status`` field."""

    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class Reason(enum.StrEnum):
    """Why a :class:`Decision` came out the way it did."""

    ALLOWED = "allowed"
    RATE_LIMITED = "rate_limited"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNKNOWN_SESSION = "unknown_session"


class Decision(NamedTuple):
    """The outcome of one admission attempt. A value, never an exception.

    A ``NamedTuple`` rather than a frozen dataclass: it is immutable all the same, and building
    one costs a seventh of a frozen dataclass on the hot path (measured in
    ``benchmarks/test_engine_bench.py``).

    Attributes:
        allowed: whether the request was admitted (and counted).
        reason: one of :class:`Reason`.
        limit: the session's ``max_requests_per_1_minute`` (0 for an unknown session).
        remaining: admissions still available in the current window, after this one.
        retry_after: seconds until a request could next be admitted: 0 when allowed,
            ``math.inf`` when the session is expired, cancelled or unknown.
        reset_after: seconds until the window holds no admission at all.
        session_id: the session decided on (``None`` for an unknown secret); never the secret.
    """

    allowed: bool
    reason: Reason
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class FileUploadLimits:
    """ChatKit's ``chatkit_configuration.file_upload``, resolved.

    Attributes:
        enabled: whether uploads are allowed at all.
        max_file_size: largest file, in megabytes (1..512).
        max_files: most files one session may upload (>= 1).
    """

    enabled: bool = False
    max_file_size: int = 512
    max_files: int = 10


@dataclass(frozen=True, slots=True)
class HistoryLimits:
    """ChatKit's ``chatkit_configuration.history``, resolved.

    Attributes:
        enabled: whether the user may list earlier threads.
        recent_threads: how many of the most recent threads are visible (``None``: all).
    """

    enabled: bool = True
    recent_threads: int | None = None


class UploadReason(enum.StrEnum):
    """Why an :class:`UploadDecision` came out the way it did."""

    ALLOWED = "allowed"
    UPLOADS_DISABLED = "uploads_disabled"
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_FILES = "too_many_files"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNKNOWN_SESSION = "unknown_session"


class UploadDecision(NamedTuple):
    """The outcome of reserving one file upload against a session's ``file_upload`` limits.

    Attributes:
        allowed: whether the upload may proceed (and was counted).
        reason: one of :class:`UploadReason` (a ``str`` enum, so it compares equal to
            ``"file_too_large"`` and the like).
        files_used: files counted against the session after this decision.
        max_files: the session's ``max_files``.
    """

    allowed: bool
    reason: UploadReason
    files_used: int
    max_files: int


class Cancellation(NamedTuple):
    """What :meth:`Backend.cancel <ratekeeper.Backend.cancel>` did.

    Attributes:
        session: the session as it stands after the call (``cancelled``, or ``expired`` if
            its time had already come).
        changed: whether *this* call turned it from ``active`` into ``cancelled``; of any
            number of concurrent cancels of one session (in any process), exactly one says so.
    """

    session: Session
    changed: bool


class Admission(NamedTuple):
    """One decision, with the session it admitted (see ``Backend.admit_session``).

    Attributes:
        decision: the decision, exactly as ``Backend.admit`` returns it (counted if admitted).
        session: the session as of the decision when it was admitted (``status == "active"``,
            its limits and attributes, never its secret); ``None`` when refused.
    """

    decision: Decision
    session: Session | None


@dataclass(frozen=True, slots=True)
class CircuitStatistics:
    """A backend's circuit breaker as of now (see ``CircuitBreaking``).

    Attributes:
        open: whether the backend answers every call at once with ``BackendError``.
        opened: times the circuit opened.
        closed: times it closed again (a probe, or a late answer, reached the backend).
        rejected: calls answered at once, without reaching the backend, while open.
    """

    open: bool
    opened: int
    closed: int
    rejected: int


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
    """Counts of the sessions a backend holds right now (as it can know them).

    Attributes:
        active: sessions not yet flipped (a due session counts until the sweep flips it).
        expired: expired sessions kept for their retention period.
        cancelled: cancelled sessions kept for their retention period.
    """

    active: int
    expired: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class Session:
    """A snapshot of one session, as of the moment it was read.

    Attributes:
        id: the session id (``cksess_…``).
        user: the end user the session belongs to.
        status: lifecycle state as of the read.
        expires_at: integer Unix time at which the session expires.
        created_at: wall-clock Unix time of creation.
        max_requests_per_1_minute: the session's rate limit.
        file_upload: resolved upload limits.
        history: resolved history limits.
        attributes: opaque JSON-able data stored with the session (the service keeps the
            workflow and the rest of ``chatkit_configuration`` here).
        client_secret: the secret, present only on the value returned by session creation;
            ratekeeper keeps only its hash. Never shown in ``repr``.
    """

    id: str
    user: str
    status: SessionStatus
    expires_at: int
    created_at: float
    max_requests_per_1_minute: int
    file_upload: FileUploadLimits = FileUploadLimits()
    history: HistoryLimits = HistoryLimits()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    client_secret: str | None = field(default=None, repr=False, compare=False)
