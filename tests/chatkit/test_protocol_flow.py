"""The protocol endpoint end to end: ChatKit requests in, SSE and JSON out, threads in REST.

Each test drives ``POST /chatkit`` with the payloads ChatKit.js sends, through httpx against
uvicorn on loopback, and reads the same threads back through the official ``openai`` SDK.
"""

from __future__ import annotations

import json

from openai.types.beta.chatkit import (
    ChatKitThreadAssistantMessageItem,
    ChatKitThreadUserMessageItem,
)

from ratekeeper.store import assistant_message, user_message
from tests.server.conftest import Live, Schemas

from .conftest import Protocol, user_input


def test_threads_create_streams_sse_and_the_thread_is_a_rest_thread(
    live: Live, protocol: Protocol, schemas: Schemas
) -> None:
    """threads.create streams the ChatKit events; the SDK then lists, retrieves and reads it."""
    session = protocol.mint()
    thread_id, stream = protocol.create_thread(session, "Hello, ratekeeper")

    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["x-ratelimit-limit-requests"] == "10"
    assert stream.headers["x-ratelimit-remaining-requests"] == "9"
    types = stream.types()
    assert types[:3] == ["thread.created", "thread.item.done", "stream_options"]
    assert types[-1] == "thread.item.done"
    assert "thread.updated" in types  # the automatic title, announced at once
    assert stream.first("thread.updated")["thread"]["title"] == "Hello, ratekeeper"
    deltas = [
        e["update"]["delta"]
        for e in stream.events
        if e["type"] == "thread.item.updated"
        and e["update"]["type"] == "assistant_message.content_part.text_delta"
    ]
    assert "".join(deltas) == "Hello, ratekeeper"
    reply = stream.events[-1]["item"]
    assert reply["type"] == "assistant_message"
    assert reply["content"][0]["text"] == "Hello, ratekeeper"
    assert thread_id.startswith("cthr_")

    with live.client() as client:
        listed = client.beta.chatkit.threads.with_raw_response.list(user=session.user)
        body = listed.http_response.json()
        schemas.check("ThreadListResource", body)
        assert [t["id"] for t in body["data"]] == [thread_id]
        thread = client.beta.chatkit.threads.retrieve(thread_id)
        assert thread.title == "Hello, ratekeeper"
        assert thread.user == session.user
        assert thread.status.type == "active"
        raw_items = client.beta.chatkit.threads.with_raw_response.list_items(thread_id, order="asc")
    items = raw_items.http_response.json()
    schemas.check("ThreadItemListResource", items)
    assert [i["type"] for i in items["data"]] == [
        "chatkit.user_message",
        "chatkit.assistant_message",
    ]
    question, answer = items["data"]
    assert question["content"] == [{"type": "input_text", "text": "Hello, ratekeeper"}]
    assert question["attachments"] == []
    assert question["inference_options"] is None
    assert answer["content"] == [
        {"type": "output_text", "text": "Hello, ratekeeper", "annotations": []}
    ]
    assert question["id"] == stream.first("thread.item.done")["item"]["id"]
    assert answer["id"] == reply["id"]
    assert {question["thread_id"], answer["thread_id"]} == {thread_id}


def test_add_user_message_appends_in_order_and_the_sdk_reads_it(
    live: Live, protocol: Protocol
) -> None:
    """threads.add_user_message streams the echo; the SDK sees four items, oldest first."""
    session = protocol.mint()
    thread_id, _ = protocol.create_thread(session, "first")
    stream = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("second   message")},
    )
    assert stream.status_code == 200
    assert stream.types()[0] == "thread.item.done"
    assert "thread.updated" not in stream.types()  # titled by the first message only
    assert stream.events[-1]["item"]["content"][0]["text"] == "second   message"

    with live.client() as client:
        items = list(client.beta.chatkit.threads.list_items(thread_id, order="asc", limit=1))
        thread = client.beta.chatkit.threads.retrieve(thread_id)
    assert [item.type for item in items] == [
        "chatkit.user_message",
        "chatkit.assistant_message",
    ] * 2
    texts: list[str] = []
    for item in items:
        assert isinstance(item, ChatKitThreadUserMessageItem | ChatKitThreadAssistantMessageItem)
        texts.append(item.content[0].text)
    assert texts == ["first", "first", "second   message", "second   message"]
    assert thread.title == "first"


def test_threads_list_and_items_list_page_with_after(protocol: Protocol) -> None:
    """threads.list and items.list are JSON pages that follow ``after`` to the end."""
    session = protocol.mint()
    ids = [protocol.create_thread(session, f"thread {n}")[0] for n in range(3)]

    first = protocol.post(session.secret, "threads.list", {"limit": 2})
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    page = first.json()
    assert [t["id"] for t in page["data"]] == [ids[2], ids[1]]
    assert page["has_more"] is True
    assert page["after"] == ids[1]
    assert [t["title"] for t in page["data"]] == ["thread 2", "thread 1"]
    rest = protocol.post(session.secret, "threads.list", {"limit": 2, "after": page["after"]})
    assert [t["id"] for t in rest.json()["data"]] == [ids[0]]
    assert rest.json()["has_more"] is False
    ascending = protocol.post(session.secret, "threads.list", {"order": "asc"}).json()
    assert [t["id"] for t in ascending["data"]] == ids

    items = protocol.post(
        session.secret, "items.list", {"thread_id": ids[0], "limit": 1, "order": "asc"}
    ).json()
    assert [i["type"] for i in items["data"]] == ["user_message"]
    assert items["has_more"] is True
    after = protocol.post(
        session.secret,
        "items.list",
        {"thread_id": ids[0], "limit": 5, "order": "asc", "after": items["after"]},
    ).json()
    assert [i["type"] for i in after["data"]] == ["assistant_message"]
    assert after["has_more"] is False


