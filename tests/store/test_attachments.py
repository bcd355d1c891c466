"""Attachments and purge on every store: metadata, streamed bytes, links to threads, cleanup."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable

import pytest

from ratekeeper import ManualClock
from ratekeeper.store import (
    AttachmentNotFound,
    AttachmentTooLarge,
    ConversationStore,
    PurgeResult,
    StoredAttachment,
    ThreadNotFound,
    user_message,
)

from .conftest import START, Backing

pytestmark = pytest.mark.anyio

NOW = int(START)
DIGEST = hashlib.sha256(b"upload token").digest()


def pending(attachment_id: str, *, created_at: int = NOW, **fields: object) -> StoredAttachment:
    """An attachment awaiting its upload, as the ChatKit adapter creates one."""
    return StoredAttachment(
        attachment_id,
        "u",
        created_at,
        {"attachment": {"id": attachment_id, "name": "a.txt"}},
        session_id="cksess_1",
        declared_bytes=1000,
        upload_token_digest=DIGEST,
        **fields,  # type: ignore[arg-type]
    )


async def stream(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(store: ConversationStore, attachment_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.read_attachment_bytes(attachment_id)])


async def test_save_get_and_replace_metadata(store: ConversationStore) -> None:
    """save_attachment creates, then replaces, the metadata; get returns it as saved."""
    first = pending("atc_1")
    await store.save_attachment(first)
    assert await store.get_attachment("atc_1") == first
    assert (await store.get_attachment("atc_1")).pending
    replaced = StoredAttachment("atc_1", "u", NOW, {"attachment": {"name": "b.txt"}}, size_bytes=3)
    await store.save_attachment(replaced)
    got = await store.get_attachment("atc_1")
    assert got == replaced
    assert not got.pending
    assert got.data == {"attachment": {"name": "b.txt"}}


async def test_missing_attachments_are_attachment_not_found(store: ConversationStore) -> None:
    """get, delete, write and read of an unknown attachment raise AttachmentNotFound."""
    with pytest.raises(AttachmentNotFound):
        await store.get_attachment("atc_missing")
    with pytest.raises(AttachmentNotFound):
        await store.delete_attachment("atc_missing")
    with pytest.raises(AttachmentNotFound):
        await store.write_attachment_bytes("atc_missing", stream([b"x"]), max_bytes=10)
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_missing")


async def test_attachment_data_must_be_json(store: ConversationStore) -> None:
    """Attachment data is kept as JSON like every extra slot."""
    bad = StoredAttachment("atc_1", "u", NOW, {"x": object()})
    with pytest.raises(ValueError, match="JSON"):
        await store.save_attachment(bad)
    with pytest.raises(AttachmentNotFound):
        await store.get_attachment("atc_1")


async def test_bytes_stream_in_and_out(store: ConversationStore) -> None:
    """Bytes written in chunks read back whole; the upload is no longer pending."""
    await store.save_attachment(pending("atc_1"))
    parts = [b"hello ", b"", b"world", bytes(range(256))]
    stored = await store.write_attachment_bytes("atc_1", stream(parts), max_bytes=1000)
    assert stored.size_bytes == sum(map(len, parts))
    assert not stored.pending
    assert stored.session_id == "cksess_1"
    assert await store.get_attachment("atc_1") == stored
    assert await read(store, "atc_1") == b"".join(parts)


async def test_empty_bytes_are_stored_bytes(store: ConversationStore) -> None:
    """A zero-byte upload is an upload: size 0, and reading gives no bytes."""
    await store.save_attachment(pending("atc_1"))
    stored = await store.write_attachment_bytes("atc_1", stream([]), max_bytes=10)
    assert stored.size_bytes == 0
    assert await read(store, "atc_1") == b""


async def test_reading_before_the_bytes_arrive_is_not_found(store: ConversationStore) -> None:
    """Reading a pending attachment's bytes raises AttachmentNotFound when iteration starts."""
    await store.save_attachment(pending("atc_1"))
    chunks = store.read_attachment_bytes("atc_1")  # nothing raised yet
    with pytest.raises(AttachmentNotFound):
        await chunks.__anext__()


