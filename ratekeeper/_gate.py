"""The async gate: admission for session-scoped handlers, sessions, the expiry sweeper, metrics.

One rule underneath several ways in: :meth:`Gate.admit` (a decision), :meth:`Gate.enter`
(raises on refusal), :meth:`Gate.guard` (a decorator), :meth:`Gate.check` (an HTTP verdict,
which the ASGI middleware sends as it is). Written once on anyio, so it runs on asyncio and
trio alike. The sweeper itself lives in :mod:`._sweeper`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, Unpack

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskGroup, TaskStatus
from prometheus_client import CollectorRegistry

from ._backend import Backend, CircuitBreaking, InProcess, MemoryBackend
from ._engine import Engine
from ._errors import (
    BackendError,
    GateRejection,
    RateLimited,
    SessionCancelled,
    SessionExpired,
    UnknownSession,
)
from ._metrics import GateMetrics, MetricsApp, metrics_app
from ._ratelimit_headers import (
    Verdict,
    backend_unavailable_verdict,
    fail_open_verdict,
    missing_secret_verdict,
    verdict_for,
)
from ._sweeper import ExpiryCallback, Outage, Sweeper
from ._types import (
    Decision,
    EngineStatistics,
    Reason,
    Session,
    SessionOptions,
    SessionSpec,
    UploadDecision,
    resolve_spec,
)
from ._window import unknown_decision

_MEMORY_ADMIT = MemoryBackend.admit

P = ParamSpec("P")
R = TypeVar("R")

#: The decision :meth:`Gate.admit` returns when the backend fails and the gate fails open.
FAIL_OPEN_DECISION = Decision(True, Reason.ALLOWED, 0, 0, 0.0, 0.0, None)

_logger = logging.getLogger("ratekeeper.gate")
_REJECTIONS: Mapping[str, type[GateRejection]] = {
    Reason.RATE_LIMITED: RateLimited,
    Reason.EXPIRED: SessionExpired,
    Reason.CANCELLED: SessionCancelled,
    Reason.UNKNOWN_SESSION: UnknownSession,
}


def rejection_for(decision: Decision) -> GateRejection:
    """Return the exception for a refused decision; its message is the HTTP error's message."""
    error = verdict_for(decision).error
    message = error["error"]["message"] if error is not None else decision.reason
    cls = _REJECTIONS[decision.reason]
    if cls is RateLimited:
        return RateLimited(message, decision, decision.retry_after)
    return cls(message, decision)


