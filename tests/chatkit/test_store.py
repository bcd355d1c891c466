"""The ChatKit Store: ChatKit models in, REST shapes out (and back), per user, in order.

No server here: ``ChatKitStore`` is called as ``ChatKitServer`` calls it, over each
conversation store (memory on asyncio and trio, SQLite on asyncio: see ``conftest.STORES``),
and the REST view is read from the same conversation store the REST routes read, checked
against the service's OpenAPI schemas. ChatKit's own models are kept as JSON beside the REST
shapes, so the ChatKit view reads back exactly what was saved.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_args

import pytest
from chatkit.store import NotFoundError
from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    ClientToolCallItem,
    ClosedStatus,
    CustomTask,
    EndOfTurnItem,
    EntitySource,
    FileAttachment,
    FileSource,
    GeneratedImage,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    InferenceOptions,
    LockedStatus,
    SDKHiddenContextItem,
    StructuredInputFreeform,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    StructuredInputMultipleChoiceOption,
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
from chatkit.widgets import Badge, Card, DynamicWidgetRoot, Row, Text
from pydantic import AnyUrl

from ratekeeper import HistoryLimits
from ratekeeper.chatkit import ChatKitContext, ChatKitStore
from ratekeeper.chatkit._rest_shapes import chatkit_item
from ratekeeper.store import ConversationStore, StoredItem, ThreadStatus, user_message
from tests.server.conftest import Schemas

from .conftest import context

pytestmark = pytest.mark.anyio

T0 = datetime(2025, 1, 2, 3, 4, 5)


@pytest.fixture
def store(conversations: ConversationStore) -> ChatKitStore:
    """The ChatKit Store over this test's conversation store."""
    return ChatKitStore(conversations)


async def rest_items(conversations: ConversationStore, thread_id: str) -> list[StoredItem]:
    """The thread's items as the REST surface lists them, oldest first."""
    return (await conversations.list_items(thread_id, limit=100, order="asc")).data


async def every_item(conversations: ConversationStore, thread_id: str) -> list[StoredItem]:
    """All the thread's stored items, hidden ones included, oldest first."""
    page = await conversations.list_items(thread_id, limit=100, order="asc", include_hidden=True)
    return page.data


async def new_thread(store: ChatKitStore, ctx: ChatKitContext, **fields: Any) -> str:
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
    store: ChatKitStore, conversations: ConversationStore
) -> None:
    """Each kind maps to its REST item (schema-valid); the ChatKit view loses nothing."""
    schemas = Schemas()
    ctx = context()
    thread_id = await new_thread(store, ctx)
    items = every_rest_item(thread_id)
    for item in items:
        await store.add_thread_item(thread_id, item, ctx)

    rest = [stored.to_json() for stored in await rest_items(conversations, thread_id)]
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
    for stored, item in zip(await every_item(conversations, thread_id), items, strict=True):
        assert stored.extra == item.model_dump(mode="json")  # the model, kept as JSON
        assert chatkit_item(stored) == item  # ...and reads back as exactly that model