async def test_a_second_write_replaces_the_bytes(store: ConversationStore) -> None:
    """Writing again replaces the bytes and the size."""
    await store.save_attachment(pending("atc_1"))
    await store.write_attachment_bytes("atc_1", stream([b"a" * 600, b"b" * 300]), max_bytes=1000)
    stored = await store.write_attachment_bytes("atc_1", stream([b"short"]), max_bytes=1000)
    assert stored.size_bytes == 5
    assert await read(store, "atc_1") == b"short"


async def test_too_large_leaves_nothing_new_behind(store: ConversationStore) -> None:
    """AttachmentTooLarge on a first upload: still pending, no bytes."""
    await store.save_attachment(pending("atc_1"))
    with pytest.raises(AttachmentTooLarge) as caught:
        await store.write_attachment_bytes(
            "atc_1", stream([b"x" * 600, b"y" * 600]), max_bytes=1000
        )
    assert caught.value.max_bytes == 1000
    assert await store.get_attachment("atc_1") == pending("atc_1")
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_1")


async def test_too_large_keeps_the_old_bytes(store: ConversationStore) -> None:
    """A failed second upload leaves the first one's bytes and metadata as they were."""
    await store.save_attachment(pending("atc_1"))
    first = await store.write_attachment_bytes("atc_1", stream([b"first"]), max_bytes=1000)
    with pytest.raises(AttachmentTooLarge):
        await store.write_attachment_bytes("atc_1", stream([b"z" * 700] * 3), max_bytes=1000)
    assert await store.get_attachment("atc_1") == first
    assert await read(store, "atc_1") == b"first"


async def test_a_failing_stream_keeps_the_old_bytes(store: ConversationStore) -> None:
    """An upload whose client fails half-way changes nothing (the client's error propagates)."""
    await store.save_attachment(pending("atc_1"))
    first = await store.write_attachment_bytes("atc_1", stream([b"first"]), max_bytes=10**7)

    async def broken() -> AsyncIterator[bytes]:
        yield b"q" * 300_000
        raise ConnectionAbortedError("client went away")

    with pytest.raises(ConnectionAbortedError):
        await store.write_attachment_bytes("atc_1", broken(), max_bytes=10**7)
    assert await store.get_attachment("atc_1") == first
    assert await read(store, "atc_1") == b"first"


async def test_saving_metadata_keeps_the_bytes(store: ConversationStore) -> None:
    """save_attachment replaces metadata only: stored bytes stay readable."""
    await store.save_attachment(pending("atc_1"))
    stored = await store.write_attachment_bytes("atc_1", stream([b"kept"]), max_bytes=10)
    await store.save_attachment(pending("atc_1", size_bytes=stored.size_bytes))
    assert await read(store, "atc_1") == b"kept"


async def test_delete_attachment_takes_its_bytes(store: ConversationStore) -> None:
    """Deleting returns the metadata; metadata and bytes are gone."""
    await store.save_attachment(pending("atc_1"))
    stored = await store.write_attachment_bytes("atc_1", stream([b"bytes"]), max_bytes=10)
    assert await store.delete_attachment("atc_1") == stored
    with pytest.raises(AttachmentNotFound):
        await store.get_attachment("atc_1")
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_1")
    # A new attachment of the same id starts without bytes.
    await store.save_attachment(pending("atc_1"))
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_1")


async def test_deleting_a_thread_takes_its_linked_attachments(store: ConversationStore) -> None:
    """update_attachment ties attachments to a thread; deleting it deletes them and bytes."""
    thread = await store.create_thread("u")
    keep = await store.create_thread("u")
    for attachment_id in ("atc_1", "atc_2", "atc_other"):
        await store.save_attachment(pending(attachment_id))
        await store.write_attachment_bytes(attachment_id, stream([b"data"]), max_bytes=10)
    await store.update_attachment("atc_1", thread_id=thread.id)
    await store.update_attachment("atc_2", thread_id=thread.id)
    await store.update_attachment("atc_other", thread_id=keep.id)
    assert (await store.get_attachment("atc_1")).thread_id == thread.id
    await store.delete_thread(thread.id)
    for attachment_id in ("atc_1", "atc_2"):
        with pytest.raises(AttachmentNotFound):
            await store.get_attachment(attachment_id)
        with pytest.raises(AttachmentNotFound):
            await read(store, attachment_id)
    assert (await store.get_attachment("atc_other")).thread_id == keep.id
    assert await read(store, "atc_other") == b"data"


