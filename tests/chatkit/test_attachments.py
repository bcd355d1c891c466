"""The ChatKit AttachmentStore: two-phase uploads into the conversation store, and previews.

No server here: ``ChatKitAttachmentStore`` is called as openai-chatkit and the endpoint's
upload and preview routes call it, over each conversation store (memory on asyncio and trio,
SQLite on asyncio: see ``conftest.STORES``). ``attachments.create`` is played as
openai-chatkit plays it: the attachment store creates the metadata, then the ``Store`` saves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from chatkit.store import NotFoundError
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    FileAttachment,
    ImageAttachment,
    ThreadMetadata,
)

from ratekeeper._errors import RatekeeperError
from ratekeeper.chatkit import ChatKitAttachmentStore, ChatKitContext, ChatKitStore, UploadRefused
from ratekeeper.store import AttachmentNotFound, ConversationStore

from .conftest import context

pytestmark = pytest.mark.anyio

UPLOAD_BASE = "http://127.0.0.1/chatkit/attachments/"
T0 = datetime(2025, 1, 2, 3, 4, 5)


@pytest.fixture
def store(conversations: ConversationStore) -> ChatKitStore:
    """The ChatKit Store over this test's conversation store."""
    return ChatKitStore(conversations)


@pytest.fixture
def attachments(conversations: ConversationStore) -> ChatKitAttachmentStore:
    """The ChatKit AttachmentStore over the same conversation store."""
    return ChatKitAttachmentStore(conversations)


async def create(
    attachments: ChatKitAttachmentStore,
    store: ChatKitStore,
    ctx: ChatKitContext,
    *,
    size: int = 4,
    mime_type: str = "text/plain",
    name: str = "a.txt",
) -> Attachment:
    """``attachments.create`` as openai-chatkit runs it: create the metadata, then save it."""
    params = AttachmentCreateParams(name=name, size=size, mime_type=mime_type)
    created = await attachments.create_attachment(params, ctx)
    await store.save_attachment(created, ctx)
    return created


def token_of(url: object) -> str:
    """The ``token`` query parameter of an upload or preview URL."""
    return parse_qs(urlsplit(str(url)).query)["token"][0]


def upload_token(attachment: Attachment) -> str:
    assert attachment.upload_descriptor is not None
    return token_of(attachment.upload_descriptor.url)


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """Bytes arriving in pieces, as the upload route streams them."""
    for part in parts:
        yield part


async def stored_bytes(conversations: ConversationStore, attachment_id: str) -> bytes:
    return b"".join([chunk async for chunk in conversations.read_attachment_bytes(attachment_id)])


# -- two-phase uploads ----------------------------------------------------------------------


async def test_an_upload_in_two_phases_stores_the_streamed_bytes(
    attachments: ChatKitAttachmentStore, store: ChatKitStore, conversations: ConversationStore
) -> None:
    """create → pending(token) → accept(chunks) → read gives the bytes; the token is used up."""
    ctx = context()
    created = await create(attachments, store, ctx, size=11)
    assert isinstance(created, FileAttachment)
    assert created.upload_descriptor is not None
    assert created.upload_descriptor.method == "POST"
    assert str(created.upload_descriptor.url).startswith(f"{UPLOAD_BASE}{created.id}/upload?")
    token = upload_token(created)
    with pytest.raises(NotFoundError):  # no bytes yet
        await attachments.read(created.id, ctx)

    pending = await attachments.pending(created.id, token)
    assert pending is not None
    assert (pending.id, pending.user, pending.session_id) == (created.id, "alice", ctx.session_id)
    assert (pending.pending, pending.declared_bytes, pending.size_bytes) == (True, 11, None)
    accepted = await attachments.accept(pending, chunks(b"hello", b" ", b"world"))

    assert accepted == created.model_copy(update={"upload_descriptor": None})
    assert await attachments.read(created.id, ctx) == b"hello world"
    assert b"".join([c async for c in attachments.open(created.id, ctx)]) == b"hello world"
    assert await store.load_attachment(created.id, ctx) == accepted
    stored = await conversations.get_attachment(created.id)
    assert (stored.pending, stored.size_bytes) == (False, 11)
    assert await attachments.pending(created.id, token) is None  # single-use


async def test_a_wrong_token_opens_no_upload(
    attachments: ChatKitAttachmentStore, store: ChatKitStore
) -> None:
    """Only the attachment's own token opens its upload: pending() is None for any other."""
    ctx = context()
    created = await create(attachments, store, ctx)
    other = await create(attachments, store, ctx)
    token = upload_token(created)
    for attachment_id, guess in (
        (created.id, "nope"),
        (created.id, ""),
        (created.id, token[:-1]),
        (created.id, upload_token(other)),
        (other.id, token),
        ("atc_never_existed", token),
    ):
        assert await attachments.pending(attachment_id, guess) is None, guess
    assert await attachments.pending(created.id, token) is not None


