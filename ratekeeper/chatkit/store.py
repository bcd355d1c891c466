"""An openai-chatkit ``Store`` over the service's :class:`~ratekeeper.server.threads.ThreadStore`.

There is one store of threads: the one ``/v1/chatkit/threads`` reads. A thread created through
the protocol endpoint is a REST thread at once (same id, user, title, status, ``created_at``),
its items REST items of the right shapes (:mod:`ratekeeper.chatkit.rest_shapes`), and a thread
seeded or deleted through the REST store is seen by the protocol too.

Every call is scoped by the session's ``user`` (``context.user``): another user's thread or
attachment does not exist (``NotFoundError``), which also keeps ids from leaking.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from typing import Literal

from chatkit.store import NotFoundError, Store, StoreItemType
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata, UserMessageItem

from .._secrets import new_id
from ..errors import InvalidParameter
from ..server.threads import UNSET, StoredItem, StoredThread, ThreadNotFound, ThreadStore
from .context import ChatKitContext
from .limits import page_after, recent_window, thread_title
from .rest_shapes import (
    KeptItem,
    chatkit_item,
    chatkit_thread,
    rest_content,
    rest_status,
    unix_seconds,
)

__all__ = ("ThreadStoreAdapter",)

Order = Literal["asc", "desc"]
_ALL = sys.maxsize  # "every entry" for ThreadStore listings, which take a limit


@dataclass(frozen=True, slots=True)
class _Hidden:
    """An item the REST schema has no shape for, kept beside its thread's REST items."""

    created_at: int
    kept: KeptItem


def _item_id(item: ThreadItem) -> str:
    return item.id


def _thread_id(thread: ThreadMetadata) -> str:
    return thread.id


def _page_size(limit: int) -> int:
    """Return a listing's ``limit``, refusing a negative one (a client's ``params.limit``)."""
    if limit < 0:
        raise InvalidParameter(
            f"Invalid 'params.limit': integer below minimum value. Expected a value >= 0, but "
            f"got {limit} instead.",
            param="params.limit",
            code="integer_below_min_value",
        )
    return limit