class _Entry:
    """``async with gate.enter(secret) as decision`` without a generator frame per call."""

    __slots__ = ("_gate", "_secret")

    def __init__(self, gate: Gate, secret: str | None) -> None:
        self._gate = gate
        self._secret = secret

    async def __aenter__(self) -> Decision:
        return await self._gate.admit_or_raise(self._secret)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class Gate:
    """Admission, expiry sweeping and metrics for one backend.

    Args:
        backend: where sessions live; an :class:`~ratekeeper.Engine` is wrapped in a
            :class:`~ratekeeper.MemoryBackend`.
        registry: the Prometheus registry for the gate's collectors; a private new one when
            ``None`` (pass ``prometheus_client.REGISTRY`` to use the global default).
        fail_open: when the backend raises :class:`~ratekeeper.BackendError` during
            admission, admit the request (``True``) or refuse it (``False``, the default:
            :meth:`check` answers 503, :meth:`admit` and :meth:`enter` raise).
        sweep_batch: most sessions flipped per sweep call; the sweeper yields to the event
            loop between calls, so this bounds how long one step holds the loop.
        poll_interval_s: the sweeper never sleeps longer than this, so sessions created
            elsewhere (another process on a shared Redis) are swept too.
        on_expire: callbacks run for each session the sweeper flips (see :meth:`on_expire`).

    Attributes:
        backend: the backend in use.
        registry: the registry holding the gate's metrics.
        metrics: the collectors (:class:`~ratekeeper.GateMetrics`).
        fail_open: the failure mode chosen above.

    This is **not** thread-safe: use one gate from one event loop (it may serve any number of
    tasks on that loop).
    """

    def __init__(
        self,
        backend: Backend | Engine,
        *,
        registry: CollectorRegistry | None = None,
        fail_open: bool = False,
        sweep_batch: int = 500,
        poll_interval_s: float = 1.0,
        on_expire: tuple[ExpiryCallback, ...] | list[ExpiryCallback] = (),
    ) -> None:
        if sweep_batch < 1:
            raise ValueError(f"sweep_batch must be >= 1, got {sweep_batch!r}")
        if not poll_interval_s > 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s!r}")
        self.backend: Backend = MemoryBackend(backend) if isinstance(backend, Engine) else backend
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.fail_open = fail_open
        # Capabilities, not backend types, checked once. An in-process engine is read without
        # I/O: its statistics live at every scrape, and the sweeper may flip it directly.
        backend = self.backend
        self._engine = backend.in_process_engine if isinstance(backend, InProcess) else None
        # Any backend with a circuit breaker exports its state.
        circuit = backend if isinstance(backend, CircuitBreaking) else None
        self.metrics = GateMetrics(
            self.registry,
            self._read_statistics,
            circuit.circuit_statistics if circuit is not None else None,
        )
        # The sessions gauge of a shared backend, as last read (by the sweeper, at a scrape or
        # by statistics()).
        self._statistics: EngineStatistics | None = None
        # Backend outages of the statistics; the sweeper tracks expiry's apart, so that one
        # working does not end the other's outage.
        self._statistics_outage = Outage("statistics")
        self._sweeper = Sweeper(
            backend,
            self.metrics,
            engine=self._engine,
            batch=sweep_batch,
            poll_interval_s=float(poll_interval_s),
            callbacks=list(on_expire),
            refresh_statistics=self._refresh_statistics if self._engine is None else None,
        )
        self._task_group: TaskGroup | None = None
        # Hot-path lookups bound once.
        self._outcome = self.metrics.outcome
        self._admit_errors = self.metrics.backend_error["admit"]
        # The in-process fast path: when the backend's admit is MemoryBackend's own (not
        # overridden), it is the engine's admit behind an await that never suspends, so the
        # gate calls the engine directly and saves a coroutine per request. Same decision,
        # same scheduling (no await suspended before either).
        self._admit_now: Callable[[str], Decision] | None = None
        if self._engine is not None and getattr(type(backend), "admit", None) is _MEMORY_ADMIT:
            self._admit_now = self._engine.admit
        # check_nowait() answers only when check() would not wait and is this class's own: a
        # subclass that overrides check() (the dev service's fault injection) is always asked
        # through it.
        self._nowait_admit = self._admit_now if type(self).check is Gate.check else None

    # -- admission ------------------------------------------------------------------------

    async def admit(self, client_secret: str) -> Decision:
        """Decide on one request for the session behind ``client_secret`` and count it.

        Returns the engine's :class:`~ratekeeper.Decision` (refusals are values here).
        When the backend fails and the gate fails open, returns :data:`FAIL_OPEN_DECISION`.

        Raises:
            BackendError: the backend failed and the gate fails closed.
        """
        try:
            decision = await self.backend.admit(client_secret)
        except BackendError:
            self._admit_errors.inc()
            if self.fail_open:
                self._outcome["fail_open"].inc()
                return FAIL_OPEN_DECISION
            self._outcome["fail_closed"].inc()
            raise
        self._outcome[decision.reason].inc()
        return decision

    async def admit_or_raise(self, client_secret: str | None) -> Decision:
        """Like :meth:`admit`, but raise a :class:`~ratekeeper.GateRejection` on refusal.

        A missing (``None`` or empty) secret raises :class:`~ratekeeper.UnknownSession`.

        Raises:
            RateLimited: the session used its requests for the window (``retry_after`` set).
            SessionExpired: the session's ``expires_at`` has passed.
            SessionCancelled: the session was cancelled.
            UnknownSession: the secret matches no session, or none was given.
            BackendError: the backend failed and the gate fails closed.
        """
        if not client_secret:
            self._outcome["missing_secret"].inc()
            raise UnknownSession("No client secret was given.", unknown_decision())
        decision = await self.admit(client_secret)
        if not decision.allowed:
            raise rejection_for(decision)
        return decision

    def enter(self, client_secret: str | None) -> _Entry:
        """Return an async context manager that admits the request or raises.

        ``async with gate.enter(secret) as decision:`` runs the block only when admitted; see
        :meth:`admit_or_raise` for the errors raised on entry.
        """
        return _Entry(self, client_secret)

    async def check(self, client_secret: str | None) -> Verdict:
        """Decide on one request and return how to answer it over HTTP.

        The one-call helper for gateways: ``verdict.allowed``, ``verdict.status_code``,
        ``verdict.headers`` and ``verdict.error`` (OpenAI-shaped) say everything. Never raises
        for a refusal or a backend failure: failing closed gives a 503 verdict.
        """
        if not client_secret:
            self._outcome["missing_secret"].inc()
            return missing_secret_verdict()
        admit_now = self._admit_now
        if admit_now is not None:
            decision = admit_now(client_secret)
            self._outcome[decision.reason].inc()
            return verdict_for(decision)
        # admit() inlined: one coroutine frame less on every guarded HTTP request.
        try:
            decision = await self.backend.admit(client_secret)
        except BackendError:
            self._admit_errors.inc()
            if self.fail_open:
                self._outcome["fail_open"].inc()
                return fail_open_verdict(FAIL_OPEN_DECISION)
            self._outcome["fail_closed"].inc()
            return backend_unavailable_verdict()
        self._outcome[decision.reason].inc()
        return verdict_for(decision)

    def check_nowait(self, client_secret: str | None) -> Verdict:
        """Like :meth:`check`, without awaiting: for a backend in this process.

        With the in-memory backend a decision needs no I/O, so it is made here, synchronously,
        and counted exactly as :meth:`check` counts it (the ASGI middleware uses this to spare
        a coroutine per request). Otherwise nothing is decided or counted.

        Raises:
            anyio.WouldBlock: the backend must be awaited (Redis), or this gate's
                :meth:`check` is overridden; call :meth:`check` instead.
        """
        admit_now = self._nowait_admit
        if admit_now is None:
            raise anyio.WouldBlock
        if not client_secret:
            self._outcome["missing_secret"].inc()
            return missing_secret_verdict()
        decision = admit_now(client_secret)
        self._outcome[decision.reason].inc()
        return verdict_for(decision)

    async def check_session(self, client_secret: str | None) -> tuple[Verdict, Session | None]:
        """Like :meth:`check`, and return the admitted session too, from the same backend call.

        For handlers that need the session to serve the request at all (the ChatKit endpoint
        needs its user and limits): one round trip on Redis. The session is ``None`` unless
        the verdict admits the request. Such a handler cannot serve without the session, so a
        backend failure gives the 503 verdict and counts ``fail_closed`` even when the gate
        fails open: the metric says what the client got.
        """
        if not client_secret:
            self._outcome["missing_secret"].inc()
            return missing_secret_verdict(), None
        try:
            decision, session = await self.backend.admit_session(client_secret)
        except BackendError:
            self._admit_errors.inc()
            self._outcome["fail_closed"].inc()
            return backend_unavailable_verdict(), None
        self._outcome[decision.reason].inc()
        return verdict_for(decision), session

    def guard(
        self,
        secret_arg: str | Callable[..., str | None] = "client_secret",  # noqa: S107 - a name
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate an async handler so that every call is admitted first, or raises.

        Args:
            secret_arg: the name of the handler's parameter holding the client secret
                (positional or keyword), or a function called with the handler's arguments
                that returns the secret.

        Raises:
            TypeError: ``secret_arg`` is a coroutine function (``@gate.guard`` written without
                parentheses); at decoration, if the handler has no parameter of that name.

        The wrapped handler raises what :meth:`admit_or_raise` raises when refused.
        """
        if inspect.iscoroutinefunction(secret_arg):
            # The extractor is sync; an async function here is the handler itself.
            raise TypeError(
                "guard() takes the secret's parameter name or a sync extractor, not the "
                "handler: write @gate.guard() with parentheses"
            )

        def decorate(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            extract = _secret_extractor(handler, secret_arg)
            admit = self.admit_or_raise

            @functools.wraps(handler)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
                await admit(extract(args, kwargs))
                return await handler(*args, **kwargs)

            return guarded

        return decorate

    # -- sessions -------------------------------------------------------------------------

    async def create_session(
        self, user: str, spec: SessionSpec | None = None, **options: Unpack[SessionOptions]
    ) -> Session:
        """Create a session through the backend, count it, and tell the sweeper its deadline.

        Takes the arguments of :meth:`Engine.create_session
        <ratekeeper.Engine.create_session>` (a :class:`~ratekeeper.SessionSpec`,
        or its fields as keywords) and raises what it raises, plus
        :class:`~ratekeeper.BackendError`.
        """
        if options or spec is None:
            spec = resolve_spec(spec, options)  # built here once; the backend takes it as is
        try:
            session = await self.backend.create_session(user, spec)
        except BackendError:
            self.metrics.backend_error["create_session"].inc()
            raise
        self.metrics.sessions_created.inc()
        # Id and user only: the secret on this value must never reach a log.
        _logger.debug("ratekeeper: session %s created for user %s", session.id, session.user)
        # Seconds left, from the backend's own readings.
        self._sweeper.deadline_made(session.expires_at - session.created_at)
        return session

    async def cancel(self, session_id: str) -> Session:
        """Cancel a session (idempotent) and count it once, when this call cancelled it.

        The backend says which call changed the session, so of concurrent cancels of one
        session, even in several processes on a shared backend, exactly one counts it.

        Raises:
            SessionNotFound: no such session.
            BackendError: the backend failed.
        """
        session, changed = await self._forward("cancel", self.backend.cancel(session_id))
        if changed:
            self.metrics.sessions_cancelled.inc()
            _logger.debug("ratekeeper: session %s cancelled for user %s", session.id, session.user)
        return session

    async def get(self, session_id: str) -> Session:
        """Return a session as of now.

        Raises:
            SessionNotFound: no such session.
            BackendError: the backend failed.
        """
        return await self._forward("get", self.backend.get(session_id))

    async def lookup(self, client_secret: str) -> Session | None:
        """Return the session behind a secret without counting a request (``None``: unknown).

        Raises:
            BackendError: the backend failed.
        """
        return await self._forward("lookup", self.backend.lookup(client_secret))

    async def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        """Count one file upload against the session's ``file_upload`` limits, if it fits.

        Raises:
            SessionNotFound: no such session.
            BackendError: the backend failed.
        """
        return await self._forward(
            "reserve_upload", self.backend.reserve_upload(session_id, size_bytes)
        )

    async def statistics(self) -> EngineStatistics:
        """Read the backend's session counts now (and keep them for the sessions gauge).

        Raises:
            BackendError: the backend failed.
        """
        stats = await self._forward("statistics", self.backend.statistics())
        self._statistics = stats
        return stats

    async def _forward(self, operation: str, call: Awaitable[R]) -> R:
        """Await a backend call, counting a ``BackendError`` it raises under ``operation``."""
        try:
            return await call
        except BackendError:
            self.metrics.backend_error[operation].inc()
            raise

    # -- the sweeper ----------------------------------------------------------------------

    def on_expire(self, callback: ExpiryCallback) -> ExpiryCallback:
        """Register a callback run with each :class:`~ratekeeper.Expired` the sweeper flips.

        Sync or async; usable as a decorator. Callbacks run in the sweeper one after another,
        so keep them short (start a task for long work). One that raises is logged (session
        id only, never a secret), counted in ``ratekeeper_expiry_callback_errors_total``, and
        does not stop the sweeper.
        """
        self._sweeper.callbacks.append(callback)
        return callback

    async def sweep_now(self) -> int:
        """Flip every session due now, as the sweeper would, then wake the sweeper.

        For clocks that jump instead of run (a :class:`~ratekeeper.ManualClock` a test
        advances, ``ratekeeper serve --dev``): the sweeper sleeps on the event loop's time,
        so it would see the jump only at its next poll. This flips, counts and calls back for
        everything that fell due before it returns, then cuts the sweeper's sleep short so it
        reads the next deadline again. Safe beside a running sweeper (a backend flips each
        session once) and without one.

        Returns:
            How many sessions were flipped; -1 if the backend failed (counted and logged as
            the sweeper's failures are).
        """
        return await self._sweeper.sweep_now()

    async def run_sweeper(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Flip due sessions to ``expired`` until cancelled.

        Sleeps until the backend's next deadline (at most ``poll_interval_s``), waking early
        when :meth:`create_session` makes an earlier one; then sweeps in batches of
        ``sweep_batch``, yielding to the event loop after each. Backend failures are counted
        and retried after ``poll_interval_s``. Cancel its scope to stop it; it can be started
        again afterwards. Works with ``await task_group.start(gate.run_sweeper)``, which returns
        once the sweeper runs.

        Raises:
            RuntimeError: this gate's sweeper is already running.
        """
        await self._sweeper.run(task_status=task_status)

    @property
    def sweep_batch(self) -> int:
        """The most sessions the sweeper flips per sweep call."""
        return self._sweeper.batch

    @property
    def poll_interval_s(self) -> float:
        """The longest the sweeper sleeps."""
        return self._sweeper.poll_interval_s

    async def __aenter__(self) -> Gate:
        """Start the sweeper in a task group that lives as long as the ``async with`` block.

        Raises:
            RuntimeError: this gate's sweeper is already running.
        """
        if self._sweeper.running:
            # Checked here too: raised from inside the task group, it would come out wrapped
            # in an ExceptionGroup.
            raise RuntimeError("this gate's sweeper is already running")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self.run_sweeper)
        except BaseException as exc:
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop the sweeper and wait for it."""
        task_group, self._task_group = self._task_group, None
        if task_group is None:
            return None
        task_group.cancel_scope.cancel()
        try:
            return await task_group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The task group wraps the block's own error; hand it back as it was raised.
            if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                return None
            raise

    # -- metrics --------------------------------------------------------------------------

    def _read_statistics(self) -> EngineStatistics | None:
        engine = self._engine
        if engine is not None:
            return engine.statistics()  # O(1), so read it live at every scrape
        return self._statistics

    async def _refresh_statistics(self) -> None:
        if self._engine is not None:
            return
        try:
            await self.statistics()
        except BackendError as exc:
            self._statistics_outage.failed(exc)
        else:
            self._statistics_outage.succeeded()

    def metrics_app(self) -> MetricsApp:
        """Return an ASGI app serving this gate's metrics: ``Route("/metrics", app)``."""
        return metrics_app(self.registry, before_scrape=self._refresh_statistics)

    def __repr__(self) -> str:
        mode = "open" if self.fail_open else "closed"
        return f"Gate({self.backend!r}, fail_{mode}, sweeping={self._sweeper.running})"


def _secret_extractor(
    handler: Callable[..., Any], secret_arg: str | Callable[..., str | None]
) -> Callable[[tuple[Any, ...], dict[str, Any]], str | None]:
    """Return a fast ``(args, kwargs) -> secret`` for a handler, resolved once at decoration."""
    if callable(secret_arg):
        func = secret_arg
        return lambda args, kwargs: func(*args, **kwargs)
    name = secret_arg
    params = inspect.signature(handler).parameters
    param = params.get(name)
    if param is None:
        raise TypeError(f"{handler.__qualname__} has no parameter named {name!r}")
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    index = list(params).index(name) if param.kind in positional else None
    default = None if param.default is inspect.Parameter.empty else param.default

    def extract(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        secret: str | None
        if name in kwargs:
            secret = kwargs[name]
        elif index is not None and index < len(args):
            secret = args[index]
        else:
            secret = default
        return secret

    return extract