async def test_more_bytes_than_declared_are_refused_and_nothing_is_stored(
    attachments: ChatKitAttachmentStore, store: ChatKitStore, conversations: ConversationStore
) -> None:
    """413 past the declared size; no byte stays, and the upload may be tried again."""
    ctx = context()
    created = await create(attachments, store, ctx, size=4)
    token = upload_token(created)
    pending = await attachments.pending(created.id, token)
    assert pending is not None
    with pytest.raises(UploadRefused) as refused:
        await attachments.accept(pending, chunks(b"123", b"45"))
    assert isinstance(refused.value, RatekeeperError)
    assert (refused.value.status_code, refused.value.code) == (413, "file_too_large")
    with pytest.raises(AttachmentNotFound):
        await stored_bytes(conversations, created.id)
    with pytest.raises(NotFoundError):
        await attachments.read(created.id, ctx)
    stored = await conversations.get_attachment(created.id)
    assert (stored.pending, stored.size_bytes) == (True, None)

    retry = await attachments.pending(created.id, token)
    assert retry is not None
    await attachments.accept(retry, chunks(b"1234"))
    assert await attachments.read(created.id, ctx) == b"1234"


async def test_an_upload_finishing_after_its_attachment_was_deleted_is_refused(
    attachments: ChatKitAttachmentStore, store: ChatKitStore, conversations: ConversationStore
) -> None:
    """A delete during an upload: 404, never a KeyError, and the attachment stays deleted."""
    ctx = context()
    created = await create(attachments, store, ctx)
    pending = await attachments.pending(created.id, upload_token(created))
    assert pending is not None
    # attachments.delete, as openai-chatkit runs it: the attachment store, then the Store.
    await attachments.delete_attachment(created.id, ctx)
    await store.delete_attachment(created.id, ctx)
    with pytest.raises(UploadRefused) as refused:
        await attachments.accept(pending, chunks(b"1234"))
    assert (refused.value.status_code, refused.value.code) == (404, "upload_not_found")
    with pytest.raises(AttachmentNotFound):
        await conversations.get_attachment(created.id)
    with pytest.raises(AttachmentNotFound):
        await stored_bytes(conversations, created.id)


async def test_a_second_upload_with_the_same_token_after_the_first_finished_is_refused(
    attachments: ChatKitAttachmentStore, store: ChatKitStore
) -> None:
    """Two uploads racing on one token: the one finishing second gets 404, the bytes stay."""
    ctx = context()
    created = await create(attachments, store, ctx)
    token = upload_token(created)
    first = await attachments.pending(created.id, token)
    second = await attachments.pending(created.id, token)  # read before the first one finished
    assert first is not None
    assert second is not None
    await attachments.accept(first, chunks(b"1234"))
    with pytest.raises(UploadRefused) as raced:
        await attachments.accept(second, chunks(b"5678"))
    assert (raced.value.status_code, raced.value.code) == (404, "upload_not_found")
    assert await attachments.read(created.id, ctx) == b"1234"


async def test_saving_the_metadata_keeps_an_upload_pending(
    attachments: ChatKitAttachmentStore, store: ChatKitStore, conversations: ConversationStore
) -> None:
    """The Store saving an attachment (with its thread, say) keeps the pending upload."""
    ctx = context()
    thread = ThreadMetadata(id="cthr_keep", created_at=T0)
    await store.save_thread(thread, ctx)
    created = await create(attachments, store, ctx)
    await store.save_attachment(created.model_copy(update={"thread_id": thread.id}), ctx)
    pending = await attachments.pending(created.id, upload_token(created))
    assert pending is not None
    assert pending.thread_id == thread.id
    accepted = await attachments.accept(pending, chunks(b"1234"))
    assert accepted.thread_id == thread.id
    assert accepted.upload_descriptor is None
    assert await attachments.read(created.id, ctx) == b"1234"
    assert (await conversations.get_attachment(created.id)).thread_id == thread.id


# -- previews -------------------------------------------------------------------------------


