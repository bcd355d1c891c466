"""openai-chatkit's ``Store`` over a :class:`~ratekeeper.store.ConversationStore`.

There is one store of threads: the one ``/v1/chatkit/threads`` reads. A thread created through
the protocol endpoint is a REST thread at once (same id, user, title, status, ``created_at``),
its items REST items of the right shapes (:mod:`ratekeeper.chatkit.rest_shapes`), and a thread
seeded or deleted through the REST store is seen by the protocol too: on every worker and host
that opens the same conversation store.

ChatKit's own models are kept beside the REST shapes as JSON (``extra``), so the protocol reads
back exactly what it wrote; items REST has no shape for (hidden context, end-of-turn markers,
generated images, structured input) are stored hidden, in their place among the others.

Every call is scoped by the session's ``user`` (``context.user``): another user's thread or
attachment does not exist (``NotFoundError``), which also keeps ids from leaking.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata, UserMessageItem
from pydantic import TypeAdapter, ValidationError

from .._clock import Clock, SystemClock
from .._params import check_int
from .._secrets import new_id
from .._tokens import AttachmentTokens
from ..store import (
    UNSET,
    AttachmentNotFound,
    ConversationStore,
    StoredAttachment,
    StoredItem,
    StoredThread,
    ThreadNotFound,
)
from ._context import ChatKitContext
from ._limits import page_after, recent_window, thread_title
from ._rest_shapes import chatkit_item, chatkit_thread, rest_content, rest_status, unix_seconds

Order = Literal["asc", "desc"]
#: Most items scanned to decide whether a message is its thread's first user message.
_TITLE_SCAN = 1000
_ATTACHMENT: TypeAdapter[Attachment] = TypeAdapter(Attachment)


def attachment_json(attachment: Attachment) -> dict[str, Any]:
    """Return an attachment's metadata as stored (``StoredAttachment.data["attachment"]``)."""
    data: dict[str, Any] = attachment.model_dump(mode="json")
    return data


def attachment_from_json(stored: StoredAttachment, tokens: AttachmentTokens) -> Attachment:
    """Return the ChatKit ``Attachment`` kept in a stored attachment's data, tokens put back.

    The stored URLs have no token (:class:`~ratekeeper.chatkit.AttachmentTokens`); the one
    returned carries the upload and preview tokens ``tokens`` derives.

    Raises:
        NotFoundError: the data holds no attachment ChatKit can read (written by another
            program, say).
    """
    try:
        raw = stored.data.get("attachment")
        if isinstance(raw, dict):
            raw = tokens.issue_attachment(raw)
        return _ATTACHMENT.validate_python(raw)
    except ValidationError:
        raise NotFoundError(f"Attachment {stored.id} not found") from None


async def owned_attachment(
    conversations: ConversationStore, attachment_id: str, context: ChatKitContext
) -> StoredAttachment:
    """Return the user's stored attachment; ``NotFoundError`` for any other, or none.

    Another user's attachment does not exist, as far as the protocol tells: ids never leak.
    """
    try:
        stored = await conversations.get_attachment(attachment_id)
    except AttachmentNotFound:
        raise NotFoundError(f"Attachment {attachment_id} not found") from None
    if stored.user != context.user:
        raise NotFoundError(f"Attachment {attachment_id} not found")
    return stored


def _thread_id(thread: ThreadMetadata) -> str:
    return thread.id


def _next_after(entries: list[ThreadItem] | list[ThreadMetadata], has_more: bool) -> str | None:
    """The cursor for the next page: the last id of this one while more remain."""
    return entries[-1].id if has_more and entries else None


class OverConversations:
    """What both ChatKit stores are built on: a conversation store, a clock and the tokens.

    See :class:`ChatKitStore` and :class:`~ratekeeper.chatkit.ChatKitAttachmentStore` for the
    arguments; the clock and the tokens default alike for both.
    """

    def __init__(
        self,
        conversations: ConversationStore,
        *,
        clock: Clock | None = None,
        tokens: AttachmentTokens | None = None,
    ) -> None:
        self.conversations = conversations
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.tokens = tokens if tokens is not None else AttachmentTokens.for_this_process()

    def _now(self) -> int:
        """Whole seconds: the ``created_at`` of new attachment metadata."""
        return math.floor(self._clock.time())


