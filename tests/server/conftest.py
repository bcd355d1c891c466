"""Fixtures for the service tests: a real uvicorn on loopback, SDK clients, schema checks.

The server runs in-process (``uvicorn.Server`` in a background thread, on a socket bound to
port 0), so a test can reach into the app's state (``live.threads``: its conversation store,
called synchronously on the server's own event loop; its gate and clock) while talking to it
over real HTTP with the official ``openai`` SDK or httpx.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from jsonschema import Draft202012Validator
from openai import AsyncOpenAI, OpenAI
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.applications import Starlette

from ratekeeper import Engine, ManualClock, MemoryBackend
from ratekeeper.server import ServerSettings, ServiceContext, create_app
from ratekeeper.server._app import openapi_document
from ratekeeper.store import ConversationStore, MemoryStore

API_KEY = "rk-test-key-0123456789"
BETA = {"OpenAI-Beta": "chatkit_beta=v1"}
_DOC_URI = "urn:ratekeeper:openapi"
_STARTUP_TIMEOUT_S = 20.0


class SyncStore:
    """A conversation store's methods, called from a test's thread on the server's loop.

    ``live.threads.create_thread("u")`` runs ``await store.create_thread("u")`` on the event
    loop serving requests (where a database store's connections live) and returns its result.
    """

    def __init__(self, store: ConversationStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self._loop = loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            coro: Coroutine[Any, Any, Any] = method(*args, **kwargs)
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_STARTUP_TIMEOUT_S)

        return call


class _Server(uvicorn.Server):
    """uvicorn's server, remembering the event loop it runs on."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        _LOOPS[id(self.config.app)] = self.loop
        await super().serve(sockets)


# The loop serving each running app (by id), for SyncStore.
_LOOPS: dict[int, asyncio.AbstractEventLoop] = {}


@dataclass
class Live:
    """A running service: its URL, its app state, and ways to talk to it."""

    url: str
    app: Starlette
    clock: ManualClock | None = None

    @property
    def context(self) -> ServiceContext:
        ctx: ServiceContext = self.app.state.ratekeeper
        return ctx

    @property
    def store(self) -> ConversationStore:
        """The app's conversation store (its coroutines run on the server's loop)."""
        return self.context.store

    @property
    def threads(self) -> SyncStore:
        """The app's conversation store, called synchronously (see :class:`SyncStore`)."""
        return SyncStore(self.context.store, _LOOPS[id(self.app)])

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, **options: Any) -> OpenAI:
        """Return a sync SDK client on this server (retries off unless asked for)."""
        options.setdefault("api_key", API_KEY)
        options.setdefault("max_retries", 0)
        return OpenAI(base_url=self.base_url, **options)

    def aclient(self, **options: Any) -> AsyncOpenAI:
        """Return an async SDK client on this server (retries off unless asked for)."""
        options.setdefault("api_key", API_KEY)
        options.setdefault("max_retries", 0)
        return AsyncOpenAI(base_url=self.base_url, **options)

    def http(self) -> httpx.Client:
        """Return a plain httpx client with the API key and the beta header."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {API_KEY}", **BETA},
            timeout=10.0,
        )


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 (a free port) until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(server, thread, url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=_STARTUP_TIMEOUT_S)
        sock.close()
        _LOOPS.pop(id(app), None)


def _wait_healthy(server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
    # Startup, not expiry: poll until uvicorn says it started, then /healthz must answer.
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.005)
    response = httpx.get(f"{url}/healthz", timeout=5.0)
    assert response.status_code == 200, response.text


def make_live(
    *, clock: ManualClock | None = None, **settings: Any
) -> tuple[Starlette, ManualClock | None]:
    """Build an app with the test API key; on ``clock`` when given."""
    backend = MemoryBackend(Engine(clock)) if clock is not None else None
    app = create_app(
        ServerSettings(api_keys=(API_KEY,), **settings),
        backend=backend,
        store=MemoryStore(clock),
        clock=clock,
    )
    return app, clock


@pytest.fixture(scope="session")
def live() -> Iterator[Live]:
    """One service shared by the tests that need no private state (use unique users)."""
    app, _ = make_live()
    with serve(app) as url:
        yield Live(url, app)


@pytest.fixture
def fresh_live() -> Iterator[Live]:
    """A service of this test's own, on a manual clock the test advances."""
    clock = ManualClock(start=1_700_000_000.0)
    app, _ = make_live(clock=clock)
    with serve(app) as url:
        yield Live(url, app, clock)


@pytest.fixture
def user() -> str:
    """A user id no other test uses, so tests can share one server."""
    return f"user_{uuid.uuid4().hex[:12]}"


# -- schema conformance ---------------------------------------------------------------------


def _strict(node: Any) -> Any:
    """Forbid properties a schema does not name, so "matches the schema" means exactly."""
    if isinstance(node, dict):
        node = {key: _strict(value) for key, value in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(value) for value in node]
    return node


class Schemas:
    """Validators for the service's own OpenAPI component schemas, in strict mode."""

    def __init__(self) -> None:
        document = json.loads(openapi_document())
        self.document = document
        strict = copy.deepcopy(document)
        strict["components"]["schemas"] = _strict(strict["components"]["schemas"])
        resource = Resource.from_contents(strict, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_DOC_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}

    def validator(self, name: str) -> Draft202012Validator:
        if name not in self._validators:
            self._validators[name] = Draft202012Validator(
                {"$ref": f"{_DOC_URI}#/components/schemas/{name}"}, registry=self._registry
            )
        return self._validators[name]

    def check(self, name: str, instance: Any) -> None:
        """Fail the test with every violation if ``instance`` does not match schema ``name``."""
        errors = sorted(self.validator(name).iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    """The strict validators of ``ratekeeper/server/openapi.json``."""
    return Schemas()


def error_of(response: httpx.Response, schemas: Schemas) -> dict[str, Any]:
    """Check an error response's shape and headers; return its ``error`` object."""
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    schemas.check("ErrorResponse", body)
    error: dict[str, Any] = body["error"]
    return error


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run async client tests on asyncio and on trio (the server itself runs on asyncio)."""
    backend: str = request.param
    return backend
