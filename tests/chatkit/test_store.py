"""The Store adapter: ChatKit models in, REST shapes out (and back), per user, in order.

No server here: the adapter is called as ``ChatKitServer`` calls it, on asyncio and on trio
(it awaits nothing of its own), and the REST view is read from the same ``ThreadStore`` the
REST routes read, checked against the service's OpenAPI schemas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from chatkit.store import NotFoundError
from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    AttachmentCreateParams,
    ClientToolCallItem,
    ClosedStatus,
    CustomTask,
    EndOfTurnItem,
    EntitySource,
    FileAttachment,
    FileSource,
    InferenceOptions,
    LockedStatus,
    SDKHiddenContextItem,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    ThreadMetadata,
    ToolChoice,
    URLSource,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from chatkit.widgets import DynamicWidgetRoot

from ratekeeper import FileUploadLimits, HistoryLimits, Session, SessionStatus
from ratekeeper.chatkit import (
    ChatKitContext,
    MemoryAttachmentStore,
    ThreadStoreAdapter,
    UploadRefused,
)
from ratekeeper.server import ThreadStatus, ThreadStore, user_message
from tests.server.conftest import Schemas

pytestmark = pytest.mark.anyio

T0 = datetime(2025, 1, 2, 3, 4, 5)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The adapter is plain async code: run it on both event loops."""
    return str(request.param)


def context(user: str = "alice", **attributes: Any) -> ChatKitContext:
    history = attributes.pop("history", HistoryLimits())
    session = Session(
        id=f"cksess_{user}",
        user=user,
        status=SessionStatus.ACTIVE,
        expires_at=2_000_000_000,
        created_at=1_700_000_000.0,
        max_requests_per_1_minute=10,
        file_upload=FileUploadLimits(enabled=True),
        history=history,
        attributes=attributes,
    )
    return ChatKitContext(session)


@pytest.fixture
def threads() -> ThreadStore:
    return ThreadStore()


@pytest.fixture
def store(threads: ThreadStore) -> ThreadStoreAdapter:
    return ThreadStoreAdapter(threads)


async def new_thread(store: ThreadStoreAdapter, ctx: ChatKitContext, **fields: Any) -> str:
    thread = ThreadMetadata(id=store.generate_thread_id(ctx), created_at=T0, **fields)
    await store.save_thread(thread, ctx)
    return thread.id


def message(thread_id: str, text: str, n: int = 0, **fields: Any) -> UserMessageItem:
    return UserMessageItem(
        id=f"cthi_user_{n}",
        thread_id=thread_id,
        created_at=T0.replace(second=n),
        content=[UserMessageTextContent(text=text)],
        inference_options=InferenceOptions(),
        **fields,
    )


def every_rest_item(thread_id: str) -> list[ThreadItem]:
    """One ChatKit item of each kind the REST schema can show."""
    at = T0.replace(minute=10, second=0)
    return [
        UserMessageItem(
            id="cthi_u",
            thread_id=thread_id,
            created_at=at,
            content=[
                UserMessageTextContent(text="look at "),
                UserMessageTagContent(id="doc1", text="@Report", data={"k": 1}),
            ],
            attachments=[FileAttachment(id="atc_1", name="r.pdf", mime_type="application/pdf")],
            quoted_text="an earlier line",
            inference_options=InferenceOptions(tool_choice=ToolChoice(id="search"), model="m1"),
        ),
        AssistantMessageItem(
            id="cthi_a",
            thread_id=thread_id,
            created_at=at.replace(second=1),
            content=[
                AssistantMessageContent(
                    text="see sources",
                    annotations=[
                        Annotation(source=URLSource(url="https://example.com/x", title="x")),
                        Annotation(source=FileSource(filename="r.pdf", title="r")),
                        Annotation(source=EntitySource(id="e1", title="entity")),
                    ],
                )
            ],
        ),
        ClientToolCallItem(
            id="cthi_c",
            thread_id=thread_id,
            created_at=at.replace(second=2),
            call_id="call_1",
            name="get_weather",
            arguments={"city": "Oslo"},
            status="completed",
            output={"temp": 3},
        ),
        WidgetItem(
            id="cthi_w",
            thread_id=thread_id,
            created_at=at.replace(second=3),
            widget=DynamicWidgetRoot.model_validate({"type": "Card", "children": []}),
        ),
        TaskItem(
            id="cthi_t",
            thread_id=thread_id,
            created_at=at.replace(second=4),
            task=ThoughtTask(title="Thinking", content="about it"),
        ),
        WorkflowItem(
            id="cthi_g",
            thread_id=thread_id,
            created_at=at.replace(second=5),
            workflow=Workflow(
                type="custom",
                tasks=[CustomTask(title="Step 1", content="done"), ThoughtTask(content="hm")],
            ),
        ),
    ]