class ChatKitStore(OverConversations, Store[ChatKitContext]):
    """openai-chatkit's ``Store`` on a conversation store, scoped by the session's user.

    Args:
        conversations: the conversation store the REST surface reads (memory, SQLite or
            PostgreSQL).
        clock: stamps attachment metadata; the system clock by default.
        tokens: takes the upload and preview tokens out of the URLs it stores and puts them
            back in those it returns; the same key as the ``ChatKitAttachmentStore``'s (this
            process's own random key when ``None``).

    Automatic thread titling happens here, when a thread's first user message is saved, so it
    holds for any ``ChatKitServer`` built on this store. Holds no state of its own, so any
    number of workers may each have one over the same shared store; safe to use from one
    event loop (the conversation store documents its own thread-safety).
    """

    def _item(self, stored: StoredItem) -> ThreadItem:
        """The ChatKit item of a stored one, its attachments' tokens put back."""
        content = self.tokens.issue_item(stored.content)
        extra = self.tokens.issue_item(stored.extra)
        if content is stored.content and extra is stored.extra:  # no attachments: no copy
            return chatkit_item(stored)
        return chatkit_item(dataclasses.replace(stored, content=content, extra=extra))

    # -- ids: the REST surface's prefixes --------------------------------------------------

    def generate_thread_id(self, context: ChatKitContext) -> str:
        """Return a new thread id, ``cthr_…`` as on OpenAI's REST surface."""
        return new_id("cthr")

    def generate_item_id(
        self, item_type: StoreItemType, thread: ThreadMetadata, context: ChatKitContext
    ) -> str:
        """Return a new item id, ``cthi_…`` as on OpenAI's REST surface."""
        return new_id("cthi")

    # -- threads ---------------------------------------------------------------------------

    async def _owned(self, thread_id: str, context: ChatKitContext) -> StoredThread:
        try:
            stored = await self.conversations.get_thread(thread_id)
        except ThreadNotFound:
            raise NotFoundError(f"Thread {thread_id} not found") from None
        if stored.user != context.user:
            raise NotFoundError(f"Thread {thread_id} not found")
        return stored

    async def load_thread(self, thread_id: str, context: ChatKitContext) -> ThreadMetadata:
        """Return the user's thread; raise ``NotFoundError`` for any other."""
        return chatkit_thread(await self._owned(thread_id, context))

    async def save_thread(self, thread: ThreadMetadata, context: ChatKitContext) -> None:
        """Create or update the user's thread.

        A ``None`` title never clears a stored one: ChatKit sets titles only to strings
        (``threads.update``), and a server still holding the untitled copy of a thread that
        was titled automatically must not undo that.
        """
        kept = ThreadMetadata(
            id=thread.id,
            title=thread.title,
            created_at=thread.created_at,
            status=thread.status,
            allowed_image_domains=thread.allowed_image_domains,
            metadata=thread.metadata,
        ).model_dump(mode="json")
        try:
            stored = await self.conversations.get_thread(thread.id)
        except ThreadNotFound:
            try:
                await self.conversations.create_thread(
                    context.user,
                    thread_id=thread.id,
                    title=thread.title,
                    status=rest_status(thread.status),
                    created_at=unix_seconds(thread.created_at),
                    extra=kept,
                )
                return
            except ValueError:  # another worker created it meanwhile: update it instead
                stored = await self.conversations.get_thread(thread.id)
        if stored.user != context.user:
            raise NotFoundError(f"Thread {thread.id} not found")
        await self.conversations.update_thread(
            thread.id,
            title=thread.title if thread.title is not None else UNSET,
            status=rest_status(thread.status),
            extra=kept,
        )

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: ChatKitContext
    ) -> Page[ThreadMetadata]:
        """Return a page of the user's threads, within ``history.recent_threads`` if set.

        Raises:
            InvalidParameter: ``limit`` is negative.
        """
        limit = check_int(limit, "params.limit", minimum=0)
        direction: Order = "asc" if order == "asc" else "desc"
        recent = context.history.recent_threads
        if recent is None:
            page = await self.conversations.list_threads(
                user=context.user, limit=limit, order=direction, after=after
            )
            threads = [chatkit_thread(stored) for stored in page.data]
            has_more = page.has_more
        else:
            newest = await self.conversations.list_threads(
                user=context.user, limit=recent, order="desc"
            )
            visible = recent_window([chatkit_thread(s) for s in newest.data], recent)
            if direction == "asc":
                visible.reverse()
            threads, has_more = page_after(visible, after=after, limit=limit, id_of=_thread_id)
        return Page(data=threads, has_more=has_more, after=_next_after(threads, has_more))

    async def delete_thread(self, thread_id: str, context: ChatKitContext) -> None:
        """Delete the user's thread, its items and attachments (gone from REST too)."""
        await self._owned(thread_id, context)
        try:
            await self.conversations.delete_thread(thread_id)
        except ThreadNotFound:
            return  # deleted by another request meanwhile: the outcome asked for

    # -- items -----------------------------------------------------------------------------

    async def load_thread_items(
        self,
        thread_id: str,
        after: str | None,
        limit: int,
        order: str,
        context: ChatKitContext,
    ) -> Page[ThreadItem]:
        """Return a page of a thread's items (hidden ones included, in their place).

        Raises:
            NotFoundError: the thread is not the user's.
            InvalidParameter: ``limit`` is negative.
        """
        await self._owned(thread_id, context)
        limit = check_int(limit, "params.limit", minimum=0)
        direction: Order = "asc" if order == "asc" else "desc"
        try:
            page = await self.conversations.list_items(
                thread_id, limit=limit, order=direction, after=after, include_hidden=True
            )
        except ThreadNotFound:
            raise NotFoundError(f"Thread {thread_id} not found") from None
        items = [self._item(stored) for stored in page.data]
        return Page(data=items, has_more=page.has_more, after=_next_after(items, page.has_more))

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: ChatKitContext
    ) -> None:
        """Append an item to the user's thread; title the thread from its first message."""
        stored = await self._owned(thread_id, context)
        await self._put(thread_id, item)
        if (
            isinstance(item, UserMessageItem)
            and stored.title is None
            and context.automatic_thread_titling
            and await self._is_first_user_message(thread_id, item.id)
        ):
            title = thread_title(item)
            if title is not None:
                await self.conversations.update_thread(thread_id, title=title)

    async def _put(self, thread_id: str, item: ThreadItem) -> StoredItem:
        try:
            return await self.conversations.add_item(
                thread_id,
                self.tokens.strip_item(rest_content(item)),
                item_id=item.id,
                created_at=unix_seconds(item.created_at),
                extra=self.tokens.strip_item(item.model_dump(mode="json")),
            )
        except ThreadNotFound:
            raise NotFoundError(f"Thread {thread_id} not found") from None

    async def _is_first_user_message(self, thread_id: str, item_id: str) -> bool:
        page = await self.conversations.list_items(thread_id, limit=_TITLE_SCAN, order="asc")
        return not any(
            stored.type == "chatkit.user_message" and stored.id != item_id for stored in page.data
        )

    async def save_item(self, thread_id: str, item: ThreadItem, context: ChatKitContext) -> None:
        """Replace an item of the user's thread in place (or add it if new)."""
        await self._owned(thread_id, context)
        content = self.tokens.strip_item(rest_content(item))
        extra = self.tokens.strip_item(item.model_dump(mode="json"))
        try:
            await self.conversations.update_item(thread_id, item.id, content, extra=extra)
            return
        except ThreadNotFound:
            pass
        try:
            await self._put(thread_id, item)
        except ValueError:  # added by another request meanwhile: replace that one
            await self.conversations.update_item(thread_id, item.id, content, extra=extra)

    async def load_item(self, thread_id: str, item_id: str, context: ChatKitContext) -> ThreadItem:
        """Return one item of the user's thread; raise ``NotFoundError`` if there is none."""
        await self._owned(thread_id, context)
        try:
            return self._item(await self.conversations.get_item(thread_id, item_id))
        except ThreadNotFound:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}") from None

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: ChatKitContext
    ) -> None:
        """Delete one item of the user's thread (a missing item is already deleted)."""
        await self._owned(thread_id, context)
        try:
            await self.conversations.delete_item(thread_id, item_id)
        except ThreadNotFound:
            return

    # -- attachment metadata ---------------------------------------------------------------

    async def _owned_attachment(
        self, attachment_id: str, context: ChatKitContext
    ) -> StoredAttachment:
        return await owned_attachment(self.conversations, attachment_id, context)

    async def save_attachment(self, attachment: Attachment, context: ChatKitContext) -> None:
        """Create or update attachment metadata owned by the user.

        An attachment's upload state (pending token, declared and stored size) is kept; a
        ``thread_id`` ties it to its thread, with which it is deleted.
        """
        data = {"attachment": self.tokens.strip_attachment(attachment_json(attachment))}
        try:
            stored = await self.conversations.get_attachment(attachment.id)
        except AttachmentNotFound:
            now = self._now()
            if attachment.thread_id is not None:
                await self._owned(attachment.thread_id, context)
            await self.conversations.save_attachment(
                StoredAttachment(
                    attachment.id, context.user, now, data, thread_id=attachment.thread_id
                )
            )
            return
        if stored.user != context.user:
            raise NotFoundError(f"Attachment {attachment.id} not found")
        thread_id = attachment.thread_id
        if thread_id is not None and thread_id != stored.thread_id:
            await self._owned(thread_id, context)
        # Only the data and the thread change: an upload finishing meanwhile is kept. The
        # other keys of the data (the preview token's digest) never change after creation.
        try:
            await self.conversations.update_attachment(
                attachment.id,
                data={**stored.data, **data},
                thread_id=thread_id if thread_id != stored.thread_id else None,
            )
        except (AttachmentNotFound, ThreadNotFound):
            raise NotFoundError(f"Attachment {attachment.id} not found") from None

    async def load_attachment(self, attachment_id: str, context: ChatKitContext) -> Attachment:
        """Return the user's attachment metadata; raise ``NotFoundError`` for any other."""
        return attachment_from_json(
            await self._owned_attachment(attachment_id, context), self.tokens
        )

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        """Delete the user's attachment: its metadata and its bytes.

        Raises:
            NotFoundError: no such attachment for this user.
        """
        await self._owned_attachment(attachment_id, context)
        try:
            await self.conversations.delete_attachment(attachment_id)
        except AttachmentNotFound:
            return  # deleted by another request meanwhile

    def __repr__(self) -> str:
        return f"ChatKitStore({self.conversations!r})"
