"""Development mode (``ratekeeper serve --dev``): time travel, fault injection, a request log.

For the tests of apps built on the service; :mod:`ratekeeper.testing` and its pytest fixtures
drive these routes. They exist only when ``settings.dev`` is set: without it each one is a 404
and nothing can move the clock. Each takes the service's API key, like the REST surface (no
``OpenAI-Beta`` header: they are not OpenAI's)::

    GET    /ratekeeper/dev/clock             the service's clock
    POST   /ratekeeper/dev/clock/advance     {"seconds": N}: move it forward; sessions that fell
                                             due are expired (flipped, counted) before it answers
    GET    /ratekeeper/dev/faults            the faults still pending
    POST   /ratekeeper/dev/faults            inject one (below)
    DELETE /ratekeeper/dev/faults            clear them all
    GET    /ratekeeper/dev/requests?limit=N  the last N requests answered, newest last
    DELETE /ratekeeper/dev/requests          forget them

A fault is ``{"outcome": …, "session_id": "cksess_…", "count": N}``: the next ``N`` (default 1)
admissions of that session (of any session when ``session_id`` is left out) answer
``rate_limited`` (429, ``"retry_after_s"`` default 1), ``expired`` or ``cancelled`` (401), or
``backend_unavailable`` (what a backend failure gives: 503, or admitted under ``--fail-open``),
or first wait ``"delay_ms"`` (``latency``) and then get the real answer. The answers are built by
the very functions that build real ones (:func:`~ratekeeper.ratelimit_headers.verdict_for`), so
status, headers and body are the real ones; and they are given on every path that admits
through the gate (``/chatkit``, ``/ratekeeper/admit``, the ASGI middleware). An injected refusal
counts no request against the session and is counted in ``ratekeeper_decisions_total`` under its
own ``outcome`` (``injected_rate_limited``, …: :data:`~ratekeeper.metrics.INJECTED_OUTCOMES`),
never under a real one. Secrets that match no session are never faulted.

The clock of a ``--dev`` service is the system clock plus an offset that only grows
(:class:`OffsetClock`), or the :class:`~ratekeeper.clock.ManualClock` the app was built with
(:func:`ratekeeper.testing.serve`): time travel needs the in-memory backend, since on Redis the
sessions' time is the Redis server's ``TIME``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._params import check_enum, check_int, check_known, check_str, require, type_name
from ..backend import Backend, MemoryBackend
from ..clock import Clock, SystemClock
from ..engine import Engine
from ..errors import BackendError, InvalidParameter
from ..gate import FAIL_OPEN_DECISION, Gate
from ..metrics import INJECTED_OUTCOMES
from ..ratelimit_headers import Verdict, backend_unavailable_verdict, fail_open_verdict, verdict_for
from ..types import INFINITY, Decision, Reason, Session
from .bodies import read_json
from .context import ServiceContext
from .responses import ApiError
from .settings import MAX_RETENTION_S, ServerSettings, SettingsError

__all__ = (
    "DEV_PREFIX",
    "FAULT_OUTCOMES",
    "AdvancingClock",
    "DevGate",
    "DevTools",
    "Fault",
    "FaultTable",
    "OffsetClock",
    "RecentRequests",
    "dev_announcement",
)

#: Where the development routes live.
DEV_PREFIX = "/ratekeeper/dev"
#: The ``outcome`` values a fault may have.
FAULT_OUTCOMES = ("rate_limited", "expired", "cancelled", "backend_unavailable", "latency")
#: Most admissions one fault may apply to, and the longest latency it may add.
MAX_FAULT_COUNT = 1_000_000
MAX_DELAY_MS = 60_000
#: Requests the log keeps (the oldest are dropped first).
REQUEST_LOG_SIZE = 1000
_REASONS = {
    "rate_limited": Reason.RATE_LIMITED,
    "expired": Reason.EXPIRED,
    "cancelled": Reason.CANCELLED,
}
_FAULT_KEYS = ("outcome", "session_id", "count", "delay_ms", "retry_after_s")


@runtime_checkable
class AdvancingClock(Clock, Protocol):
    """A :class:`~ratekeeper.clock.Clock` that a test can move forward: a
    :class:`~ratekeeper.clock.ManualClock` or an :class:`OffsetClock`."""

    def advance(self, seconds: float) -> None:
        """Move wall and monotonic time forward by ``seconds`` (>= 0)."""
        ...


class OffsetClock:
    """Another clock (the system's by default) plus an offset that only grows.

    Time runs as usual, and :meth:`advance` makes it jump forward: ``ratekeeper serve --dev``
    runs on one, so a developer's sessions still expire and windows still slide on their own.
    Reads go through the base clock, so :mod:`ratekeeper.clock` stays the only module that
    reads time.

    Not thread-safe: advance it from the event loop that reads it (the dev route does).
    """

    __slots__ = ("_base", "offset")

    def __init__(self, base: Clock | None = None) -> None:
        self._base: Clock = base if base is not None else SystemClock()
        #: Seconds added so far by :meth:`advance`.
        self.offset = 0.0

    def time(self) -> float:
        """Return the base clock's wall time plus the offset."""
        return self._base.time() + self.offset

    def monotonic(self) -> float:
        """Return the base clock's monotonic time plus the offset."""
        return self._base.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        """Add ``seconds`` (must not be negative) to the offset."""
        if not seconds >= 0:  # also refuses NaN
            raise ValueError(f"a clock cannot go backwards (advance by {seconds!r})")
        self.offset += seconds

    def __repr__(self) -> str:
        return f"OffsetClock({self._base!r}, offset={self.offset!r})"


# -- faults --------------------------------------------------------------------------------


@dataclass(slots=True)
class Fault:
    """One injected fault, as :class:`FaultTable` holds it.

    Attributes:
        outcome: one of :data:`FAULT_OUTCOMES`.
        session_id: the session it applies to; ``None``: any session.
        count: admissions it still applies to.
        delay_ms: the latency added (``latency`` only).
        retry_after_s: the wait a ``rate_limited`` answer gives.
    """

    outcome: str
    session_id: str | None = None
    count: int = 1
    delay_ms: int = 0
    retry_after_s: float = 1.0

    def as_json(self) -> dict[str, Any]:
        """Return the fault as the dev routes show it."""
        shown: dict[str, Any] = {
            "object": "ratekeeper.dev.fault",
            "outcome": self.outcome,
            "session_id": self.session_id,
            "count": self.count,
        }
        if self.outcome == "latency":
            shown["delay_ms"] = self.delay_ms
        if self.outcome == "rate_limited":
            shown["retry_after_s"] = self.retry_after_s
        return shown


class FaultTable:
    """The faults still pending, oldest first; each admission takes from the first that fits.

    Not thread-safe: the service's event loop owns it.
    """

    __slots__ = ("_faults",)

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def __bool__(self) -> bool:
        return bool(self._faults)

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind the ones already pending."""
        self._faults.append(fault)

    def clear(self) -> int:
        """Drop every pending fault; return how many there were."""
        count = len(self._faults)
        self._faults.clear()
        return count

    def pending(self) -> list[Fault]:
        """Return the pending faults, oldest first (copies)."""
        return [
            Fault(f.outcome, f.session_id, f.count, f.delay_ms, f.retry_after_s)
            for f in self._faults
        ]

    def take(self, session_id: str) -> Fault | None:
        """Use one admission of the oldest fault for ``session_id`` (or for any session)."""
        for index, fault in enumerate(self._faults):
            if fault.session_id is None or fault.session_id == session_id:
                fault.count -= 1
                if fault.count <= 0:
                    del self._faults[index]
                return fault
        return None


def parse_fault(body: Any) -> Fault:
    """Validate a ``POST /ratekeeper/dev/faults`` body.

    Raises:
        InvalidParameter: naming the parameter, with OpenAI's error codes.
    """
    if not isinstance(body, dict):
        raise InvalidParameter(
            f"Invalid type for request body: expected an object, but got {type_name(body)} "
            "instead.",
            code="invalid_type",
        )
    check_known(body, "", _FAULT_KEYS)
    outcome = check_enum(require(body, "outcome", ""), "outcome", FAULT_OUTCOMES)
    session_id = body.get("session_id")
    if session_id is not None:
        session_id = check_str(session_id, "session_id", min_length=1, max_length=128)
        if not session_id.startswith("cksess_"):
            raise InvalidParameter(
                "Invalid 'session_id': expected a session id (cksess_…). Faults name the "
                "session, never its client secret.",
                param="session_id",
                code="invalid_value",
            )
    count = check_int(body.get("count", 1), "count", minimum=1, maximum=MAX_FAULT_COUNT)
    fault = Fault(outcome, session_id, count)
    if outcome == "latency":
        fault.delay_ms = check_int(
            require(body, "delay_ms", ""), "delay_ms", minimum=0, maximum=MAX_DELAY_MS
        )
    elif "delay_ms" in body:
        raise InvalidParameter(
            "'delay_ms' applies to the 'latency' outcome only.",
            param="delay_ms",
            code="unknown_parameter",
        )
    if "retry_after_s" in body:
        if outcome != "rate_limited":
            raise InvalidParameter(
                "'retry_after_s' applies to the 'rate_limited' outcome only.",
                param="retry_after_s",
                code="unknown_parameter",
            )
        fault.retry_after_s = _seconds(body["retry_after_s"], "retry_after_s", 0.001, 60.0)
    return fault


def _seconds(value: Any, param: str, minimum: float, maximum: float) -> float:
    """Return ``value`` if it is a JSON number from ``minimum`` to ``maximum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected a number, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    if not (math.isfinite(value) and minimum <= value <= maximum):
        raise InvalidParameter(
            f"Invalid '{param}': expected a number of seconds from {minimum:g} to "
            f"{maximum:g}, but got {value!r} instead.",
            param=param,
            code="invalid_value",
        )
    return float(value)


# -- the request log -----------------------------------------------------------------------


class _Entry:
    """What the log learns about one request while it is served (no secret ever goes in)."""

    __slots__ = ("injected", "outcome", "session_id")

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.outcome: str | None = None
        self.injected: str | None = None


_current: ContextVar[_Entry | None] = ContextVar("ratekeeper_dev_request", default=None)


def _note(session_id: str | None, outcome: str | None, injected: str | None = None) -> None:
    entry = _current.get()
    if entry is None:
        return
    if session_id is not None:
        entry.session_id = session_id
    if outcome is not None:
        entry.outcome = outcome
    if injected is not None:
        entry.injected = injected


class RecentRequests:
    """The last :data:`REQUEST_LOG_SIZE` requests answered, as plain dicts, oldest first.

    Each holds ``method``, ``route`` (the path template, ``"unmatched"`` when no route
    matched), ``status``, ``session_id``, ``outcome`` (the admission's reason, ``None`` where
    nothing was admitted), ``injected`` (the fault applied, if any) and ``request_id``. Never
    a secret, a raw path or a body. The dev routes' own requests are left out.

    Not thread-safe: the service's event loop owns it.
    """

    __slots__ = ("_entries",)

    def __init__(self, size: int = REQUEST_LOG_SIZE) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def append(self, entry: dict[str, Any]) -> None:
        """Log one request (dropping the oldest when full)."""
        self._entries.append(entry)

    def last(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return the last ``limit`` entries (all when ``None``), newest last."""
        entries = list(self._entries)
        return entries if limit is None else entries[-limit:] if limit else []

    def clear(self) -> int:
        """Forget every entry; return how many there were."""
        count = len(self._entries)
        self._entries.clear()
        return count


class RecentRequestsMiddleware:
    """Pure ASGI middleware filling :class:`RecentRequests` (inside ``RequestIdMiddleware``).

    A request is logged when its response starts (a stream is in the log before it ends), or
    as a 500 when the app raised first. Other scope types pass through.
    """

    def __init__(self, app: ASGIApp, log: RecentRequests) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a fresh entry in the context; log it when the response starts."""
        if scope["type"] != "http" or scope["path"].startswith(DEV_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        entry = _Entry()
        logged = False

        def record(status: int) -> None:
            route = getattr(scope.get("route"), "path", None)
            self.log.append(
                {
                    "method": scope["method"],
                    "route": route if isinstance(route, str) else "unmatched",
                    "status": status,
                    "session_id": entry.session_id,
                    "outcome": entry.outcome,
                    "injected": entry.injected,
                    "request_id": scope.get("ratekeeper.request_id"),
                }
            )

        async def send_logged(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start" and not logged:
                logged = True
                record(int(message["status"]))
            await send(message)

        token = _current.set(entry)
        try:
            await self.app(scope, receive, send_logged)
        finally:
            _current.reset(token)
            if not logged:
                record(500)


# -- the gate that injects -----------------------------------------------------------------


class DevGate(Gate):
    """A :class:`~ratekeeper.gate.Gate` that answers from its :class:`FaultTable` first.

    Takes the arguments of :class:`~ratekeeper.gate.Gate`, plus ``faults``. :meth:`check`
    and :meth:`admit` (hence ``enter``, ``guard``, the middleware, ``/chatkit`` and
    ``/ratekeeper/admit``) consult the table before the backend; everything else is the
    gate's own. With no fault pending it costs one truth test per admission. Not thread-safe,
    like the gate.
    """

    def __init__(self, backend: Backend | Engine, *, faults: FaultTable, **options: Any) -> None:
        super().__init__(backend, **options)
        self.faults = faults
        decisions = self.metrics.decisions
        self._injected_outcome = {
            name: decisions.labels(outcome=name) for name in INJECTED_OUTCOMES
        }

    async def _fault_for(self, client_secret: str) -> tuple[Fault, Session] | None:
        try:
            session = await self.backend.lookup(client_secret)
        except BackendError:
            return None  # the real admission meets the same failure and answers it
        if session is None:
            return None
        fault = self.faults.take(session.id)
        return None if fault is None else (fault, session)

    def _injected_decision(self, fault: Fault, session: Session) -> Decision:
        limit = session.max_requests_per_1_minute
        if fault.outcome == "rate_limited":
            wait = fault.retry_after_s
            return Decision(False, Reason.RATE_LIMITED, limit, 0, wait, wait, session.id)
        # As window.terminal_decision builds them.
        return Decision(False, _REASONS[fault.outcome], limit, 0, INFINITY, 0.0, session.id)

    async def check(self, client_secret: str | None) -> Verdict:
        """Like :meth:`Gate.check <ratekeeper.gate.Gate.check>`, a pending fault first."""
        if client_secret and self.faults:
            hit = await self._fault_for(client_secret)
            if hit is not None:
                fault, session = hit
                _note(session.id, None, fault.outcome)
                if fault.outcome == "latency":
                    await anyio.sleep(fault.delay_ms / 1000)
                else:
                    self._injected_outcome["injected_" + fault.outcome].inc()
                    if fault.outcome != "backend_unavailable":
                        decision = self._injected_decision(fault, session)
                        _note(None, decision.reason)
                        return verdict_for(decision)
                    _note(None, "backend_unavailable")
                    if self.fail_open:
                        return fail_open_verdict(FAIL_OPEN_DECISION)
                    return backend_unavailable_verdict()
        verdict = await super().check(client_secret)
        made = verdict.decision
        if made is not None:
            _note(made.session_id, made.reason)
        else:
            _note(None, "missing_secret" if not client_secret else "backend_unavailable")
        return verdict

    async def admit(self, client_secret: str) -> Decision:
        """Like :meth:`Gate.admit <ratekeeper.gate.Gate.admit>`, a pending fault first.

        Raises:
            BackendError: the backend failed (or a ``backend_unavailable`` fault says so) and
                the gate fails closed.
        """
        if client_secret and self.faults:
            hit = await self._fault_for(client_secret)
            if hit is not None:
                fault, session = hit
                _note(session.id, None, fault.outcome)
                if fault.outcome == "latency":
                    await anyio.sleep(fault.delay_ms / 1000)
                else:
                    self._injected_outcome["injected_" + fault.outcome].inc()
                    if fault.outcome != "backend_unavailable":
                        return self._injected_decision(fault, session)
                    if self.fail_open:
                        return FAIL_OPEN_DECISION
                    raise BackendError("injected fault: backend_unavailable")
        decision = await super().admit(client_secret)
        _note(decision.session_id, decision.reason)
        return decision

    async def create_session(self, user: str, **options: Any) -> Session:
        """Like :meth:`Gate.create_session <ratekeeper.gate.Gate.create_session>`; logged."""
        session = await super().create_session(user, **options)
        _note(session.id, None)
        return session

    async def cancel(self, session_id: str) -> Session:
        """Like :meth:`Gate.cancel <ratekeeper.gate.Gate.cancel>`; logged."""
        session = await super().cancel(session_id)
        _note(session.id, None)
        return session


# -- the routes ----------------------------------------------------------------------------


#: Said at start, loudly, by ``ratekeeper serve --dev`` (logged by ``app_from_env``).
DEV_WARNING = (
    "ratekeeper: DEVELOPMENT MODE (--dev). Anyone with the API key can move this service's "
    f"clock ({DEV_PREFIX}/clock/advance), make it refuse requests ({DEV_PREFIX}/faults) and "
    f"list recent requests ({DEV_PREFIX}/requests). Sessions live in memory. For tests only: "
    "never run this in production."
)


def dev_announcement(settings: ServerSettings) -> str:
    """Return the start-up banner of a ``--dev`` service."""
    rule = "*" * 78
    lines = [rule, DEV_WARNING]
    if settings.dev_allow_remote:
        lines.append(
            f"ratekeeper: --dev-allow-remote: listening on {settings.host}, so these routes "
            "may be reachable from other machines."
        )
    lines.append(rule)
    return "\n".join(lines)


class DevTools:
    """The parts of development mode: the clock, the fault table, the request log, routes.

    Build with :meth:`build` (``create_app`` does, when ``settings.dev`` is set). Not
    thread-safe: the service's event loop owns it.

    Attributes:
        clock: the clock the service runs on, which ``/clock/advance`` moves.
        gate: the service's gate (a :class:`DevGate`).
        requests: the request log.
        advanced_s: seconds the clock was moved forward in all.
    """

    def __init__(self, clock: AdvancingClock, gate: DevGate, max_body_bytes: int) -> None:
        self.clock = clock
        self.gate = gate
        self.requests = RecentRequests()
        self.advanced_s = 0.0
        self._max_body_bytes = max_body_bytes

    @classmethod
    def build(
        cls,
        settings: ServerSettings,
        *,
        gate: Gate | None,
        backend: Backend | Engine | None,
        clock: Clock | None,
        registry: CollectorRegistry | None,
        max_sessions: int,
    ) -> DevTools:
        """Build the clock (when not given), the engine (when not given) and the gate.

        Raises:
            SettingsError: a gate was given (development mode brings its own), a backend that
                is not in memory, or a clock that cannot be advanced.
            ValueError: the engine given runs on another clock than ``clock``.
        """
        if gate is not None:
            raise SettingsError(
                "--dev builds its own gate (it injects faults): pass backend=, not gate="
            )
        if backend is None:
            clock = clock if clock is not None else OffsetClock()
            engine = Engine(clock, retention_s=settings.retention_s, max_sessions=max_sessions)
        elif isinstance(backend, Engine):
            engine = backend
        elif isinstance(backend, MemoryBackend):
            engine = backend.engine
        else:
            raise SettingsError(
                "--dev needs the in-memory backend: elsewhere the clock is not ratekeeper's to move"
            )
        clock = clock if clock is not None else engine.clock
        if engine.clock is not clock:
            raise ValueError("the engine and the app must run on the same clock under --dev")
        if not isinstance(clock, AdvancingClock):
            raise SettingsError(
                f"--dev needs a clock that can be advanced, not {clock!r}: a ManualClock, or "
                "none (the system clock plus an offset)"
            )
        dev_gate = DevGate(
            engine, registry=registry, fail_open=settings.fail_open, faults=FaultTable()
        )
        return cls(clock, dev_gate, settings.max_body_bytes)

    def middleware(self) -> Middleware:
        """Return the middleware that fills the request log."""
        return Middleware(RecentRequestsMiddleware, self.requests)

    def routes(self) -> list[Route]:
        """Return the ``/ratekeeper/dev/`` routes."""
        return [
            Route(f"{DEV_PREFIX}/clock", self.read_clock, methods=["GET"]),
            Route(f"{DEV_PREFIX}/clock/advance", self.advance_clock, methods=["POST"]),
            Route(f"{DEV_PREFIX}/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route(f"{DEV_PREFIX}/requests", self.recent_requests, methods=["GET", "DELETE"]),
        ]

    def _clock_json(self) -> dict[str, Any]:
        return {
            "object": "ratekeeper.dev.clock",
            "time": self.clock.time(),
            "monotonic": self.clock.monotonic(),
            "advanced_s": self.advanced_s,
        }

    async def read_clock(self, request: Request) -> JSONResponse:
        """``GET /ratekeeper/dev/clock``."""
        ServiceContext.of(request).api_keys.require(request)
        return JSONResponse(self._clock_json())

    async def advance_clock(self, request: Request) -> JSONResponse:
        """``POST /ratekeeper/dev/clock/advance``: move the clock, then expire what fell due."""
        ServiceContext.of(request).api_keys.require(request)
        body = await read_json(request, self._max_body_bytes)
        if not isinstance(body, dict):
            raise InvalidParameter(
                f"Invalid type for request body: expected an object, but got {type_name(body)} "
                'instead. Send {"seconds": N}.',
                code="invalid_type",
            )
        check_known(body, "", ("seconds",))
        seconds = _seconds(require(body, "seconds", ""), "seconds", 0.0, MAX_RETENTION_S)
        self.clock.advance(seconds)
        self.advanced_s += seconds
        flipped = await self.gate.sweep_now()
        if flipped < 0:
            raise ApiError(
                503,
                "The clock moved, but the session backend failed while expiring the sessions "
                "that fell due; they expire at the sweeper's next turn.",
                type="server_error",
                code="backend_unavailable",
            )
        return JSONResponse({**self._clock_json(), "expired": flipped})

    async def faults(self, request: Request) -> JSONResponse:
        """``GET``, ``POST`` and ``DELETE /ratekeeper/dev/faults``."""
        ctx = ServiceContext.of(request)
        ctx.api_keys.require(request)
        table = self.gate.faults
        if request.method == "GET":
            return _list([fault.as_json() for fault in table.pending()])
        if request.method == "DELETE":
            cleared = table.clear()
            return JSONResponse({"object": "ratekeeper.dev.faults.cleared", "cleared": cleared})
        fault = parse_fault(await read_json(request, self._max_body_bytes))
        if fault.session_id is not None:
            await self.gate.get(fault.session_id)  # SessionNotFound: 404, as the REST routes
        table.add(fault)
        return JSONResponse(fault.as_json())

    async def recent_requests(self, request: Request) -> JSONResponse:
        """``GET`` and ``DELETE /ratekeeper/dev/requests``."""
        ServiceContext.of(request).api_keys.require(request)
        if request.method == "DELETE":
            cleared = self.requests.clear()
            return JSONResponse({"object": "ratekeeper.dev.requests.cleared", "cleared": cleared})
        limit: int | None = None
        raw = request.query_params.get("limit")
        if raw is not None:
            if not raw.strip().isdigit():
                raise InvalidParameter(
                    f"Invalid 'limit': expected an integer from 0 to {REQUEST_LOG_SIZE}.",
                    param="limit",
                    code="invalid_type",
                )
            limit = check_int(int(raw), "limit", minimum=0, maximum=REQUEST_LOG_SIZE)
        return _list(self.requests.last(limit))


def _list(data: Sequence[Mapping[str, Any]]) -> JSONResponse:
    return JSONResponse({"object": "list", "data": data})