async def test_every_item_kind_gets_its_rest_shape_and_comes_back_unchanged(
    store: ThreadStoreAdapter, threads: ThreadStore
) -> None:
    """Each kind maps to its REST item (schema-valid); the ChatKit view loses nothing."""
    schemas = Schemas()
    ctx = context()
    thread_id = await new_thread(store, ctx)
    items = every_rest_item(thread_id)
    for item in items:
        await store.add_thread_item(thread_id, item, ctx)

    rest = [stored.to_json() for stored in threads.list_items(thread_id, order="asc").data]
    for entry in rest:
        schemas.check("ThreadItem", entry)
    user, assistant, tool, widget, task, group = rest
    assert user["content"] == [
        {"type": "input_text", "text": "look at "},
        {"type": "input_text", "text": "@Report"},
        {"type": "quoted_text", "text": "an earlier line"},
    ]
    assert user["attachments"] == [
        {
            "type": "file",
            "id": "atc_1",
            "name": "r.pdf",
            "mime_type": "application/pdf",
            "preview_url": None,
        }
    ]
    assert user["inference_options"] == {"tool_choice": {"id": "search"}, "model": "m1"}
    assert assistant["content"][0]["annotations"] == [
        {"type": "url", "source": {"type": "url", "url": "https://example.com/x"}},
        {"type": "file", "source": {"type": "file", "filename": "r.pdf"}},
    ]
    assert (tool["status"], tool["arguments"], tool["output"]) == (
        "completed",
        '{"city":"Oslo"}',
        '{"temp":3}',
    )
    assert widget["widget"] == '{"type":"Card","children":[]}'
    assert (task["task_type"], task["heading"], task["summary"]) == (
        "thought",
        "Thinking",
        "about it",
    )
    assert group["tasks"] == [
        {"type": "custom", "heading": "Step 1", "summary": "done"},
        {"type": "thought", "heading": None, "summary": "hm"},
    ]
    assert {entry["created_at"] for entry in rest} == {
        int(T0.replace(minute=10, second=0).timestamp()) + i for i in range(6)
    }

    page = await store.load_thread_items(thread_id, None, 20, "asc", ctx)
    assert page.data == items
    for item in items:
        assert await store.load_item(thread_id, item.id, ctx) == item


