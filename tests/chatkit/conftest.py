"""Fixtures for the ChatKit protocol endpoint: the real service on uvicorn, SDK and httpx.

The service is the one ``ratekeeper serve`` runs (``create_app``), so ``POST /chatkit`` is the
endpoint users get. Sessions are minted with the official ``openai`` SDK; protocol requests go
through httpx with the session's client secret; threads are read back with the SDK. Servers
built on a :class:`~ratekeeper.ManualClock` let a test move time (expiry, the exact window).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratekeeper import (
    Engine,
    FileUploadLimits,
    ManualClock,
    MemoryBackend,
    SessionSpec,
    SessionStatus,
)
from ratekeeper import Session as GateSession
from ratekeeper.chatkit import ChatKitContext, ServerFactory
from ratekeeper.server import ServerSettings, create_app
from ratekeeper.store import ConversationStore, MemoryStore, store_from_url
from tests.server.conftest import API_KEY, Live, Schemas, serve

__all__ = ("Protocol", "Session", "Stream", "context", "make_service")

WORKFLOW = {"id": "wf_ratekeeper_tests"}


@dataclass(frozen=True)
class Session:
    """A minted session: its id and its client secret."""

    id: str
    secret: str
    user: str


@dataclass
class Stream:
    """A streaming response read to its end: status, headers and its SSE events in order."""

    status_code: int
    headers: httpx.Headers
    events: list[dict[str, Any]] = field(default_factory=list)
    body: bytes = b""

    def types(self) -> list[str]:
        """The ``type`` of each event, in order."""
        return [str(event["type"]) for event in self.events]

    def first(self, type_: str) -> dict[str, Any]:
        """The first event of ``type_``."""
        return next(event for event in self.events if event["type"] == type_)


def user_input(text: str, attachments: list[str] | None = None) -> dict[str, Any]:
    """A ChatKit ``UserMessageInput`` payload as ChatKit.js sends it."""
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments or [],
        "quoted_text": None,
        "inference_options": {},
    }


class Protocol:
    """Talks to ``POST /chatkit`` the way ChatKit.js does: ``{"type", "params", "metadata"}``."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.http = httpx.Client(base_url=live.url, timeout=10.0)

    def mint(self, user: str | None = None, **options: Any) -> Session:
        """Create a session with the SDK (any ``sessions.create`` argument may be given)."""
        user = user or f"user_{uuid.uuid4().hex[:12]}"
        options.setdefault("workflow", WORKFLOW)
        with self.live.client() as client:
            session = client.beta.chatkit.sessions.create(user=user, **options)
        return Session(session.id, session.client_secret, user)

    def cancel(self, session: Session) -> None:
        """Cancel a session with the SDK."""
        with self.live.client() as client:
            client.beta.chatkit.sessions.cancel(session.id)

    def headers(self, secret: str | None) -> dict[str, str]:
        """The headers of a protocol request carrying ``secret``."""
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        return headers

    def post(self, secret: str | None, type_: str, params: dict[str, Any]) -> httpx.Response:
        """Send a non-streaming request; return the response."""
        body = json.dumps({"type": type_, "params": params, "metadata": {}})
        return self.http.post("/chatkit", content=body, headers=self.headers(secret))

    def stream(self, secret: str | None, type_: str, params: dict[str, Any]) -> Stream:
        """Send a streaming request and read its server-sent events as they arrive."""
        body = json.dumps({"type": type_, "params": params, "metadata": {}})
        with self.http.stream(
            "POST", "/chatkit", content=body, headers=self.headers(secret)
        ) as response:
            result = Stream(response.status_code, response.headers)
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                data: list[str] = []
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        data.append(line[len("data: ") :])
                    elif line == "" and data:
                        result.events.append(json.loads("\n".join(data)))
                        data = []
                assert not data, "the stream ended inside an event"
            else:
                result.body = response.read()
        return result

    def create_thread(self, session: Session, text: str) -> tuple[str, Stream]:
        """``threads.create`` with one message; return the new thread's id and the stream."""
        stream = self.stream(session.secret, "threads.create", {"input": user_input(text)})
        assert stream.status_code == 200, stream.body
        return str(stream.first("thread.created")["thread"]["id"]), stream

    def close(self) -> None:
        self.http.close()


