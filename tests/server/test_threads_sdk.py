"""Threads through the official ``openai`` SDK: list (paginated), retrieve, delete, items."""

from __future__ import annotations

import openai
import pytest

from ratekeeper.server import ThreadStatus, assistant_message, user_message

from .conftest import Live, Schemas


def seed(live: Live, user: str, count: int, *, start: int = 1_700_000_000) -> list[str]:
    """Create ``count`` threads for ``user``, one second apart; return ids oldest first."""
    return [
        live.threads.create_thread(user, title=f"t{i}", created_at=start + i).id
        for i in range(count)
    ]


def test_list_threads_pages_newest_first_with_sdk_auto_pagination(
    live: Live, schemas: Schemas, user: str
) -> None:
    """Auto-pagination (after=last_id while has_more) visits every thread once, newest first."""
    ids = seed(live, user, 7)
    with live.client() as client:
        first = client.beta.chatkit.threads.with_raw_response.list(user=user, limit=3)
        body = first.http_response.json()
        schemas.check("ThreadListResource", body)
        assert [t["id"] for t in body["data"]] == ids[::-1][:3]
        assert body["first_id"] == ids[6]
        assert body["last_id"] == ids[4]
        assert body["has_more"] is True
        walked = [thread.id for thread in client.beta.chatkit.threads.list(user=user, limit=3)]
    assert walked == ids[::-1]


def test_list_threads_ascending_with_after_and_before(
    live: Live, schemas: Schemas, user: str
) -> None:
    """order=asc lists oldest first; after/before cut the list at a thread id."""
    ids = seed(live, user, 6)
    with live.client() as client:
        asc = client.beta.chatkit.threads.list(user=user, order="asc", limit=2, after=ids[1])
        assert [t.id for t in asc.data] == ids[2:4]
        assert asc.has_more is True
        before = client.beta.chatkit.threads.with_raw_response.list(
            user=user, order="asc", limit=2, before=ids[4]
        )
    body = before.http_response.json()
    schemas.check("ThreadListResource", body)
    # The page just before the cursor, still in ascending order.
    assert [t["id"] for t in body["data"]] == ids[2:4]
    assert body["has_more"] is True


def test_list_threads_limit_zero_and_unknown_user(live: Live, schemas: Schemas, user: str) -> None:
    """limit=0 returns no data but says whether there is some; a user with none gets []."""
    seed(live, user, 2)
    with live.client() as client:
        empty = client.beta.chatkit.threads.with_raw_response.list(user=user, limit=0)
        nobody = client.beta.chatkit.threads.with_raw_response.list(user=user + "_none")
    assert empty.http_response.json() == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": True,
    }
    body = nobody.http_response.json()
    schemas.check("ThreadListResource", body)
    assert body["data"] == []
    assert body["has_more"] is False


def test_list_threads_without_user_lists_every_user(fresh_live: Live) -> None:
    """Without the user filter every thread is listed (the default limit is 20)."""
    for i in range(25):
        fresh_live.threads.create_thread(f"u{i % 3}", created_at=1_700_000_000 + i)
    with fresh_live.client() as client:
        page = client.beta.chatkit.threads.list()
        everything = list(client.beta.chatkit.threads.list(limit=100))
    assert len(page.data) == 20
    assert page.has_more is True
    assert len(everything) == 25
    assert {t.user for t in everything} == {"u0", "u1", "u2"}


def test_retrieve_thread_matches_schema_with_each_status(
    live: Live, schemas: Schemas, user: str
) -> None:
    """Active, locked and closed threads all come back in the ThreadResource shape."""
    threads = live.threads
    active = threads.create_thread(user, title="Hello")
    locked = threads.create_thread(user, status=ThreadStatus("locked", "quota"))
    closed = threads.create_thread(user, status=ThreadStatus("closed"))
    with live.client() as client:
        for stored in (active, locked, closed):
            raw = client.beta.chatkit.threads.with_raw_response.retrieve(stored.id)
            body = raw.http_response.json()
            schemas.check("ThreadResource", body)
            assert body == stored.to_json()
            parsed = raw.parse()
            assert parsed.id == stored.id
            assert parsed.status.type == stored.status.type