async def test_items_rest_cannot_show_stay_in_order_for_chatkit_only(
    store: ThreadStoreAdapter, threads: ThreadStore
) -> None:
    """Hidden context and end-of-turn items are kept in place, never listed over REST."""
    ctx = context()
    thread_id = await new_thread(store, ctx)
    first = message(thread_id, "hi", 1)
    hidden = SDKHiddenContextItem(
        id="cthi_h", thread_id=thread_id, created_at=T0.replace(second=2), content="cancelled"
    )
    reply = AssistantMessageItem(
        id="cthi_r",
        thread_id=thread_id,
        created_at=T0.replace(second=3),
        content=[AssistantMessageContent(text="hello")],
    )
    end = EndOfTurnItem(id="cthi_e", thread_id=thread_id, created_at=T0.replace(second=4))
    for item in (first, hidden, reply, end):
        await store.add_thread_item(thread_id, item, ctx)

    assert [i.id for i in threads.list_items(thread_id, order="asc").data] == [
        first.id,
        reply.id,
    ]
    asc = await store.load_thread_items(thread_id, None, 20, "asc", ctx)
    assert [i.id for i in asc.data] == [first.id, hidden.id, reply.id, end.id]
    page = await store.load_thread_items(thread_id, None, 2, "desc", ctx)
    assert [i.id for i in page.data] == [end.id, reply.id]
    assert (page.has_more, page.after) == (True, reply.id)
    rest = await store.load_thread_items(thread_id, page.after, 2, "desc", ctx)
    assert [i.id for i in rest.data] == [hidden.id, first.id]
    assert (rest.has_more, rest.after) == (False, None)
    assert await store.load_item(thread_id, hidden.id, ctx) == hidden

    await store.delete_thread_item(thread_id, hidden.id, ctx)
    await store.delete_thread_item(thread_id, "cthi_never_existed", ctx)
    remaining = await store.load_thread_items(thread_id, None, 20, "asc", ctx)
    assert [i.id for i in remaining.data] == [first.id, reply.id, end.id]


async def test_save_item_replaces_in_place(store: ThreadStoreAdapter, threads: ThreadStore) -> None:
    """save_item updates an item where it is, in both views."""
    ctx = context()
    thread_id = await new_thread(store, ctx)
    call = ClientToolCallItem(
        id="cthi_call",
        thread_id=thread_id,
        created_at=T0,
        call_id="c1",
        name="lookup",
        arguments={},
    )
    await store.add_thread_item(thread_id, call, ctx)
    await store.add_thread_item(thread_id, message(thread_id, "after", 9), ctx)
    done = call.model_copy(update={"status": "completed", "output": "ok"})
    await store.save_item(thread_id, done, ctx)

    rest = threads.list_items(thread_id, order="asc").data
    assert [i.id for i in rest] == ["cthi_call", "cthi_user_9"]
    assert rest[0].content["status"] == "completed"
    assert rest[0].content["output"] == '"ok"'
    assert await store.load_item(thread_id, "cthi_call", ctx) == done
    new = message(thread_id, "saved fresh", 10)
    await store.save_item(thread_id, new, ctx)  # upsert: a new item is added
    assert (await store.load_item(thread_id, new.id, ctx)) == new


async def test_another_users_threads_and_attachments_do_not_exist(
    store: ThreadStoreAdapter,
) -> None:
    """Every call is scoped by the session's user."""
    alice, bob = context("alice"), context("bob")
    thread_id = await new_thread(store, alice)
    await store.add_thread_item(thread_id, message(thread_id, "mine"), alice)
    attachment = FileAttachment(id="atc_x", name="a", mime_type="text/plain")
    await store.save_attachment(attachment, alice)

    with pytest.raises(NotFoundError):
        await store.load_thread(thread_id, bob)
    with pytest.raises(NotFoundError):
        await store.load_thread_items(thread_id, None, 10, "asc", bob)
    with pytest.raises(NotFoundError):
        await store.add_thread_item(thread_id, message(thread_id, "theirs", 1), bob)
    with pytest.raises(NotFoundError):
        await store.save_thread(ThreadMetadata(id=thread_id, created_at=T0), bob)
    with pytest.raises(NotFoundError):
        await store.delete_thread(thread_id, bob)
    with pytest.raises(NotFoundError):
        await store.load_attachment("atc_x", bob)
    with pytest.raises(NotFoundError):
        await store.save_attachment(attachment, bob)
    assert (await store.load_threads(10, None, "desc", bob)).data == []
    assert await store.load_attachment("atc_x", alice) == attachment


