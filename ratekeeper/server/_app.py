"""The service's ASGI app: :func:`create_app` and the uvicorn factory :func:`app_from_env`.

Routes::

    POST   /v1/chatkit/sessions                      create a session (API key)
    POST   /v1/chatkit/sessions/{session_id}/cancel  cancel it (API key)
    GET    /v1/chatkit/threads                       list threads (API key)
    GET    /v1/chatkit/threads/{thread_id}           retrieve a thread (API key)
    DELETE /v1/chatkit/threads/{thread_id}           delete it (API key)
    GET    /v1/chatkit/threads/{thread_id}/items     list its items (API key)
    GET|POST /ratekeeper/admit                       admit one session request (client secret)
    POST   /chatkit  (+ /chatkit/attachments/…)      ChatKit protocol (client secret), when
                                                     openai-chatkit is installed
    (the client-secret routes answer CORS for settings.cors_origins, when set)
    GET    /healthz  /readyz  /metrics  /openapi.json   open (/metrics on its own port
                                                     with settings.metrics_port)
"""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .._backend import Backend, MemoryBackend
from .._clock import Clock, SystemClock
from .._engine import Engine
from .._errors import BackendError
from .._gate import Gate
from .._ratelimit_headers import UNAVAILABLE_RETRY
from .._redact import Redactor
from .._tokens import AttachmentTokens, load_or_create_key_file
from ..store import ConversationStore, store_from_url
from ._admission import admit
from ._auth import ApiKeys, announce_generated_key, new_api_key
from ._cors import with_cors
from ._http_metrics import HttpMetrics, register_process_metrics
from ._logs import install_redaction
from ._metrics_listener import MetricsListener
from ._request_middleware import ServiceMiddleware
from ._responses import exception_handlers
from ._service_context import ServiceContext
from ._sessions import SessionCreation, cancel_session
from ._settings import ServerSettings, SettingsError, default_data_dir
from ._thread_routes import list_thread_items, list_threads, thread_resource

if TYPE_CHECKING:
    from ..chatkit import ServerFactory
    from ._dev import DevTools

#: The in-memory backend's cap on active sessions when ``max_sessions`` is not set.
MEMORY_MAX_SESSIONS = 1_000_000
#: Seconds between two purges of old threads and stale attachments.
PURGE_INTERVAL_S = 60.0
_logger = logging.getLogger("ratekeeper.server")


def openapi_document() -> bytes:
    """Return the service's own OpenAPI document (``ratekeeper/server/openapi.json``)."""
    return resources.files(__package__).joinpath("openapi.json").read_bytes()


def backend_from_settings(settings: ServerSettings) -> Backend:
    """Build the backend the settings name: in memory, or Redis (imported only then).

    Raises:
        SettingsError: the Redis backend is not installed or cannot be built from the URL.
    """
    if settings.uses_memory:
        engine = Engine(
            retention_s=settings.retention_s,
            max_sessions=settings.max_sessions or MEMORY_MAX_SESSIONS,
        )
        return MemoryBackend(engine)
    try:
        from ..redis import RedisBackend
    except ImportError as exc:
        raise SettingsError(
            "the Redis backend is not available in this installation "
            f"({type(exc).__name__}: {exc}); install ratekeeper[redis], or use --backend memory"
        ) from None
    try:
        backend: Backend = RedisBackend.from_url(
            settings.backend,
            cluster=settings.redis_cluster,
            retention_s=settings.retention_s,
            max_sessions=settings.max_sessions,
            circuit_failures=settings.redis_circuit_failures,
            circuit_probe_interval_s=settings.redis_circuit_probe_s,
        )
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"cannot use the Redis backend URL: {exc}") from None
    return backend


def store_from_settings(settings: ServerSettings, clock: Clock | None = None) -> ConversationStore:
    """Build the conversation store the settings name (not opened yet).

    Raises:
        SettingsError: the URL names no store, or its driver is not installed.
    """
    try:
        return store_from_url(settings.store_url, clock=clock, timeout_s=settings.store_timeout_s)
    except ValueError as exc:
        raise SettingsError(f"cannot use --store {settings.shown_store_url}: {exc}") from None


async def _purge_forever(
    store: ConversationStore,
    settings: ServerSettings,
    clock: Clock,
    *,
    task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
) -> None:
    """Delete old threads and stale attachments now, then every :data:`PURGE_INTERVAL_S` s.

    Started with ``TaskGroup.start``: the app serves once the first purge is done, so nothing
    past retention is ever served after a restart. Each worker runs one; purging is
    idempotent, so workers sharing a store may overlap. A failure is logged and tried again
    next time, never fatal.
    """
    started = False
    while True:
        now = math.floor(clock.time())
        days = settings.thread_retention_days
        try:
            await store.purge(
                threads_before=None if days is None else now - math.ceil(days * 86_400),
                attachments_before=now - math.ceil(settings.upload_timeout_s),
            )
        except BackendError as exc:
            _logger.warning("ratekeeper: purge failed: %s", type(exc.__cause__).__name__)
        except Exception:  # a bug must not take the service down with it; it is logged
            _logger.exception("ratekeeper: purge failed")
        if not started:
            task_status.started()
            started = True
        await anyio.sleep(PURGE_INTERVAL_S)