def test_retrieve_unknown_thread_is_not_found(live: Live) -> None:
    """An unknown thread id raises the SDK's NotFoundError."""
    with live.client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.beta.chatkit.threads.retrieve("cthr_missing")
    assert caught.value.status_code == 404
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "Chatkit Thread with id 'cthr_missing' not found."


def test_delete_thread_removes_it_and_its_items(live: Live, schemas: Schemas, user: str) -> None:
    """Delete answers chatkit.thread.deleted; afterwards the thread is gone (404)."""
    thread = live.threads.create_thread(user)
    live.threads.add_item(thread.id, user_message("hi"))
    with live.client() as client:
        raw = client.beta.chatkit.threads.with_raw_response.delete(thread.id)
        body = raw.http_response.json()
        schemas.check("DeletedThreadResource", body)
        assert body == {"id": thread.id, "object": "chatkit.thread.deleted", "deleted": True}
        with pytest.raises(openai.NotFoundError):
            client.beta.chatkit.threads.retrieve(thread.id)
        with pytest.raises(openai.NotFoundError):
            client.beta.chatkit.threads.delete(thread.id)
    assert live.threads.count_threads(user) == 0


def test_listing_while_deleting_visits_every_thread(live: Live, user: str) -> None:
    """Deleting each thread as it is listed does not break the cursor of the next page."""
    ids = seed(live, user, 5)
    with live.client() as client:
        visited = []
        for thread in client.beta.chatkit.threads.list(user=user, limit=2):
            visited.append(thread.id)
            client.beta.chatkit.threads.delete(thread.id)
    assert visited == ids[::-1]


def test_list_items_pages_and_matches_schema(live: Live, schemas: Schemas, user: str) -> None:
    """Items of every type validate; pagination works as for threads."""
    thread = live.threads.create_thread(user)
    store = live.threads
    contents = [
        user_message("hello", quoted_text="earlier"),
        assistant_message("hi there"),
        {"type": "chatkit.widget", "widget": '{"type": "Card"}'},
        {
            "type": "chatkit.client_tool_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": "{}",
            "output": '{"ok": true}',
        },
        {"type": "chatkit.task", "task_type": "thought", "heading": "Thinking", "summary": None},
        {
            "type": "chatkit.task_group",
            "tasks": [{"type": "custom", "heading": "Step", "summary": "done"}],
        },
    ]
    ids = [
        store.add_item(thread.id, content, created_at=1_700_000_000 + i).id
        for i, content in enumerate(contents)
    ]
    with live.client() as client:
        raw = client.beta.chatkit.threads.with_raw_response.list_items(thread.id, limit=4)
        body = raw.http_response.json()
        schemas.check("ThreadItemListResource", body)
        assert [item["id"] for item in body["data"]] == ids[::-1][:4]
        assert body["has_more"] is True
        walked = [
            item.id
            for item in client.beta.chatkit.threads.list_items(thread.id, limit=4, order="asc")
        ]
    assert walked == ids
    parsed_types = [item["type"] for item in body["data"]]
    assert parsed_types == [c["type"] for c in contents][::-1][:4]


def test_list_items_of_unknown_thread_is_not_found(live: Live) -> None:
    """Listing items of a thread that does not exist raises NotFoundError."""
    with live.client() as client, pytest.raises(openai.NotFoundError):
        client.beta.chatkit.threads.list_items("cthr_missing")


@pytest.mark.anyio
async def test_async_client_lists_threads_and_items(live: Live, user: str) -> None:
    """The async SDK client paginates threads and items too."""
    ids = seed(live, user, 3)
    live.threads.add_item(ids[0], user_message("first"))
    async with live.aclient() as client:
        walked = [t.id async for t in client.beta.chatkit.threads.list(user=user, limit=1)]
        items = await client.beta.chatkit.threads.list_items(ids[0])
        thread = await client.beta.chatkit.threads.retrieve(ids[1])
    assert walked == ids[::-1]
    assert [item.type for item in items.data] == ["chatkit.user_message"]
    assert thread.title == "t1"