async def test_items_rest_cannot_show_stay_in_order_for_chatkit_only(
    store: ChatKitStore, conversations: ConversationStore
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

    assert [i.id for i in await rest_items(conversations, thread_id)] == [first.id, reply.id]
    asc = await store.load_thread_items(thread_id, None, 20, "asc", ctx)
    assert [i.id for i in asc.data] == [first.id, hidden.id, reply.id, end.id]
    page = await store.load_thread_items(thread_id, None, 2, "desc", ctx)
    assert [i.id for i in page.data] == [end.id, reply.id]
    assert (page.has_more, page.after) == (True, reply.id)
    rest = await store.load_thread_items(thread_id, page.after, 2, "desc", ctx)
    assert [i.id for i in rest.data] == [hidden.id, first.id]
    assert (rest.has_more, rest.after) == (False, None)
    assert await store.load_item(thread_id, hidden.id, ctx) == hidden
    kept = {stored.id: stored for stored in await every_item(conversations, thread_id)}
    for item in (hidden, end):  # stored as hidden items: no REST content, the model as JSON
        assert (kept[item.id].content, kept[item.id].hidden) == (None, True)
        assert kept[item.id].extra == item.model_dump(mode="json")

    await store.delete_thread_item(thread_id, hidden.id, ctx)
    await store.delete_thread_item(thread_id, "cthi_never_existed", ctx)
    remaining = await store.load_thread_items(thread_id, None, 20, "asc", ctx)
    assert [i.id for i in remaining.data] == [first.id, reply.id, end.id]


def every_item_type(thread_id: str) -> list[ThreadItem]:
    """One ChatKit item of every type openai-chatkit 1.6 has, hidden ones among the others.

    Timestamps carry microseconds (and one a UTC offset), which the REST view rounds down and
    the ChatKit view keeps.
    """
    at = T0.replace(minute=20, microsecond=123_456)

    def when(second: int) -> datetime:
        return at.replace(second=second)

    return [
        UserMessageItem(
            id="cthi_every_user",
            thread_id=thread_id,
            created_at=when(0),
            content=[
                UserMessageTextContent(text="compare "),
                UserMessageTagContent(
                    id="doc1", text="@Report", data={"k": [1, 2.5, None]}, group="docs"
                ),
            ],
            attachments=[
                FileAttachment(
                    id="atc_f", name="r.pdf", mime_type="application/pdf", thread_id=thread_id
                ),
                ImageAttachment(
                    id="atc_i",
                    name="p.png",
                    mime_type="image/png",
                    preview_url=AnyUrl("https://example.com/p.png?token=t"),
                    metadata={"source": "upload"},
                ),
            ],
            quoted_text="an earlier line",
            inference_options=InferenceOptions(tool_choice=ToolChoice(id="search"), model="m1"),
        ),
        SDKHiddenContextItem(
            id="cthi_every_sdk", thread_id=thread_id, created_at=when(1), content="cancelled"
        ),
        AssistantMessageItem(
            id="cthi_every_assistant",
            thread_id=thread_id,
            created_at=when(2),
            content=[
                AssistantMessageContent(
                    text="see sources",
                    annotations=[
                        Annotation(source=URLSource(url="https://example.com/x", title="x")),
                        Annotation(source=FileSource(filename="r.pdf", title="r"), index=3),
                        Annotation(source=EntitySource(id="e1", title="entity", data={"n": 1})),
                    ],
                ),
                AssistantMessageContent(text="second part"),
            ],
        ),
        HiddenContextItem(
            id="cthi_every_hidden",
            thread_id=thread_id,
            created_at=when(3),
            content={"notes": ["a", "b"], "depth": 2, "done": False},
        ),
        ClientToolCallItem(
            id="cthi_every_call",
            thread_id=thread_id,
            created_at=when(4),
            call_id="call_1",
            name="get_weather",
            arguments={"city": "Oslo", "days": [1, 2]},
        ),
        GeneratedImageItem(
            id="cthi_every_image",
            thread_id=thread_id,
            created_at=when(5).astimezone(),  # aware: the same instant, with a UTC offset
            image=GeneratedImage(id="img_1", url="https://example.com/generated.png"),
        ),
        WidgetItem(
            id="cthi_every_widget",
            thread_id=thread_id,
            created_at=when(6),
            widget=DynamicWidgetRoot.model_validate(
                {
                    "type": "Card",
                    "size": "sm",
                    "children": [
                        {"type": "Text", "value": "hi", "weight": "bold"},
                        {"type": "Row", "children": [{"type": "Badge", "label": "new"}]},
                    ],
                }
            ),
            copy_text="hi new",
        ),
        StructuredInputItem(
            id="cthi_every_input",
            thread_id=thread_id,
            created_at=when(7),
            status="answered",
            inputs=[
                StructuredInputMultipleChoice(
                    id="q1",
                    question="Which?",
                    options=[StructuredInputMultipleChoiceOption(value="a")],
                    multiple=True,
                ),
                StructuredInputFreeform(id="q2", question="Why?", description="say"),
            ],
        ),
        TaskItem(
            id="cthi_every_task",
            thread_id=thread_id,
            created_at=when(8),
            task=ThoughtTask(title="Thinking", content="about it"),
        ),
        WorkflowItem(
            id="cthi_every_workflow",
            thread_id=thread_id,
            created_at=when(9),
            workflow=Workflow(
                type="custom",
                tasks=[CustomTask(title="Step 1", content="done"), ThoughtTask(content="hm")],
            ),
        ),
        EndOfTurnItem(id="cthi_every_end", thread_id=thread_id, created_at=when(10)),
    ]


#: The item types REST has a shape for; every other one is stored hidden.
REST_TYPES = {"user_message", "assistant_message", "client_tool_call", "widget", "task", "workflow"}


async def test_every_item_type_reads_back_as_saved_in_order_with_hidden_ones_in_place(
    store: ChatKitStore, conversations: ConversationStore
) -> None:
    """All eleven item types come back equal to what was saved, hidden ones in their place."""
    ctx = context()
    thread_id = await new_thread(store, ctx)
    items = every_item_type(thread_id)
    every_type = {
        member.model_fields["type"].default for member in get_args(get_args(ThreadItem)[0])
    }
    assert {item.type for item in items} == every_type  # every type this openai-chatkit has
    for item in items:
        await store.add_thread_item(thread_id, item, ctx)

    asc = await store.load_thread_items(thread_id, None, 20, "asc", ctx)
    assert asc.data == items
    desc = await store.load_thread_items(thread_id, None, 20, "desc", ctx)
    assert desc.data == items[::-1]
    paged: list[ThreadItem] = []
    after = None
    while True:
        page = await store.load_thread_items(thread_id, after, 3, "asc", ctx)
        paged += page.data
        if not page.has_more:
            break
        after = page.after
    assert paged == items
    for item in items:
        assert await store.load_item(thread_id, item.id, ctx) == item
    # No state of its own: another ChatKitStore on the same conversations (another worker,
    # say) reads the same.
    assert (
        await ChatKitStore(conversations).load_thread_items(thread_id, None, 20, "asc", ctx)
    ).data == items

    stored = await every_item(conversations, thread_id)
    assert [s.id for s in stored] == [item.id for item in items]
    for kept, item in zip(stored, items, strict=True):
        assert kept.extra == item.model_dump(mode="json")
        assert chatkit_item(kept) == item
        assert kept.hidden == (item.type not in REST_TYPES)
        assert kept.created_at == int(item.created_at.timestamp())
    visible = [item.id for item in items if item.type in REST_TYPES]
    assert [s.id for s in await rest_items(conversations, thread_id)] == visible


async def test_saved_items_of_every_type_replace_in_place(
    store: ChatKitStore, conversations: ConversationStore
) -> None:
    """save_item over each type (hidden ones too) reads back as the new version, in place."""
    ctx = context()
    thread_id = await new_thread(store, ctx)
    items = every_item_type(thread_id)
    for item in items:
        await store.add_thread_item(thread_id, item, ctx)
    # The same ids, each saved again as a different item type: hidden and shown swap places.
    swapped = [
        new.model_copy(update={"id": old.id, "created_at": old.created_at})
        for old, new in zip(items, items[::-1], strict=True)
    ]
    for item in swapped:
        await store.save_item(thread_id, item, ctx)

    assert (await store.load_thread_items(thread_id, None, 20, "asc", ctx)).data == swapped
    visible = [item.id for item in swapped if item.type in REST_TYPES]
    assert [s.id for s in await rest_items(conversations, thread_id)] == visible
    for kept, item in zip(await every_item(conversations, thread_id), swapped, strict=True):
        assert kept.extra == item.model_dump(mode="json")


async def test_a_widget_of_a_named_class_reads_back_as_the_same_widget_json(
    store: ChatKitStore,
) -> None:
    """A widget built from openai-chatkit's deprecated named classes (``Card``…) comes back as
    the ``DynamicWidgetRoot`` ``WidgetTemplate`` builds, with the JSON the client gets unchanged
    and no DeprecationWarning on the way back."""
    ctx = context()
    thread_id = await new_thread(store, ctx)
    with pytest.warns(DeprecationWarning, match="named widget classes"):
        card = Card(
            size="sm",
            children=[Text(value="hi", weight="bold"), Row(children=[Badge(label="new")])],
        )
    item = WidgetItem(id="cthi_card", thread_id=thread_id, created_at=T0, widget=card)
    await store.add_thread_item(thread_id, item, ctx)

    loaded = await store.load_item(thread_id, item.id, ctx)  # warnings are errors here
    assert isinstance(loaded, WidgetItem)
    assert isinstance(loaded.widget, DynamicWidgetRoot)
    # by_alias and exclude_none: as openai-chatkit serializes for clients
    sent = loaded.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert sent == item.model_dump(mode="json", by_alias=True, exclude_none=True)


async def test_save_item_replaces_in_place(
    store: ChatKitStore, conversations: ConversationStore
) -> None:
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

    rest = await rest_items(conversations, thread_id)
    assert [i.id for i in rest] == ["cthi_call", "cthi_user_9"]
    assert rest[0].content is not None
    assert rest[0].content["status"] == "completed"
    assert rest[0].content["output"] == '"ok"'
    assert await store.load_item(thread_id, "cthi_call", ctx) == done
    assert rest[0].extra == done.model_dump(mode="json")
    new = message(thread_id, "saved fresh", 10)
    await store.save_item(thread_id, new, ctx)  # upsert: a new item is added
    assert (await store.load_item(thread_id, new.id, ctx)) == new


async def test_another_users_threads_and_attachments_do_not_exist(
    store: ChatKitStore,
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
    store: ChatKitStore, conversations: ConversationStore
) -> None:
    """Title, status and creation time reach REST; a None title never clears one."""
    ctx = context()
    thread = ThreadMetadata(
        id="cthr_1", created_at=T0, title="Plans", metadata={"k": "v"}, status=LockedStatus()
    )
    await store.save_thread(thread, ctx)
    stored = await conversations.get_thread("cthr_1")
    assert (stored.user, stored.title, stored.created_at) == ("alice", "Plans", int(T0.timestamp()))
    assert stored.status == ThreadStatus("locked", None)

    untitled = thread.model_copy(update={"title": None, "status": ClosedStatus(reason="done")})
    await store.save_thread(untitled, ctx)
    assert (await conversations.get_thread("cthr_1")).title == "Plans"
    assert (await conversations.get_thread("cthr_1")).status == ThreadStatus("closed", "done")
    loaded = await store.load_thread("cthr_1", ctx)
    assert (loaded.title, loaded.metadata, loaded.created_at) == ("Plans", {"k": "v"}, T0)
    assert loaded.status == ClosedStatus(reason="done")


async def test_titling_takes_the_first_user_message_only_when_enabled(
    store: ChatKitStore, conversations: ConversationStore
) -> None:
    """The first user message titles an untitled thread; later ones and disabled sessions don't."""
    on, off = context(), context(automatic_thread_titling=False)
    titled = await new_thread(store, on)
    await store.add_thread_item(titled, message(titled, "  What is\nthe plan? ", 1), on)
    await store.add_thread_item(titled, message(titled, "second", 2), on)
    assert (await conversations.get_thread(titled)).title == "What is the plan?"

    untitled = await new_thread(store, off)
    await store.add_thread_item(untitled, message(untitled, "no title please", 1), off)
    assert (await conversations.get_thread(untitled)).title is None
    await store.add_thread_item(untitled, message(untitled, "still none", 2), on)
    assert (
        await conversations.get_thread(untitled)
    ).title is None  # not the first message any more

    only_file = await new_thread(store, on)
    attachment = FileAttachment(id="atc_f", name="report.pdf", mime_type="application/pdf")
    empty = message(only_file, "", 1, attachments=[attachment])
    await store.add_thread_item(only_file, empty, on)
    assert (await conversations.get_thread(only_file)).title == "report.pdf"


async def test_recent_threads_window_and_order(store: ChatKitStore) -> None:
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
    store: ChatKitStore, conversations: ConversationStore
) -> None:
    """Items seeded straight into the conversation store convert to ChatKit's models."""
    ctx = context()
    thread = await conversations.create_thread(
        "alice", title="seeded", status=ThreadStatus("closed", "x")
    )
    add = conversations.add_item
    image = {
        "type": "image",
        "id": "atc_i",
        "name": "p.png",
        "mime_type": "image/png",
        "preview_url": "https://e.com/p.png",
    }
    await add(thread.id, user_message("hi", attachments=[image]), created_at=1)
    await add(
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
    await add(
        thread.id,
        {"type": "chatkit.task", "task_type": "custom", "heading": "H", "summary": None},
        created_at=3,
    )
    await add(
        thread.id,
        {
            "type": "chatkit.task_group",
            "tasks": [{"type": "thought", "heading": None, "summary": "s"}],
        },
        created_at=4,
    )
    await add(thread.id, {"type": "chatkit.widget", "widget": '{"type": "Card"}'}, created_at=5)
    await add(thread.id, {"type": "chatkit.widget", "widget": "not json"}, created_at=6)

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
    store: ChatKitStore, conversations: ConversationStore
) -> None:
    """REST deletion wins: the ChatKit store reports NotFoundError, hidden items too."""
    ctx = context()
    thread_id = await new_thread(store, ctx)
    end = EndOfTurnItem(id="cthi_e", thread_id=thread_id, created_at=T0)
    await store.add_thread_item(thread_id, end, ctx)
    await conversations.delete_thread(thread_id)
    with pytest.raises(NotFoundError):
        await store.load_thread_items(thread_id, None, 10, "asc", ctx)
    with pytest.raises(NotFoundError):
        await store.load_item(thread_id, end.id, ctx)