async def test_save_thread_keeps_titles_and_maps_status(
    store: ThreadStoreAdapter, threads: ThreadStore
) -> None:
    """Title, status and creation time reach REST; a None title never clears one."""
    ctx = context()
    thread = ThreadMetadata(
        id="cthr_1", created_at=T0, title="Plans", metadata={"k": "v"}, status=LockedStatus()
    )
    await store.save_thread(thread, ctx)
    stored = threads.get_thread("cthr_1")
    assert (stored.user, stored.title, stored.created_at) == ("alice", "Plans", int(T0.timestamp()))
    assert stored.status == ThreadStatus("locked", None)

    untitled = thread.model_copy(update={"title": None, "status": ClosedStatus(reason="done")})
    await store.save_thread(untitled, ctx)
    assert threads.get_thread("cthr_1").title == "Plans"
    assert threads.get_thread("cthr_1").status == ThreadStatus("closed", "done")
    loaded = await store.load_thread("cthr_1", ctx)
    assert (loaded.title, loaded.metadata, loaded.created_at) == ("Plans", {"k": "v"}, T0)
    assert loaded.status == ClosedStatus(reason="done")


async def test_titling_takes_the_first_user_message_only_when_enabled(
    store: ThreadStoreAdapter, threads: ThreadStore
) -> None:
    """The first user message titles an untitled thread; later ones and disabled sessions don't."""
    on, off = context(), context(automatic_thread_titling=False)
    titled = await new_thread(store, on)
    await store.add_thread_item(titled, message(titled, "  What is\nthe plan? ", 1), on)
    await store.add_thread_item(titled, message(titled, "second", 2), on)
    assert threads.get_thread(titled).title == "What is the plan?"

    untitled = await new_thread(store, off)
    await store.add_thread_item(untitled, message(untitled, "no title please", 1), off)
    assert threads.get_thread(untitled).title is None
    await store.add_thread_item(untitled, message(untitled, "still none", 2), on)
    assert threads.get_thread(untitled).title is None  # not the first message any more

    only_file = await new_thread(store, on)
    attachment = FileAttachment(id="atc_f", name="report.pdf", mime_type="application/pdf")
    empty = message(only_file, "", 1, attachments=[attachment])
    await store.add_thread_item(only_file, empty, on)
    assert threads.get_thread(only_file).title == "report.pdf"


async def test_recent_threads_window_and_order(store: ThreadStoreAdapter) -> None:
    """load_threads shows the ``recent_threads`` newest, paged in either order."""
    plain = context()
    ids = []
    for n in range(4):
        thread = ThreadMetadata(id=f"cthr_{n}", created_at=T0.replace(second=n))
        await store.save_thread(thread, plain)
        ids.append(thread.id)
    everything = await store.load_threads(3, None, "desc", plain)
    assert [t.id for t in everything.data] == ids[::-1][:3]
    assert (everything.has_more, everything.after) == (True, ids[1])

    windowed = context(history=HistoryLimits(enabled=True, recent_threads=2))
    desc = await store.load_threads(20, None, "desc", windowed)
    assert [t.id for t in desc.data] == [ids[3], ids[2]]
    asc = await store.load_threads(1, None, "asc", windowed)
    assert [t.id for t in asc.data] == [ids[2]]
    assert (asc.has_more, asc.after) == (True, ids[2])
    out_of_window = await store.load_threads(5, ids[0], "desc", windowed)
    assert out_of_window.data == []


