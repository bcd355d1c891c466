"""Value objects shared by every layer: sessions and their specs, decisions, and what the
backends report."""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, NamedTuple, TypedDict

from ._params import (
    MAX_EXPIRES_AFTER_S,
    MAX_FILE_SIZE_MB,
    MAX_JSON_INT,
    check_bool,
    check_int,
    check_type,
)

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
        spec: what the session was created with (:class:`SessionSpec`): its lifetime, rate
            limit, ChatKit configuration, workflow and attributes. Its limits are also read
            as the properties below.
        client_secret: the secret, present only on the value returned by session creation;
            ratekeeper keeps only its hash. Never shown in ``repr``.
    """

    id: str
    user: str
    status: SessionStatus
    expires_at: int
    created_at: float
    spec: SessionSpec
    client_secret: str | None = field(default=None, repr=False, compare=False)

    @property
    def max_requests_per_1_minute(self) -> int:
        """The session's rate limit (``spec.max_requests_per_1_minute``)."""
        return self.spec.max_requests_per_1_minute

    @property
    def file_upload(self) -> FileUploadLimits:
        """The session's resolved upload limits (``spec.file_upload``)."""
        return self.spec.file_upload

    @property
    def history(self) -> HistoryLimits:
        """The session's resolved history limits (``spec.history``)."""
        return self.spec.history

    @property
    def attributes(self) -> Mapping[str, Any]:
        """The application's data stored with the session (``spec.attributes``; ``{}``: none)."""
        return self.spec.attributes or _NO_ATTRIBUTES


# -- what a session is created with ---------------------------------------------------------

_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
_DEFAULT_FILE_UPLOAD = FileUploadLimits()
_DEFAULT_HISTORY = HistoryLimits()


@dataclass(frozen=True, slots=True)
class Workflow:
    """ChatKit's ``workflow`` of a session: which workflow, pinned how, with which variables.

    The service fills it from the create-session body; the guarded ChatKit endpoint reads it
    (``context.session.spec.workflow``) to pick what serves the session.

    Attributes:
        id: the workflow's id.
        version: the version the session is pinned to; ``None``: the current one.
        state_variables: values handed to the workflow (strings, numbers, booleans), or
            ``None``.
        tracing_enabled: ``workflow.tracing.enabled``.
    """

    id: str
    version: str | None = None
    state_variables: Mapping[str, str | int | float | bool] | None = None
    tracing_enabled: bool = True


class SessionOptions(TypedDict, total=False):
    """The fields of a :class:`SessionSpec` as keywords: ``create_session``'s convenience form.

    ``engine.create_session("u", max_requests_per_1_minute=5)`` stands for the spec these
    keywords describe (:func:`keyword_spec`); keywords left out, or ``None``, take the spec's
    defaults.
    """

    expires_after_s: int | None
    max_requests_per_1_minute: int | None
    file_upload: FileUploadLimits | None
    history: HistoryLimits | None
    workflow: Workflow | None
    automatic_thread_titling: bool | None
    attributes: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True, init=False)