def create_app(
    settings: ServerSettings | None = None,
    *,
    gate: Gate | None = None,
    backend: Backend | Engine | None = None,
    store: ConversationStore | None = None,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    announce_key: Callable[[str], None] = announce_generated_key,
    chatkit_server_factory: ServerFactory | None = None,
) -> Starlette:
    """Build the service.

    Args:
        settings: the settings; defaults for everything when omitted.
        gate: the gate to create sessions and admit requests through; built from ``backend``
            and ``settings.fail_open`` when omitted. The app runs it (``async with gate``,
            i.e. its expiry sweeper) for its lifespan either way.
        backend: the backend for a new gate; built from ``settings.backend`` when omitted (and
            then closed at shutdown).
        store: the conversation store (threads, items, attachments); built from
            ``settings.store_url`` when omitted (and then closed at shutdown). The app opens
            it at start either way: an unreachable database stops the start.
        clock: dates threads and attachments and times their purge; the system clock by
            default.
        registry: the Prometheus registry for a new gate's metrics (a private one if omitted).
        announce_key: called once with the generated API key when ``settings.api_keys`` is
            empty; prints it to stderr by default.
        chatkit_server_factory: builds the ``ChatKitServer`` behind ``POST /chatkit`` from
            the endpoint's stores (see :data:`ratekeeper.chatkit.ServerFactory`); the built-in
            echo server when omitted. Needs openai-chatkit.

    With ``settings.dev`` the app gets the ``/ratekeeper/dev/`` routes
    (:mod:`ratekeeper.server.dev`) and builds its own gate: ``backend`` must then be in memory
    (or omitted) and ``clock`` one that can be advanced (omitted: the system clock plus an
    offset), shared with the backend's engine.

    Returns:
        The Starlette app; ``app.state.ratekeeper`` is its
        :class:`~ratekeeper.server.ServiceContext`.

    Raises:
        SettingsError: inconsistent settings, or a backend that cannot be built.
        ValueError: a malformed API key.
    """
    settings = (settings if settings is not None else ServerSettings()).checked()
    keys = settings.api_keys
    if not keys:
        generated = new_api_key()
        announce_key(generated)
        keys = (generated,)
    api_keys = ApiKeys(keys)
    dev: DevTools | None = None
    if settings.dev:
        # --dev: a clock that can be moved, a gate that injects faults, a request log.
        from ._dev import DevTools

        dev = DevTools.build(
            settings,
            gate=gate,
            backend=backend,
            clock=clock,
            registry=registry,
            max_sessions=settings.max_sessions or MEMORY_MAX_SESSIONS,
        )
        gate, clock = dev.gate, dev.clock
    owned: Backend | None = None
    if gate is None:
        if backend is None:
            backend = owned = backend_from_settings(settings)
        gate = Gate(backend, registry=registry, fail_open=settings.fail_open)
    clock = clock if clock is not None else SystemClock()
    owned_store: ConversationStore | None = None
    if store is None:
        store = owned_store = store_from_settings(settings, clock)
    tokens = _attachment_tokens(settings, owned=owned_store is not None)
    context = ServiceContext(settings, gate, store, api_keys, Redactor(keys), tokens)
    openapi = openapi_document()
    # On the gate's registry, so the one /metrics shows the gate's and the service's metrics.
    http_metrics = HttpMetrics(gate.registry)
    register_process_metrics(gate.registry)
    # --metrics-port: /metrics on a listener of its own (run by the lifespan), not on the API's.
    metrics_listener = (
        None
        if settings.metrics_port is None
        else MetricsListener(
            gate.metrics_app(),
            settings.host,
            settings.metrics_port,
            reuse_port=settings.workers > 1,
        )
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # On the handlers as they are now, however the app is served (a plain `uvicorn
        # --factory` configures none of ratekeeper's filters).
        stop_redacting = install_redaction(context.redactor)
        try:
            await context.store.open()
            async with context.gate, anyio.create_task_group() as tasks:
                await tasks.start(_purge_forever, context.store, settings, clock)
                if metrics_listener is not None:
                    await tasks.start(metrics_listener.run)
                yield
                if metrics_listener is not None:
                    await metrics_listener.stop()
                tasks.cancel_scope.cancel()
        finally:
            try:
                if owned_store is not None:
                    await owned_store.aclose()
            finally:
                try:
                    if owned is not None:
                        await owned.aclose()
                finally:
                    stop_redacting()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # Liveness is /healthz; this says whether requests can be served: the session backend
        # and the conversation store both answer (each bounded by its own timeout).
        checks: dict[str, str] = {}
        for name, probe in (("backend", context.gate.statistics), ("store", context.store.ping)):
            try:
                await probe()
            except BackendError:
                checks[name] = "unavailable"
            else:
                checks[name] = "ok"
        if all(state == "ok" for state in checks.values()):
            return JSONResponse({"status": "ready", **checks})
        return JSONResponse(
            {"status": "unavailable", **checks}, 503, headers=dict(UNAVAILABLE_RETRY)
        )

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    # The routes a client secret opens: the only ones a browser on another origin may call.
    session_routes = [
        Route("/ratekeeper/admit", admit, methods=["GET", "POST"]),
        *_chatkit_protocol_routes(context, chatkit_server_factory, clock),
    ]
    if settings.cors_origins:
        session_routes = [with_cors(route, settings.cors_origins) for route in session_routes]
    routes: list[BaseRoute] = [
        Route(
            "/v1/chatkit/sessions",
            SessionCreation(context),
            methods=["POST"],
            name="create_session",
        ),
        Route("/v1/chatkit/sessions/{session_id}/cancel", cancel_session, methods=["POST"]),
        Route("/v1/chatkit/threads", list_threads, methods=["GET"]),
        Route("/v1/chatkit/threads/{thread_id}", thread_resource, methods=["GET", "DELETE"]),
        Route("/v1/chatkit/threads/{thread_id}/items", list_thread_items, methods=["GET"]),
        *session_routes,
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *(
            [Route("/metrics", context.gate.metrics_app(), methods=["GET"])]
            if metrics_listener is None
            else []
        ),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *(dev.routes() if dev is not None else []),
    ]
    app = Starlette(
        routes=routes,
        # Outermost of ours: it times the whole request and sees the final status, and gives
        # the request its id.
        middleware=[
            Middleware(ServiceMiddleware, http_metrics),
            *([dev.middleware()] if dev is not None else []),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.ratekeeper = context
    return app


def _chatkit_protocol_routes(
    context: ServiceContext, server_factory: ServerFactory | None, clock: Clock
) -> list[Route]:
    """``POST /chatkit`` on the app's gate and store, if openai-chatkit is installed.

    Imported only here, so the service starts (without the endpoint) when it is not.
    """
    try:
        from ..chatkit import chatkit_routes  # optional: imported only when present
    except ModuleNotFoundError as exc:
        if server_factory is None and (exc.name or "").partition(".")[0] in ("chatkit", "agents"):
            return []
        raise
    return list(
        chatkit_routes(
            context.gate,
            context.store,
            server_factory,
            clock=clock,
            public_url=context.settings.public_url,
            redactor=context.redactor,
            tokens=context.tokens,
        )
    )


def _attachment_tokens(settings: ServerSettings, *, owned: bool) -> AttachmentTokens:
    """The key of attachment tokens: ``--token-key``, else ``token.key`` in the data directory.

    The file is created (mode 0600) when missing, so workers and restarts on one host agree;
    hosts sharing a PostgreSQL store must share ``--token-key``. A store that lives only in
    this process (``--store memory``, or one passed in without a ``--data-dir``) gets the
    process's own random key.

    Raises:
        SettingsError: the key file cannot be read or created.
    """
    if settings.token_key is not None:
        return AttachmentTokens(settings.token_key)
    if settings.store == "memory" or (not owned and settings.data_dir is None):
        return AttachmentTokens.for_this_process()
    directory = Path(settings.data_dir) if settings.data_dir is not None else default_data_dir()
    try:
        return AttachmentTokens(load_or_create_key_file(directory))
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"cannot use the token key file in {directory}: {exc}; set --token-key"
        ) from None


def freeze_startup_heap() -> None:
    """Take every object alive now out of the cyclic garbage collector's sight (``gc.freeze``).

    For a process whose job is serving, called once the app is built: the modules, the app and
    the models then live in the permanent generation, and a full collection walks only what
    was made since (the sessions, the requests in flight) instead of every object of startup
    too. Without it a full collection in a serving process took about 0.1 s, time no request
    was answered. Nothing is freed that would have been: what is alive now stays alive.
    """
    gc.collect()
    gc.freeze()


def app_from_env() -> Starlette:
    """Build the service from ``RATEKEEPER_*`` variables: the uvicorn factory for workers.

    ``uvicorn --factory ratekeeper.server._app:app_from_env`` (or ``ratekeeper serve
    --workers N``, which sets the variables for its workers) calls this in each worker.
    """
    settings = ServerSettings.from_env()
    if settings.dev:  # `ratekeeper serve --dev` prints it; uvicorn --factory users see it here
        from ._dev import DEV_WARNING

        _logger.warning("%s", DEV_WARNING)
    app = create_app(settings)
    freeze_startup_heap()  # each worker process is one that serves
    return app