def test_sdk_auto_pagination_walks_protocol_threads(live: Live, protocol: Protocol) -> None:
    """Threads created through the protocol page through the SDK like any REST thread."""
    session = protocol.mint()
    ids = [protocol.create_thread(session, f"t{n}")[0] for n in range(5)]
    with live.client() as client:
        walked = [t.id for t in client.beta.chatkit.threads.list(user=session.user, limit=2)]
        oldest = client.beta.chatkit.threads.list(user=session.user, order="asc", limit=2)
    assert walked == ids[::-1]
    assert [t.id for t in oldest.data] == ids[:2]


def test_attachment_two_phase_upload_then_message(
    live: Live, protocol: Protocol, schemas: Schemas
) -> None:
    """attachments.create gives an upload URL; the bytes go there; a message then carries it."""
    session = protocol.mint(chatkit_configuration={"file_upload": {"enabled": True}})
    created = protocol.post(
        session.secret,
        "attachments.create",
        {"name": "notes.txt", "size": 11, "mime_type": "text/plain"},
    )
    assert created.status_code == 200, created.text
    attachment = created.json()
    assert attachment["type"] == "file"
    assert attachment["name"] == "notes.txt"
    descriptor = attachment["upload_descriptor"]
    assert descriptor["method"] == "POST"
    assert descriptor["url"].startswith(f"{live.url}/chatkit/attachments/{attachment['id']}/")
    assert session.secret not in descriptor["url"]

    uploaded = protocol.http.post(
        descriptor["url"], files={"file": ("notes.txt", b"hello world", "text/plain")}
    )
    assert uploaded.status_code == 200, uploaded.text
    assert "upload_descriptor" not in uploaded.json()
    again = protocol.http.post(
        descriptor["url"], files={"file": ("notes.txt", b"hello world", "text/plain")}
    )
    assert again.status_code == 404  # the upload URL is single-use

    thread_id, _ = protocol.create_thread(session, "see attached")
    stream = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("", [attachment["id"]])},
    )
    assert stream.status_code == 200
    sent = stream.first("thread.item.done")["item"]
    assert [a["id"] for a in sent["attachments"]] == [attachment["id"]]
    assert stream.events[-1]["item"]["content"][0]["text"] == "Attached: notes.txt"
    with live.client() as client:
        raw = client.beta.chatkit.threads.with_raw_response.list_items(thread_id, order="desc")
    items = raw.http_response.json()
    schemas.check("ThreadItemListResource", items)
    message = items["data"][1]
    assert message["attachments"] == [
        {
            "type": "file",
            "id": attachment["id"],
            "name": "notes.txt",
            "mime_type": "text/plain",
            "preview_url": None,
        }
    ]


def test_thread_deleted_through_either_surface_is_gone_from_both(
    live: Live, protocol: Protocol
) -> None:
    """threads.delete removes the REST thread; a REST delete makes the protocol answer 404."""
    session = protocol.mint()
    first, _ = protocol.create_thread(session, "one")
    second, _ = protocol.create_thread(session, "two")
    deleted = protocol.post(session.secret, "threads.delete", {"thread_id": first})
    assert deleted.status_code == 200
    with live.client() as client:
        assert [t.id for t in client.beta.chatkit.threads.list(user=session.user)] == [second]
        client.beta.chatkit.threads.delete(second)
    gone = protocol.post(session.secret, "threads.get_by_id", {"thread_id": second})
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


def test_another_users_thread_does_not_exist(protocol: Protocol) -> None:
    """A session sees only its user's threads: 404 before any stream starts."""
    alice = protocol.mint()
    bob = protocol.mint()
    thread_id, _ = protocol.create_thread(alice, "private")

    listed = protocol.post(bob.secret, "items.list", {"thread_id": thread_id})
    assert listed.status_code == 404
    streamed = protocol.stream(
        bob.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("let me in")},
    )
    assert streamed.status_code == 404
    assert streamed.headers["content-type"] == "application/json"
    assert json.loads(streamed.body)["error"]["code"] == "not_found"
    assert protocol.post(bob.secret, "threads.list", {}).json()["data"] == []


def test_thread_seeded_through_the_rest_store_reads_through_the_protocol(
    live: Live, protocol: Protocol
) -> None:
    """Threads seeded straight into the conversation store come back as ChatKit models."""
    session = protocol.mint()
    thread = live.threads.create_thread(session.user, title="seeded", created_at=1_700_000_000)
    live.threads.add_item(thread.id, user_message("hi", quoted_text="earlier"), created_at=1)
    live.threads.add_item(thread.id, assistant_message("hello"), created_at=2)

    got = protocol.post(session.secret, "threads.get_by_id", {"thread_id": thread.id})
    assert got.status_code == 200
    body = got.json()
    assert body["title"] == "seeded"
    question, answer = body["items"]["data"]
    assert question["type"] == "user_message"
    assert question["content"] == [{"type": "input_text", "text": "hi"}]
    assert question["quoted_text"] == "earlier"
    assert answer["type"] == "assistant_message"
    assert answer["content"][0]["text"] == "hello"
    stream = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread.id, "input": user_input("more")},
    )
    assert stream.events[-1]["item"]["content"][0]["text"] == "more"
    assert live.threads.get_thread(thread.id).title == "seeded"