class ThreadStoreAdapter(Store[ChatKitContext]):
    """openai-chatkit's ``Store`` on the service's thread store, scoped by the session's user.

    Args:
        threads: the thread store the REST surface reads.

    Besides threads and items it keeps attachment metadata (in memory, per user) and the few
    items REST cannot show (hidden context, end-of-turn markers, generated images, structured
    input), in order among the others. Automatic thread titling happens here, when a thread's
    first user message is saved, so it holds for any ``ChatKitServer`` built on this store.

    Not thread-safe: use it from the one event loop serving the protocol endpoint (the
    ``ThreadStore`` beneath is itself thread-safe, so REST reads may come from anywhere).
    """

    def __init__(self, threads: ThreadStore) -> None:
        self.threads = threads
        self._seq = itertools.count(1)
        self._hidden: dict[str, dict[str, _Hidden]] = {}
        self._attachments: dict[str, tuple[str, Attachment]] = {}

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

    def _owned(self, thread_id: str, context: ChatKitContext) -> StoredThread:
        try:
            stored = self.threads.get_thread(thread_id)
        except ThreadNotFound:
            self._hidden.pop(thread_id, None)  # deleted through REST: drop what we kept
            raise NotFoundError(f"Thread {thread_id} not found") from None
        if stored.user != context.user:
            raise NotFoundError(f"Thread {thread_id} not found")
        return stored

    async def load_thread(self, thread_id: str, context: ChatKitContext) -> ThreadMetadata:
        """Return the user's thread; raise ``NotFoundError`` for any other."""
        return chatkit_thread(self._owned(thread_id, context))

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
        ).model_copy(deep=True)
        try:
            stored = self.threads.get_thread(thread.id)
        except ThreadNotFound:
            self.threads.create_thread(
                context.user,
                thread_id=thread.id,
                title=thread.title,
                status=rest_status(thread.status),
                created_at=unix_seconds(thread.created_at),
                extra=kept,
            )
            return
        if stored.user != context.user:
            raise NotFoundError(f"Thread {thread.id} not found")
        self.threads.update_thread(
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
        limit = _page_size(limit)
        direction: Order = "asc" if order == "asc" else "desc"
        recent = context.history.recent_threads
        if recent is None:
            page = self.threads.list_threads(
                user=context.user, limit=limit, order=direction, after=after
            )
            threads = [chatkit_thread(stored) for stored in page.data]
            has_more = page.has_more
        else:
            newest = self.threads.list_threads(user=context.user, limit=recent, order="desc")
            visible = recent_window([chatkit_thread(s) for s in newest.data], recent)
            if direction == "asc":
                visible.reverse()
            threads, has_more = page_after(visible, after=after, limit=limit, id_of=_thread_id)
        return Page(data=threads, has_more=has_more, after=_next_after(threads, has_more))

    async def delete_thread(self, thread_id: str, context: ChatKitContext) -> None:
        """Delete the user's thread and its items (gone from the REST surface too)."""
        self._owned(thread_id, context)
        self.threads.delete_thread(thread_id)
        self._hidden.pop(thread_id, None)

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
        self._owned(thread_id, context)
        limit = _page_size(limit)
        direction: Order = "asc" if order == "asc" else "desc"
        hidden = self._hidden.get(thread_id)
        if not hidden:
            page = self.threads.list_items(thread_id, limit=limit, order=direction, after=after)
            items = [chatkit_item(stored) for stored in page.data]
            return Page(data=items, has_more=page.has_more, after=_next_after(items, page.has_more))
        everything = self._merged(thread_id, hidden)
        if direction == "desc":
            everything.reverse()
        items, has_more = page_after(everything, after=after, limit=limit, id_of=_item_id)
        return Page(data=items, has_more=has_more, after=_next_after(items, has_more))

    def _merged(self, thread_id: str, hidden: dict[str, _Hidden]) -> list[ThreadItem]:
        """Every item of a thread, oldest first: REST items and hidden ones interleaved."""
        keyed: list[tuple[tuple[int, int], ThreadItem]] = []
        for stored in self.threads.list_items(thread_id, limit=_ALL, order="asc").data:
            seq = stored.extra.seq if isinstance(stored.extra, KeptItem) else 0
            keyed.append(((stored.created_at, seq), chatkit_item(stored)))
        for entry in hidden.values():
            item = entry.kept.item.model_copy(deep=True)
            keyed.append(((entry.created_at, entry.kept.seq), item))
        keyed.sort(key=lambda pair: pair[0])
        return [item for _, item in keyed]

    async def add_thread_item(
        self, thread_id: str, item: ThreadItem, context: ChatKitContext
    ) -> None:
        """Append an item to the user's thread; title the thread from its first message."""
        stored = self._owned(thread_id, context)
        self._put(thread_id, item, next(self._seq))
        if (
            isinstance(item, UserMessageItem)
            and stored.title is None
            and context.automatic_thread_titling
            and self._is_first_user_message(thread_id, item.id)
        ):
            title = thread_title(item)
            if title is not None:
                self.threads.update_thread(thread_id, title=title)

    def _put(self, thread_id: str, item: ThreadItem, seq: int) -> None:
        kept = KeptItem(item.model_copy(deep=True), seq)
        created_at = unix_seconds(item.created_at)
        content = rest_content(item)
        if content is None:
            self._hidden.setdefault(thread_id, {})[item.id] = _Hidden(created_at, kept)
        else:
            self.threads.add_item(
                thread_id, content, item_id=item.id, created_at=created_at, extra=kept
            )

    def _is_first_user_message(self, thread_id: str, item_id: str) -> bool:
        for stored in self.threads.list_items(thread_id, limit=_ALL, order="asc").data:
            if stored.type == "chatkit.user_message" and stored.id != item_id:
                return False
        return True

    async def save_item(self, thread_id: str, item: ThreadItem, context: ChatKitContext) -> None:
        """Replace an item of the user's thread in place (or add it if new)."""
        self._owned(thread_id, context)
        hidden = self._hidden.get(thread_id, {})
        previous = hidden.get(item.id)
        existing: StoredItem | None = None
        if previous is None:
            try:
                existing = self.threads.get_item(thread_id, item.id)
            except ThreadNotFound:
                existing = None
        if previous is None and existing is None:
            self._put(thread_id, item, next(self._seq))
            return
        content = rest_content(item)
        if existing is not None and content is not None:
            seq = existing.extra.seq if isinstance(existing.extra, KeptItem) else 0
            kept = KeptItem(item.model_copy(deep=True), seq)
            self.threads.update_item(thread_id, item.id, content, extra=kept)
            return
        if previous is not None and content is None:
            kept = KeptItem(item.model_copy(deep=True), previous.kept.seq)
            hidden[item.id] = _Hidden(previous.created_at, kept)
            return
        # The item moved between "REST can show it" and "it cannot": re-file it in place.
        if existing is not None:
            self.threads.delete_item(thread_id, item.id)
        else:
            hidden.pop(item.id, None)
        self._put(thread_id, item, previous.kept.seq if previous is not None else 0)

    async def load_item(self, thread_id: str, item_id: str, context: ChatKitContext) -> ThreadItem:
        """Return one item of the user's thread; raise ``NotFoundError`` if there is none."""
        self._owned(thread_id, context)
        entry = self._hidden.get(thread_id, {}).get(item_id)
        if entry is not None:
            item: ThreadItem = entry.kept.item.model_copy(deep=True)
            return item
        try:
            return chatkit_item(self.threads.get_item(thread_id, item_id))
        except ThreadNotFound:
            raise NotFoundError(f"Item {item_id} not found in thread {thread_id}") from None

    async def delete_thread_item(
        self, thread_id: str, item_id: str, context: ChatKitContext
    ) -> None:
        """Delete one item of the user's thread (a missing item is already deleted)."""
        self._owned(thread_id, context)
        hidden = self._hidden.get(thread_id)
        if hidden is not None and hidden.pop(item_id, None) is not None:
            return
        try:
            self.threads.delete_item(thread_id, item_id)
        except ThreadNotFound:
            return

    # -- attachment metadata ---------------------------------------------------------------

    async def save_attachment(self, attachment: Attachment, context: ChatKitContext) -> None:
        """Create or update attachment metadata owned by the user."""
        owner = self._attachments.get(attachment.id)
        if owner is not None and owner[0] != context.user:
            raise NotFoundError(f"Attachment {attachment.id} not found")
        self._attachments[attachment.id] = (context.user, attachment.model_copy(deep=True))

    async def load_attachment(self, attachment_id: str, context: ChatKitContext) -> Attachment:
        """Return the user's attachment metadata; raise ``NotFoundError`` for any other."""
        entry = self._attachments.get(attachment_id)
        if entry is None or entry[0] != context.user:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        return entry[1].model_copy(deep=True)

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        """Delete the user's attachment metadata; raise ``NotFoundError`` for any other."""
        entry = self._attachments.get(attachment_id)
        if entry is None or entry[0] != context.user:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        del self._attachments[attachment_id]

    def mark_uploaded(self, attachment_id: str) -> Attachment | None:
        """Record that an attachment's bytes arrived: drop its upload descriptor.

        Called by the upload route; returns the updated metadata, ``None`` if unknown.
        """
        entry = self._attachments.get(attachment_id)
        if entry is None:
            return None
        updated = entry[1].model_copy(update={"upload_descriptor": None}, deep=True)
        self._attachments[attachment_id] = (entry[0], updated)
        return updated.model_copy(deep=True)

    def __repr__(self) -> str:
        return f"ThreadStoreAdapter(threads={self.threads.count_threads()})"


def _next_after(entries: list[ThreadItem] | list[ThreadMetadata], has_more: bool) -> str | None:
    """The cursor for the next page: the last id of this one while more remain."""
    return entries[-1].id if has_more and entries else None