class SessionSpec:
    """What a session is created with: one value, validated once, passed through every layer.

    Every ``create_session`` (engine, backends, gate) takes one, as httpx's client takes a
    ``Timeout``; none of them validates it again. Build a spec once and pass it to every
    creation (the cheapest form), or pass its fields as keywords instead
    (``create_session("u", expires_after_s=60)``), which stand for the spec they describe.

    Args:
        expires_after_s: lifetime in seconds (``expires_after.seconds``, 1..600).
        max_requests_per_1_minute: admitted requests allowed in any 60 s window (>= 1).
        file_upload: ``chatkit_configuration.file_upload``.
        history: ``chatkit_configuration.history``.
        workflow: the ChatKit workflow; ``None`` for sessions that have none (the library's).
        automatic_thread_titling: ``chatkit_configuration.automatic_thread_titling.enabled``.
        attributes: the application's own JSON-able data, stored with the session as it is
            (copied here; ``None`` or empty: none).

    Raises:
        InvalidParameter: a value is of the wrong type or out of range; the error names it
            by its path in ChatKit's create-session body (``expires_after.seconds``).

    Immutable, so one spec is safe to share across sessions, tasks and threads.
    """

    expires_after_s: int
    max_requests_per_1_minute: int
    file_upload: FileUploadLimits
    history: HistoryLimits
    workflow: Workflow | None
    automatic_thread_titling: bool
    attributes: Mapping[str, Any] | None

    # Hand-written rather than generated: the generated __init__ of a frozen dataclass sets
    # each field through object.__setattr__ and costs twice as much, and the keyword form of
    # create_session builds a spec per call. dataclasses.replace() still works through it.
    def __init__(
        self,
        expires_after_s: int = MAX_EXPIRES_AFTER_S,
        max_requests_per_1_minute: int = 10,
        file_upload: FileUploadLimits = _DEFAULT_FILE_UPLOAD,
        history: HistoryLimits = _DEFAULT_HISTORY,
        workflow: Workflow | None = None,
        automatic_thread_titling: bool = True,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        _set_expires_after_s(self, expires_after_s)
        _set_max_requests_per_1_minute(self, max_requests_per_1_minute)
        _set_file_upload(self, file_upload)
        _set_history(self, history)
        _set_workflow(self, workflow)
        _set_automatic_thread_titling(self, automatic_thread_titling)
        # A copy: the caller's dict may change afterwards; the spec may not.
        _set_attributes(self, dict(attributes) or None if attributes is not None else None)
        # The fast path: one expression that accepts only what _check_spec accepts (exact
        # types, the same bounds), so a valid spec costs a fraction of running every check.
        if not (
            type(expires_after_s) is int
            and 1 <= expires_after_s <= MAX_EXPIRES_AFTER_S
            and type(max_requests_per_1_minute) is int
            and 1 <= max_requests_per_1_minute <= MAX_JSON_INT
            and (file_upload is _DEFAULT_FILE_UPLOAD or _file_upload_ok(file_upload))
            and (history is _DEFAULT_HISTORY or _history_ok(history))
            and (workflow is None or type(workflow) is Workflow)
            and type(automatic_thread_titling) is bool
        ):
            _check_spec(self)


(
    _set_expires_after_s,
    _set_max_requests_per_1_minute,
    _set_file_upload,
    _set_history,
    _set_workflow,
    _set_automatic_thread_titling,
    _set_attributes,
) = (getattr(SessionSpec, f.name).__set__ for f in fields(SessionSpec))


def _check_spec(spec: SessionSpec) -> None:
    """Run every check in body order; raise :class:`InvalidParameter` on the first."""
    check_int(spec.expires_after_s, "expires_after.seconds", minimum=1, maximum=MAX_EXPIRES_AFTER_S)
    check_int(
        spec.max_requests_per_1_minute,
        "rate_limits.max_requests_per_1_minute",
        minimum=1,
        maximum=MAX_JSON_INT,
    )
    upload = check_type(
        spec.file_upload,
        "chatkit_configuration.file_upload",
        FileUploadLimits,
        "a FileUploadLimits",
    )
    check_bool(upload.enabled, "chatkit_configuration.file_upload.enabled")
    check_int(
        upload.max_file_size,
        "chatkit_configuration.file_upload.max_file_size",
        minimum=1,
        maximum=MAX_FILE_SIZE_MB,
    )
    check_int(
        upload.max_files,
        "chatkit_configuration.file_upload.max_files",
        minimum=1,
        maximum=MAX_JSON_INT,
    )
    limits = check_type(
        spec.history, "chatkit_configuration.history", HistoryLimits, "a HistoryLimits"
    )
    check_bool(limits.enabled, "chatkit_configuration.history.enabled")
    if limits.recent_threads is not None:
        check_int(
            limits.recent_threads,
            "chatkit_configuration.history.recent_threads",
            minimum=1,
            maximum=MAX_JSON_INT,
        )
    if spec.workflow is not None:
        check_type(spec.workflow, "workflow", Workflow, "a Workflow")
    check_bool(
        spec.automatic_thread_titling, "chatkit_configuration.automatic_thread_titling.enabled"
    )


def _file_upload_ok(limits: Any) -> bool:
    """Whether ``limits`` passes :func:`_check_spec` (exact types only)."""
    return (
        type(limits) is FileUploadLimits
        and type(limits.enabled) is bool
        and type(limits.max_file_size) is int
        and 1 <= limits.max_file_size <= MAX_FILE_SIZE_MB
        and type(limits.max_files) is int
        and 1 <= limits.max_files <= MAX_JSON_INT
    )


def _history_ok(limits: Any) -> bool:
    """Whether ``limits`` passes :func:`_check_spec` (exact types only)."""
    recent = limits.recent_threads if type(limits) is HistoryLimits else 0
    return (
        type(limits) is HistoryLimits
        and type(limits.enabled) is bool
        and (recent is None or (type(recent) is int and 1 <= recent <= MAX_JSON_INT))
    )


#: The spec of a session created without one: ChatKit's defaults (600 s, 10 a minute).
DEFAULT_SPEC = SessionSpec()


# Specs built from keywords that give at most a lifetime, a rate limit, upload and history
# limits: each is built and validated once, then shared, so the keyword form costs about what
# passing a spec does, and a million sessions created alike hold one spec, not a million. Keyed
# by the limits' identity (each is alive as long as the spec that holds it is stored here) and
# by exact ints (or None) only, so an equal True or 600.0 never finds the spec of 1 or 600.
# Bounded: past the bound, specs are built per call. Lookups and inserts are thread-safe.
_SHARED_SPECS: dict[tuple[int | None, int | None, int | None, int | None], SessionSpec] = {
    (None, None, None, None): DEFAULT_SPEC
}
_MAX_SHARED_SPECS = 1024


def keep_shared_spec(specs: dict[Any, SessionSpec], key: Hashable, spec: SessionSpec) -> None:
    """Keep ``spec`` in a table of shared specs under ``key``, unless the table is full.

    The one policy of every such table (the keywords' here, the service's by workflow): at
    most :data:`_MAX_SHARED_SPECS` entries, and past that specs are built per call, so memory
    stays bounded whatever callers send, and a spec once shared stays shared.
    """
    if len(specs) < _MAX_SHARED_SPECS:
        specs[key] = spec


def keyword_spec(
    expires_after_s: int | None,
    max_requests_per_1_minute: int | None,
    file_upload: FileUploadLimits | None,
    history: HistoryLimits | None,
    workflow: Workflow | None,
    automatic_thread_titling: bool | None,
    attributes: Mapping[str, Any] | None,
    /,
) -> SessionSpec:
    """Return the spec ``create_session``'s keywords describe; ``None`` stands for a default.

    Raises:
        InvalidParameter: a value is of the wrong type or out of range.
    """
    if (
        workflow is None
        and automatic_thread_titling is None
        and not attributes
        and (expires_after_s is None or type(expires_after_s) is int)
        and (max_requests_per_1_minute is None or type(max_requests_per_1_minute) is int)
    ):
        key = (
            expires_after_s,
            max_requests_per_1_minute,
            None if file_upload is None else id(file_upload),
            None if history is None else id(history),
        )
        shared = _SHARED_SPECS.get(key)
        if shared is None:
            shared = SessionSpec(
                MAX_EXPIRES_AFTER_S if expires_after_s is None else expires_after_s,
                10 if max_requests_per_1_minute is None else max_requests_per_1_minute,
                _DEFAULT_FILE_UPLOAD if file_upload is None else file_upload,
                _DEFAULT_HISTORY if history is None else history,
            )
            keep_shared_spec(_SHARED_SPECS, key, shared)
        return shared
    return SessionSpec(
        MAX_EXPIRES_AFTER_S if expires_after_s is None else expires_after_s,
        10 if max_requests_per_1_minute is None else max_requests_per_1_minute,
        _DEFAULT_FILE_UPLOAD if file_upload is None else file_upload,
        _DEFAULT_HISTORY if history is None else history,
        workflow,
        True if automatic_thread_titling is None else automatic_thread_titling,
        attributes,
    )


def resolve_spec(spec: SessionSpec | None, options: SessionOptions) -> SessionSpec:
    """Return the spec a ``create_session(user, spec, **options)`` call asks for.

    ``spec`` as it is (validated when it was built), or the spec the keywords describe
    (:func:`keyword_spec`; :data:`DEFAULT_SPEC` when there are none).

    Raises:
        TypeError: both a spec and keywords were given, or ``spec`` is not a ``SessionSpec``.
        InvalidParameter: a keyword's value is of the wrong type or out of range.
    """
    if spec is None:
        if not options:
            return DEFAULT_SPEC
        unknown = options.keys() - SessionOptions.__optional_keys__
        if unknown:
            raise TypeError(f"create_session() got unexpected keyword arguments {sorted(unknown)}")
        return keyword_spec(
            options.get("expires_after_s"),
            options.get("max_requests_per_1_minute"),
            options.get("file_upload"),
            options.get("history"),
            options.get("workflow"),
            options.get("automatic_thread_titling"),
            options.get("attributes"),
        )
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise TypeError(
            "create_session() takes a SessionSpec or its fields as keywords, not both "
            f"(got spec and {', '.join(given)}); use dataclasses.replace(spec, ...)"
        )
    if not isinstance(spec, SessionSpec):
        raise TypeError(f"spec must be a SessionSpec, not {type(spec).__name__}")
    return spec