async def test_an_image_gets_a_preview_url_that_opens_it_once_uploaded(
    attachments: ChatKitAttachmentStore, store: ChatKitStore
) -> None:
    """The preview token opens the uploaded image only; the upload token does not."""
    ctx = context()
    created = await create(attachments, store, ctx, size=8, mime_type="image/png", name="p.png")
    assert isinstance(created, ImageAttachment)
    preview_url = str(created.preview_url)
    assert preview_url.startswith(f"{UPLOAD_BASE}{created.id}/preview?")
    preview = token_of(preview_url)
    token = upload_token(created)
    assert preview != token
    assert await attachments.preview(created.id, preview) is None  # nothing uploaded yet

    pending = await attachments.pending(created.id, token)
    assert pending is not None
    accepted = await attachments.accept(pending, chunks(b"\x89PNG", b"data"))
    assert isinstance(accepted, ImageAttachment)
    assert str(accepted.preview_url) == preview_url
    shown = await attachments.preview(created.id, preview)
    assert shown is not None
    assert (shown.id, shown.size_bytes) == (created.id, 8)
    for wrong in ("nope", "", token, preview[:-1]):
        assert await attachments.preview(created.id, wrong) is None, wrong
    assert await attachments.preview("atc_never_existed", preview) is None

    await attachments.delete_attachment(created.id, ctx)
    await store.delete_attachment(created.id, ctx)
    assert await attachments.preview(created.id, preview) is None


async def test_an_image_named_in_upper_case_is_an_image(
    attachments: ChatKitAttachmentStore, store: ChatKitStore
) -> None:
    """The MIME type's case does not matter (``IMAGE/PNG`` is an image)."""
    created = await create(attachments, store, context(), mime_type="IMAGE/PNG")
    assert isinstance(created, ImageAttachment)


async def test_a_file_has_no_preview(
    attachments: ChatKitAttachmentStore, store: ChatKitStore
) -> None:
    """A non-image attachment has no preview URL, and no token opens a preview of it."""
    ctx = context()
    created = await create(attachments, store, ctx, mime_type="application/pdf", name="r.pdf")
    assert isinstance(created, FileAttachment)
    assert "preview_url" not in created.model_dump()
    token = upload_token(created)
    pending = await attachments.pending(created.id, token)
    assert pending is not None
    await attachments.accept(pending, chunks(b"%PDF"))
    assert await attachments.preview(created.id, token) is None
    assert await attachments.preview(created.id, "") is None


# -- ownership and deletion -----------------------------------------------------------------


async def test_another_users_attachment_cannot_be_read_or_deleted(
    attachments: ChatKitAttachmentStore, store: ChatKitStore
) -> None:
    """Bytes and metadata are scoped by user: NotFoundError for anyone else."""
    alice, bob = context("alice"), context("bob")
    created = await create(attachments, store, alice)
    pending = await attachments.pending(created.id, upload_token(created))
    assert pending is not None
    await attachments.accept(pending, chunks(b"1234"))
    with pytest.raises(NotFoundError):
        await attachments.read(created.id, bob)
    with pytest.raises(NotFoundError):
        await attachments.delete_attachment(created.id, bob)
    with pytest.raises(NotFoundError):
        await store.delete_attachment(created.id, bob)
    with pytest.raises(NotFoundError):
        await store.load_attachment(created.id, bob)
    assert await attachments.read(created.id, alice) == b"1234"


async def test_deleting_a_thread_deletes_its_attachments_and_their_bytes(
    attachments: ChatKitAttachmentStore, store: ChatKitStore, conversations: ConversationStore
) -> None:
    """Through ChatKit or through REST, a thread takes its attachments with it, no others."""
    ctx = context()

    async def attached_to(thread_id: str) -> Attachment:
        created = await create(attachments, store, ctx)
        pending = await attachments.pending(created.id, upload_token(created))
        assert pending is not None
        uploaded = await attachments.accept(pending, chunks(b"1234"))
        # What openai-chatkit saves when a user message carrying the attachment is added.
        await store.save_attachment(uploaded.model_copy(update={"thread_id": thread_id}), ctx)
        return uploaded

    for thread_id in ("cthr_chatkit", "cthr_rest"):
        await store.save_thread(ThreadMetadata(id=thread_id, created_at=T0), ctx)
    by_chatkit = await attached_to("cthr_chatkit")
    by_rest = await attached_to("cthr_rest")
    unattached = await create(attachments, store, ctx)
    assert (await conversations.get_attachment(by_rest.id)).thread_id == "cthr_rest"

    await store.delete_thread("cthr_chatkit", ctx)
    await conversations.delete_thread("cthr_rest")
    for gone in (by_chatkit, by_rest):
        with pytest.raises(NotFoundError):
            await attachments.read(gone.id, ctx)
        with pytest.raises(NotFoundError):
            await store.load_attachment(gone.id, ctx)
        with pytest.raises(AttachmentNotFound):
            await stored_bytes(conversations, gone.id)
    assert await store.load_attachment(unattached.id, ctx) == unattached
