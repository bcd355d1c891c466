"""Your own ChatKitServer behind the gate, and the one-call helper for other frameworks.

Both run on uvicorn on loopback: the service with ``chatkit_server_factory``, and a gateway
app of its own that guards its ChatKit route with ``admit_authorization`` the way a FastAPI
app would (FastAPI responses are Starlette responses).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import pytest
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import AttachmentStore, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ratekeeper import Engine, Gate
from ratekeeper.chatkit import (
    ChatKitAttachmentStore,
    ChatKitContext,
    ChatKitLimitError,
    ChatKitStore,
    EchoChatKitServer,
    admit_authorization,
    adopt_stored_title,
    echo_text,
    verdict_response,
)
from ratekeeper.store import MemoryStore
from tests.server.conftest import Live, serve

from .conftest import Protocol, make_service, user_input

WHEN = datetime(2025, 6, 1, 12, 0, 0)


class WhoAmI(ChatKitServer[ChatKitContext]):
    """A server of a user's own: replies with what it learns from the request context."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        await adopt_stored_title(self.store, thread, context)
        text = echo_text(input_user_message)
        if text == "refuse":
            raise ChatKitLimitError("Not on this plan.", status_code=403, code="plan_limit")
        if text == "crash":
            raise RuntimeError("the model fell over")
        decision = context.decision
        remaining = decision.remaining if decision is not None else None
        reply = f"{context.user} on {context.session_id}, {remaining} left"
        yield ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                # No clock of its own: answer "at" the question, after it in the thread.
                created_at=input_user_message.created_at if input_user_message else WHEN,
                content=[AssistantMessageContent(text=reply)],
            )
        )


class BrokenStore(ChatKitStore):
    """Fails to save one particular message: an error before openai-chatkit's own handling."""

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: ChatKitContext
    ) -> None:
        if isinstance(item, UserMessageItem) and echo_text(item) == "break the store":
            raise OSError("disk full")
        await super().add_thread_item(thread_id, item, context)


def who_am_i(
    store: ChatKitStore, attachments: ChatKitAttachmentStore
) -> ChatKitServer[ChatKitContext]:
    broken: Store[ChatKitContext] = BrokenStore(store.conversations)
    attachment_store: AttachmentStore[ChatKitContext] = attachments
    return WhoAmI(broken, attachment_store)


@pytest.fixture(scope="module")
def custom() -> Iterator[Live]:
    app = make_service(server_factory=who_am_i)
    with serve(app) as url:
        yield Live(url, app)


@pytest.fixture
def custom_protocol(custom: Live) -> Iterator[Protocol]:
    client = Protocol(custom)
    yield client
    client.close()


def test_your_server_gets_the_session_in_its_context(
    custom: Live, custom_protocol: Protocol
) -> None:
    """The context carries the session behind the secret; threads land in the REST store."""
    session = custom_protocol.mint(rate_limits={"max_requests_per_1_minute": 5})
    thread_id, stream = custom_protocol.create_thread(session, "who am I?")
    done = [event for event in stream.events if event["type"] == "thread.item.done"]
    reply = done[-1]["item"]["content"][0]["text"]
    assert reply == f"{session.user} on {session.id}, 4 left"
    assert stream.first("thread.updated")["thread"]["title"] == "who am I?"
    with custom.client() as client:
        items = client.beta.chatkit.threads.list_items(thread_id, order="asc").data
        assert client.beta.chatkit.threads.retrieve(thread_id).user == session.user
    assert [item.type for item in items] == ["chatkit.user_message", "chatkit.assistant_message"]


def test_the_gate_wraps_your_server(custom_protocol: Protocol) -> None:
    """Your server sees only admitted requests: the 2nd of 1 per minute is a 429."""
    session = custom_protocol.mint(rate_limits={"max_requests_per_1_minute": 1})
    custom_protocol.create_thread(session, "one")
    refused = custom_protocol.stream(session.secret, "threads.list", {})
    assert refused.status_code == 429
    assert json.loads(refused.body)["error"]["code"] == "rate_limit_exceeded"


def test_errors_inside_a_stream_are_chatkit_error_events(custom_protocol: Protocol) -> None:
    """A refusal raised by respond, a crash in respond, a failing store: error events, no 500."""
    session = custom_protocol.mint()
    thread_id, _ = custom_protocol.create_thread(session, "start")

    def send(text: str) -> list[dict[str, object]]:
        stream = custom_protocol.stream(
            session.secret,
            "threads.add_user_message",
            {"thread_id": thread_id, "input": user_input(text)},
        )
        assert stream.status_code == 200
        return stream.events

    refused = send("refuse")[-1]
    assert refused == {
        "type": "error",
        "code": "custom",
        "message": "Not on this plan.",
        "allow_retry": False,
    }
    crashed = send("crash")[-1]
    assert crashed == {"type": "error", "code": "stream.error", "allow_retry": True}
    broken = send("break the store")
    assert broken[-1] == {"type": "error", "code": "stream.error", "allow_retry": True}
    assert "the model fell over" not in json.dumps(crashed)


# -- the one-call helper, in a gateway app of its own ------------------------------------------


def gateway_app() -> Starlette:
    """A gateway that serves ChatKit itself and asks ratekeeper only to admit requests."""
    gate = Gate(Engine())
    server = EchoChatKitServer(ChatKitStore(MemoryStore()))

    async def mint(request: Request) -> Response:
        # Stands in for the app's own session minting (the service's POST /v1/chatkit/sessions).
        session = await gate.create_session("gw-user", max_requests_per_1_minute=2)
        return JSONResponse({"client_secret": session.client_secret})

    async def chatkit(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        verdict, session = await admit_authorization(gate, authorization)
        if not verdict.allowed:
            return verdict_response(verdict)
        assert session is not None
        context = ChatKitContext(session, verdict.decision)
        result = await server.process(await request.body(), context)
        headers = dict(verdict.headers)
        if isinstance(result, StreamingResult):
            return StreamingResponse(result, media_type="text/event-stream", headers=headers)
        return Response(result.json, media_type="application/json", headers=headers)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with gate:
            yield

    return Starlette(
        routes=[
            Route("/mint", mint, methods=["POST"]),
            Route("/my/chatkit", chatkit, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def test_admit_authorization_guards_a_route_of_another_framework() -> None:
    """401 without a secret, admitted with the headers, 429 past the limit."""
    body = json.dumps({"type": "threads.create", "params": {"input": user_input("hi")}})
    with serve(gateway_app()) as url, httpx.Client(base_url=url, timeout=10.0) as http:
        secret = http.post("/mint").json()["client_secret"]
        auth = {"Authorization": f"Bearer {secret}"}
        assert http.post("/my/chatkit", content=body).status_code == 401
        first = http.post("/my/chatkit", content=body, headers=auth)
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/event-stream")
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert '"thread.created"' in first.text
        listed = http.post(
            "/my/chatkit", content=json.dumps({"type": "threads.list", "params": {}}), headers=auth
        )
        assert listed.status_code == 200
        assert len(listed.json()["data"]) == 1
        refused = http.post("/my/chatkit", content=body, headers=auth)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "60"
