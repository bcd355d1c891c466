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
the very functions that build real ones (:func:`~ratekeeper._ratelimit_headers.verdict_for`), so
status, headers and body are the real ones; and they are given on every path that admits
through the gate (``/chatkit``, ``/ratekeeper/admit``, the ASGI middleware). An injected refusal
counts no request against the session and is counted in ``ratekeeper_decisions_total`` under its
own ``outcome`` (``injected_rate_limited``, …: :data:`~ratekeeper._metrics.INJECTED_OUTCOMES`),
never under a real one. Secrets that match no session are never faulted.

The clock of a ``--dev`` service is the system clock plus an offset that only grows
(:class:`OffsetClock`), or the :class:`~ratekeeper.ManualClock` the app was built with
(:func:`ratekeeper.testing.serve`): time travel needs the in-memory backend, since on Redis the
sessions' time is the Redis server's ``TIME``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .._backend import Backend, InProcess
from .._clock import Clock, SystemClock
from .._engine import Engine
from .._errors import InvalidParameter
from .._gate import Gate
from .._http_errors import ApiError
from .._params import check_int, check_known, require, type_name
from ._bodies import read_json
from ._dev_faults import DevGate, FaultTable, check_seconds, parse_fault
from ._dev_requests import DEV_PREFIX, REQUEST_LOG_SIZE, RecentRequests, RecentRequestsMiddleware
from ._service_context import ServiceContext
from ._settings import MAX_RETENTION_S, ServerSettings, SettingsError


@runtime_checkable
class AdvancingClock(Clock, Protocol):
    """A :class:`~ratekeeper.Clock` that a test can move forward: a
    :class:`~ratekeeper.ManualClock` or an :class:`OffsetClock`."""

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
        elif isinstance(backend, InProcess):
            engine = backend.in_process_engine
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
        seconds = check_seconds(require(body, "seconds", ""), "seconds", 0.0, MAX_RETENTION_S)
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