def make_service(
    clock: ManualClock | None = None, server_factory: ServerFactory | None = None
) -> Any:
    """Build the service (optionally on ``clock``, optionally with a custom ChatKit server)."""
    backend = MemoryBackend(Engine(clock)) if clock is not None else None
    return create_app(
        ServerSettings(api_keys=(API_KEY,)),
        backend=backend,
        store=MemoryStore(clock),
        clock=clock,
        chatkit_server_factory=server_factory,
    )


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    """One service on the system clock for this module's tests (each test mints its own user)."""
    app = make_service()
    with serve(app) as url:
        yield Live(url, app)


@pytest.fixture
def clocked() -> Iterator[Live]:
    """A service of this test's own on a manual clock (``live.clock.advance``)."""
    clock = ManualClock(start=1_700_000_000.0)
    app = make_service(clock)
    with serve(app) as url:
        yield Live(url, app, clock)


@pytest.fixture
def protocol(live: Live) -> Iterator[Protocol]:
    """A ChatKit protocol client on the module's service."""
    client = Protocol(live)
    yield client
    client.close()


@pytest.fixture
def clocked_protocol(clocked: Live) -> Iterator[Protocol]:
    """A ChatKit protocol client on the test's manual-clock service."""
    client = Protocol(clocked)
    yield client
    client.close()


# -- conversation stores, for the tests that call the ChatKit stores directly -----------------


def context(user: str = "alice", **options: Any) -> ChatKitContext:
    """The context the endpoint would build for a request of ``user``'s session.

    Uploads are enabled; ``history``, ``automatic_thread_titling`` and any other
    :class:`SessionSpec` field given are the session's.
    """
    spec = SessionSpec(**{"file_upload": FileUploadLimits(enabled=True), **options})
    session = GateSession(
        id=f"cksess_{user}",
        user=user,
        status=SessionStatus.ACTIVE,
        expires_at=2_000_000_000,
        created_at=1_700_000_000.0,
        spec=spec,
    )
    return ChatKitContext(session)


def _sql_missing() -> str | None:
    """Why the SQL store cannot run here, or ``None`` when it can."""
    try:
        import ratekeeper.store._sql  # noqa: F401 - only checking that it imports
    except ImportError as exc:
        return f"ratekeeper.store._sql cannot be imported yet: {exc}"
    return None


_SQL_MISSING = _sql_missing()

#: (conversation store, event loop) pairs. The memory store runs on both loops; the SQL store
#: on asyncio, which its drivers need.
STORES = [
    pytest.param(("memory", "asyncio"), id="memory-asyncio"),
    pytest.param(("memory", "trio"), id="memory-trio"),
    pytest.param(
        ("sqlite", "asyncio"),
        id="sqlite-asyncio",
        marks=pytest.mark.skipif(_SQL_MISSING is not None, reason=str(_SQL_MISSING)),
    ),
]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Which conversation store, on which event loop."""
    kind: tuple[str, str] = request.param
    return kind


@pytest.fixture
def anyio_backend(store_kind: tuple[str, str]) -> str:
    """The event loop the store's parameter names."""
    return store_kind[1]


@pytest.fixture
async def conversations(
    store_kind: tuple[str, str], tmp_path: Path
) -> AsyncIterator[ConversationStore]:
    """An empty, opened conversation store: in memory, or SQLite in a file of this test's."""
    if store_kind[0] == "memory":
        yield MemoryStore()
        return
    store = store_from_url(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture(scope="session")
def schemas() -> Schemas:
    """The strict validators of the service's OpenAPI schemas."""
    return Schemas()