async def test_saving_with_a_thread_id_links_it(store: ConversationStore) -> None:
    """An attachment saved with its thread's id goes with that thread."""
    thread = await store.create_thread("u")
    await store.save_attachment(pending("atc_1", thread_id=thread.id))
    assert (await store.get_attachment("atc_1")).thread_id == thread.id
    await store.delete_thread(thread.id)
    with pytest.raises(AttachmentNotFound):
        await store.get_attachment("atc_1")


async def test_saving_with_a_deleted_threads_id_deletes_it(store: ConversationStore) -> None:
    """Saved with the id of a thread deleted meanwhile, an attachment goes as with the thread."""
    thread = await store.create_thread("u")
    await store.save_attachment(pending("atc_1"))
    await store.write_attachment_bytes("atc_1", stream([b"data"]), max_bytes=10)
    await store.delete_thread(thread.id)
    await store.save_attachment(pending("atc_1", thread_id=thread.id))
    with pytest.raises(AttachmentNotFound):
        await store.get_attachment("atc_1")
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_1")


async def test_linking_to_a_missing_thread_is_refused(store: ConversationStore) -> None:
    """update_attachment to an unknown thread raises and changes nothing; unknown ids raise."""
    await store.save_attachment(pending("atc_1"))
    with pytest.raises(ThreadNotFound):
        await store.update_attachment("atc_1", thread_id="cthr_missing", data={"x": 1})
    kept = await store.get_attachment("atc_1")
    assert kept.thread_id is None
    assert kept.data == pending("atc_1").data
    with pytest.raises(AttachmentNotFound):
        await store.update_attachment("atc_unknown", data={"x": 1})


async def test_moving_an_attachment_to_another_thread_moves_its_fate(
    store: ConversationStore,
) -> None:
    """Re-linked elsewhere, an attachment goes with its new thread, not its old one."""
    first = await store.create_thread("u")
    second = await store.create_thread("u")
    await store.save_attachment(pending("atc_1", thread_id=first.id))
    await store.update_attachment("atc_1", thread_id=second.id)
    await store.delete_thread(first.id)
    assert (await store.get_attachment("atc_1")).thread_id == second.id
    await store.delete_thread(second.id)
    with pytest.raises(AttachmentNotFound):
        await store.get_attachment("atc_1")


async def test_updating_data_keeps_the_upload_state(store: ConversationStore) -> None:
    """update_attachment changes data only: a pending token and a stored size are kept."""
    await store.save_attachment(pending("atc_pending"))
    updated = await store.update_attachment("atc_pending", data={"name": "new"})
    assert updated.data == {"name": "new"}
    assert updated.upload_token_digest == pending("atc_pending").upload_token_digest
    await store.save_attachment(pending("atc_done"))
    await store.write_attachment_bytes("atc_done", stream([b"data"]), max_bytes=10)
    done = await store.update_attachment("atc_done", data={"name": "done"})
    assert (done.size_bytes, done.upload_token_digest) == (4, None)
    assert await read(store, "atc_done") == b"data"


async def test_a_token_ends_one_upload_only(store: ConversationStore) -> None:
    """With upload_token_digest, the first upload wins; a second with the same token is
    refused, and neither its bytes nor its data are kept."""
    await store.save_attachment(pending("atc_1"))
    token = pending("atc_1").upload_token_digest
    done = await store.write_attachment_bytes(
        "atc_1", stream([b"first"]), max_bytes=10, upload_token_digest=token, data={"v": 1}
    )
    assert (done.data, done.size_bytes, done.pending) == ({"v": 1}, 5, False)
    with pytest.raises(AttachmentNotFound):
        await store.write_attachment_bytes(
            "atc_1", stream([b"second"]), max_bytes=10, upload_token_digest=token, data={"v": 2}
        )
    assert await read(store, "atc_1") == b"first"
    assert (await store.get_attachment("atc_1")).data == {"v": 1}