async def test_rest_seeded_items_of_every_kind_load_as_chatkit_items(
    store: ThreadStoreAdapter, threads: ThreadStore
) -> None:
    """Items seeded straight into the ThreadStore convert to ChatKit's models."""
    ctx = context()
    thread = threads.create_thread("alice", title="seeded", status=ThreadStatus("closed", "x"))
    add = threads.add_item
    image = {
        "type": "image",
        "id": "atc_i",
        "name": "p.png",
        "mime_type": "image/png",
        "preview_url": "https://e.com/p.png",
    }
    add(thread.id, user_message("hi", attachments=[image]), created_at=1)
    add(
        thread.id,
        {
            "type": "chatkit.client_tool_call",
            "status": "in_progress",
            "call_id": "c",
            "name": "n",
            "arguments": '{"a": 1}',
            "output": None,
        },
        created_at=2,
    )
    add(
        thread.id,
        {"type": "chatkit.task", "task_type": "custom", "heading": "H", "summary": None},
        created_at=3,
    )
    add(
        thread.id,
        {
            "type": "chatkit.task_group",
            "tasks": [{"type": "thought", "heading": None, "summary": "s"}],
        },
        created_at=4,
    )
    add(thread.id, {"type": "chatkit.widget", "widget": '{"type": "Card"}'}, created_at=5)
    add(thread.id, {"type": "chatkit.widget", "widget": "not json"}, created_at=6)

    loaded = await store.load_thread(thread.id, ctx)
    assert (loaded.title, loaded.status) == ("seeded", ClosedStatus(reason="x"))
    items = (await store.load_thread_items(thread.id, None, 20, "asc", ctx)).data
    kinds = [item.type for item in items]
    assert kinds == [
        "user_message",
        "client_tool_call",
        "task",
        "workflow",
        "widget",
        "hidden_context_item",  # unreadable widget: kept out of the client's sight
    ]
    user, call, task, group, widget, _ = items
    assert isinstance(user, UserMessageItem)
    assert user.attachments[0].type == "image"
    assert isinstance(call, ClientToolCallItem)
    assert (call.status, call.arguments) == ("pending", {"a": 1})
    assert isinstance(task, TaskItem)
    assert task.task == CustomTask(title="H")
    assert isinstance(group, WorkflowItem)
    assert group.workflow.tasks == [ThoughtTask(content="s")]
    assert isinstance(widget, WidgetItem)
    assert widget.widget.type == "Card"


async def test_a_thread_deleted_through_rest_is_gone_for_the_protocol(
    store: ThreadStoreAdapter, threads: ThreadStore
) -> None:
    """REST deletion wins: the adapter forgets what it kept and reports NotFoundError."""
    ctx = context()
    thread_id = await new_thread(store, ctx)
    end = EndOfTurnItem(id="cthi_e", thread_id=thread_id, created_at=T0)
    await store.add_thread_item(thread_id, end, ctx)
    threads.delete_thread(thread_id)
    with pytest.raises(NotFoundError):
        await store.load_thread_items(thread_id, None, 10, "asc", ctx)
    with pytest.raises(NotFoundError):
        await store.load_item(thread_id, end.id, ctx)


async def test_an_upload_finishing_after_another_or_after_delete_is_refused() -> None:
    """Two uploads racing on one token, or a delete during an upload: 404, never a KeyError."""
    attachments = MemoryAttachmentStore()
    ctx = context("alice")
    params = AttachmentCreateParams(name="a.txt", size=4, mime_type="text/plain")
    created = await attachments.create_attachment(params, ctx)
    assert created.upload_descriptor is not None
    token = parse_qs(urlsplit(str(created.upload_descriptor.url)).query)["token"][0]
    first = attachments.pending(created.id, token)
    second = attachments.pending(created.id, token)  # read before the first one finished
    assert first is not None
    assert second is not None
    attachments.accept(first, b"1234")
    with pytest.raises(UploadRefused) as raced:
        attachments.accept(second, b"5678")
    assert (raced.value.status_code, raced.value.code) == (404, "upload_not_found")
    assert await attachments.read(created.id, ctx) == b"1234"
    assert attachments.total_bytes == 4

    deleted = await attachments.create_attachment(params, ctx)
    assert deleted.upload_descriptor is not None
    token = parse_qs(urlsplit(str(deleted.upload_descriptor.url)).query)["token"][0]
    pending = attachments.pending(deleted.id, token)
    assert pending is not None
    await attachments.delete_attachment(deleted.id, ctx)
    with pytest.raises(UploadRefused):
        attachments.accept(pending, b"1234")
    assert attachments.total_bytes == 4