async def test_a_wrong_token_stores_nothing(store: ConversationStore) -> None:
    """A token that is not the pending upload's is refused before anything changes."""
    await store.save_attachment(pending("atc_1"))
    with pytest.raises(AttachmentNotFound):
        await store.write_attachment_bytes(
            "atc_1", stream([b"x"]), max_bytes=10, upload_token_digest=b"w" * 32
        )
    assert (await store.get_attachment("atc_1")).pending
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_1")


# -- purge ------------------------------------------------------------------------------------


async def _uploaded(store: ConversationStore, attachment_id: str, created_at: int) -> None:
    await store.save_attachment(pending(attachment_id, created_at=created_at))
    await store.write_attachment_bytes(attachment_id, stream([b"data"]), max_bytes=10)


async def test_purge_deletes_old_threads_with_everything_theirs(store: ConversationStore) -> None:
    """Threads created before threads_before go with their items and attachments."""
    old = await store.create_thread("u", created_at=NOW - 100)
    await store.add_item(old.id, user_message("old"))
    await _uploaded(store, "atc_old", NOW - 100)
    await store.update_attachment("atc_old", thread_id=old.id)
    recent = await store.create_thread("u", created_at=NOW)
    item = await store.add_item(recent.id, user_message("recent"))
    await _uploaded(store, "atc_recent", NOW - 100)
    await store.update_attachment("atc_recent", thread_id=recent.id)
    assert await store.purge(threads_before=NOW - 10) == PurgeResult(threads=1, attachments=0)
    with pytest.raises(ThreadNotFound):
        await store.get_thread(old.id)
    with pytest.raises(AttachmentNotFound):
        await store.get_attachment("atc_old")
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_old")
    assert (await store.get_item(recent.id, item.id)).id == item.id
    assert await read(store, "atc_recent") == b"data"
    assert await store.purge(threads_before=NOW - 10) == PurgeResult()


async def test_purge_deletes_stale_pending_and_unlinked_attachments(
    store: ConversationStore,
) -> None:
    """Attachments before attachments_before go if still pending or never linked; others stay."""
    thread = await store.create_thread("u", created_at=NOW - 100)
    await store.save_attachment(pending("atc_stale_pending", created_at=NOW - 100))
    await _uploaded(store, "atc_stale_unlinked", NOW - 100)
    await _uploaded(store, "atc_linked", NOW - 100)
    await store.update_attachment("atc_linked", thread_id=thread.id)
    await store.save_attachment(pending("atc_recent_pending", created_at=NOW))
    await _uploaded(store, "atc_recent_unlinked", NOW)
    assert await store.purge(attachments_before=NOW - 10) == PurgeResult(threads=0, attachments=2)
    for gone in ("atc_stale_pending", "atc_stale_unlinked"):
        with pytest.raises(AttachmentNotFound):
            await store.get_attachment(gone)
    with pytest.raises(AttachmentNotFound):
        await read(store, "atc_stale_unlinked")
    for kept in ("atc_linked", "atc_recent_pending", "atc_recent_unlinked"):
        assert (await store.get_attachment(kept)).id == kept
    assert await read(store, "atc_linked") == b"data"
    assert await store.get_thread(thread.id) == thread


async def test_purge_with_nothing_to_do(store: ConversationStore) -> None:
    """No bounds, or nothing old enough: nothing goes."""
    thread = await store.create_thread("u", created_at=NOW)
    await store.save_attachment(pending("atc_1"))
    assert await store.purge() == PurgeResult()
    assert await store.purge(threads_before=NOW, attachments_before=NOW) == PurgeResult()
    assert await store.get_thread(thread.id) == thread
    assert (await store.get_attachment("atc_1")).pending


async def test_purge_takes_many_threads(backing: Backing) -> None:
    """More threads than one purge batch all go (the batches add up)."""
    store = await backing.make(ManualClock(START))
    for n in range(250):
        await store.create_thread("u", created_at=n)
    await store.create_thread("u", created_at=NOW)
    assert await store.purge(threads_before=NOW) == PurgeResult(threads=250)
    assert await store.count_threads() == 1
