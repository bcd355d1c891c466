"""The conversation store's interface: threads, items and attachments, whatever holds them.

One interface serves both faces of ChatKit's conversation state: the REST surface
(``/v1/chatkit/threads…``) and openai-chatkit's ``Store``/``AttachmentStore`` (through
:class:`ratekeeper.chatkit.ChatKitStore`), so a thread written through one is the thread read
through the other, on any worker or host that opens the same store.

Pagination (``limit``, ``order``, ``after``, ``before``), the same for threads and items:

* entries are ordered by ``(created_at, write order)``: ties within one second break by the
  order the writes happened (for items, the order they were committed to their thread);
* ``after=X`` keeps the entries that follow ``X`` in ``order``, ``before=Y`` those that
  precede ``Y``; both together keep the entries strictly between them;
* the page is the first ``limit`` of them, or with only ``before`` the last ``limit`` (the page
  just before the cursor), still listed in ``order``;
* ``has_more`` says whether more entries lie beyond the page in the direction of travel, so the
  SDK's auto-pagination (``after=last_id`` while ``has_more``) visits every entry once.

A cursor may name an entry deleted since the previous page (listing and deleting in one loop is
common): the positions of deleted threads and items are remembered for a while. A cursor naming
no entry at all is :class:`~ratekeeper.InvalidParameter` with ``param`` the cursor's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .._clock import Clock, SystemClock
from .._secrets import new_id
from ._values import (
    ACTIVE,
    Page,
    StoredAttachment,
    StoredItem,
    StoredThread,
    ThreadStatus,
    check_content,
    checked_created_at,
    json_copy,
)

Order = Literal["asc", "desc"]


class Unset:
    """The type of :data:`UNSET`: "leave this field as it is"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


#: Pass as ``title`` to :meth:`ConversationStore.update_thread` to keep the title (the default).
UNSET = Unset()


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What one :meth:`ConversationStore.purge` removed.

    Attributes:
        threads: threads deleted (with their items and attachments) for being too old.
        attachments: attachments deleted for never being uploaded, or never attached to a
            thread, within the timeout.
    """

    threads: int = 0
    attachments: int = 0


@dataclass(frozen=True, slots=True)
class UploadEnd:
    """How :meth:`ConversationStore.write_attachment_bytes` ends an upload, once bytes are in.

    Attributes:
        token_digest: keep the bytes only while the pending upload has this token (any when
            ``None``).
        data: the attachment's new data, or ``None`` to keep it.
    """

    token_digest: bytes | None
    data: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One listing's ``limit``, ``order`` and cursors, as a caller gave them (see the module)."""

    limit: int
    order: Order
    after: str | None
    before: str | None

    def check(self) -> None:
        """Raise ValueError for an order or limit no listing takes."""
        if self.order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', got {self.order!r}")
        if self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit!r}")


class ConversationStore(ABC):
    """Threads, their items, and attachments (metadata and bytes), scoped by user.

    Every method is a coroutine. Implementations: :class:`~ratekeeper.store.MemoryStore` (one
    process, for tests and the library) and :class:`~ratekeeper.store.SQLStore` (SQLite for one
    host, PostgreSQL for several). :func:`~ratekeeper.store.store_from_url` picks one.

    Failures of the database itself raise :class:`~ratekeeper.store.StoreUnavailable`.

    The public methods check and copy their arguments (ids, times and JSON data) here, once
    for every implementation, then call the abstract ``_…`` hooks an implementation provides.

    Args:
        clock: gives ``created_at`` when the caller does not; the system clock by default.
    """

    #: Whether several processes may open the same store and share its state.
    shared: bool = False

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()

    async def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Make the store ready (create its schema when missing). Idempotent.

        Raises:
            StoreUnavailable: the database cannot be reached.
            StoreSchemaError: the database holds a schema this release does not know.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections and files. The store is not used afterwards."""

    async def ping(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Return when the store answers.

        Raises:
            StoreUnavailable: it does not.
        """

    # -- threads ---------------------------------------------------------------------------

    async def create_thread(
        self,
        user: str,
        *,
        title: str | None = None,
        status: ThreadStatus = ACTIVE,
        thread_id: str | None = None,
        created_at: int | None = None,
        extra: Any = None,
    ) -> StoredThread:
        """Create a thread for ``user`` and return it.

        Args:
            user: the owner (non-empty).
            title: the title, or ``None``.
            status: initially active.
            thread_id: the id to use; a fresh ``cthr_…`` when omitted.
            created_at: integer Unix time; now when omitted.
            extra: JSON data kept beside the thread.

        Raises:
            ValueError: ``thread_id`` is already taken, or ``user`` is empty.
        """
        if not isinstance(user, str) or not user:
            raise ValueError("a thread needs a non-empty user")
        extra = json_copy(extra)
        thread_id = thread_id if thread_id is not None else new_id("cthr")
        thread = StoredThread(thread_id, user, self._created_at(created_at), title, status, extra)
        if not await self._insert_thread(thread):
            raise ValueError(f"thread id {thread_id!r} is already taken")
        return thread

    @abstractmethod
    async def get_thread(self, thread_id: str) -> StoredThread:
        """Return the thread ``thread_id``.

        Raises:
            ThreadNotFound: no such thread.
        """

    async def update_thread(
        self,
        thread_id: str,
        *,
        title: str | Unset | None = UNSET,
        status: ThreadStatus | None = None,
        extra: Any = None,
    ) -> StoredThread:
        """Change a thread's title, status and/or extra data; return the updated thread.

        Pass ``title=None`` to clear the title; leave it out (or pass :data:`UNSET`) to keep it.
        ``status`` and ``extra`` are kept when ``None``. The owner and creation time never
        change.

        Raises:
            ThreadNotFound: no such thread.
        """
        extra = json_copy(extra)
        changes: dict[str, Any] = {}
        if not isinstance(title, Unset):
            changes["title"] = title
        if status is not None:
            changes["status"] = status
        if extra is not None:
            changes["extra"] = extra
        if not changes:
            return await self.get_thread(thread_id)
        return await self._update_thread(thread_id, changes)

    @abstractmethod
    async def delete_thread(self, thread_id: str) -> StoredThread:
        """Delete a thread, its items, and its attachments with their bytes; return it.

        Raises:
            ThreadNotFound: no such thread.
        """

    async def list_threads(
        self,
        *,
        user: str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredThread]:
        """Return one page of threads (of ``user`` only, when given); see the module's rules.

        Raises:
            InvalidParameter: ``after`` or ``before`` names no thread.
        """
        request = PageRequest(limit, order, after, before)
        request.check()
        return await self._list_threads(user, request)

    @abstractmethod
    async def count_threads(self, user: str | None = None) -> int:
        """Return how many threads exist (of ``user`` only, when given)."""

    # -- items -----------------------------------------------------------------------------

    async def add_item(
        self,
        thread_id: str,
        content: Mapping[str, Any] | None,
        *,
        item_id: str | None = None,
        created_at: int | None = None,
        extra: Any = None,
    ) -> StoredItem:
        """Append an item to a thread and return it.

        Args:
            thread_id: the thread.
            content: the type-specific REST fields, ``type`` included (see
                :func:`~ratekeeper.store.user_message`); ``None`` for an item REST never lists.
            item_id: the id to use; a fresh ``cthi_…`` when omitted.
            created_at: integer Unix time; now when omitted.
            extra: JSON data kept beside the item.

        Raises:
            ThreadNotFound: no such thread.
            ValueError: ``content`` has no known ``type``, or ``item_id`` is taken.
        """
        check_content(content)
        item = StoredItem(
            item_id if item_id is not None else new_id("cthi"),
            thread_id,
            self._created_at(created_at),
            json_copy(content),
            json_copy(extra),
        )
        if not await self._insert_item(item):
            raise ValueError(f"item id {item.id!r} is already taken in this thread")
        return item

    async def update_item(
        self,
        thread_id: str,
        item_id: str,
        content: Mapping[str, Any] | None,
        *,
        extra: Any = None,
    ) -> StoredItem:
        """Replace an item's content (and extra data when given), keeping its place.

        Raises:
            ThreadNotFound: no such thread or item.
            ValueError: ``content`` has no known ``type``.
        """
        check_content(content)
        return await self._update_item(thread_id, item_id, json_copy(content), json_copy(extra))

    @abstractmethod
    async def get_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Return one item of a thread (hidden ones too).

        Raises:
            ThreadNotFound: no such thread or item.
        """

    @abstractmethod
    async def delete_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Delete one item of a thread and return it.

        Raises:
            ThreadNotFound: no such thread or item.
        """

    async def list_items(
        self,
        thread_id: str,
        *,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
        include_hidden: bool = False,
    ) -> Page[StoredItem]:
        """Return one page of a thread's items; see the module's rules.

        Args:
            include_hidden: list the items REST has no shape for too (the ChatKit view).

        Raises:
            ThreadNotFound: no such thread.
            InvalidParameter: ``after`` or ``before`` names no item of this thread.
        """
        request = PageRequest(limit, order, after, before)
        return await self._list_items(thread_id, request, include_hidden)

    # -- attachments -----------------------------------------------------------------------

    async def save_attachment(self, attachment: StoredAttachment) -> None:
        """Create or replace an attachment's metadata (its bytes, if any, are kept).

        An attachment saved with the id of a thread that does not exist (deleted meanwhile)
        goes as if that thread had been deleted just after: with its bytes.
        """
        await self._save_attachment(replace(attachment, data=json_copy(dict(attachment.data))))

    @abstractmethod
    async def get_attachment(self, attachment_id: str) -> StoredAttachment:
        """Return an attachment's metadata.

        Raises:
            AttachmentNotFound: no such attachment.
        """

    @abstractmethod
    async def delete_attachment(self, attachment_id: str) -> StoredAttachment:
        """Delete an attachment's metadata and bytes; return the metadata.

        Raises:
            AttachmentNotFound: no such attachment.
        """

    async def update_attachment(
        self,
        attachment_id: str,
        *,
        data: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> StoredAttachment:
        """Replace an attachment's data and/or tie it to a thread, in one atomic step.

        Only the fields given change: an upload finishing meanwhile (its size, its token) is
        never undone. An attachment tied to a thread is deleted with it.

        Raises:
            AttachmentNotFound: no such attachment.
            ThreadNotFound: ``thread_id`` names no thread.
        """
        if data is None and thread_id is None:
            return await self.get_attachment(attachment_id)
        copied = json_copy(dict(data)) if data is not None else None
        return await self._update_attachment(attachment_id, copied, thread_id)

    async def write_attachment_bytes(
        self,
        attachment_id: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        upload_token_digest: bytes | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> StoredAttachment:
        """Store an attachment's bytes, streamed, and end its pending upload.

        The bytes are never held whole in memory. Replaces any bytes stored before; on
        failure nothing of the new bytes stays and the old metadata is unchanged.

        Args:
            attachment_id: the attachment, which must exist.
            chunks: the bytes, in order.
            max_bytes: most bytes accepted.
            upload_token_digest: when given, the bytes are kept only if the attachment's
                pending upload still has this token, checked in the same atomic step that
                ends it: of two uploads racing with one single-use token, one wins.
            data: when given, replaces the attachment's data in that same step.

        Returns:
            The metadata with ``size_bytes`` set and no pending upload.

        Raises:
            AttachmentNotFound: no such attachment (deleted meanwhile, say), or its pending
                upload does not have ``upload_token_digest`` (used already).
            AttachmentTooLarge: more than ``max_bytes`` arrived.
        """
        await self.get_attachment(attachment_id)
        copied = json_copy(dict(data)) if data is not None else None
        end = UploadEnd(upload_token_digest, copied)
        return await self._write_attachment_bytes(attachment_id, chunks, max_bytes, end)

    @abstractmethod
    def read_attachment_bytes(self, attachment_id: str) -> AsyncIterator[bytes]:
        """Stream an attachment's stored bytes.

        Raises:
            AttachmentNotFound: no such attachment, or its bytes have not arrived (raised when
                the iteration starts).
        """

    # -- maintenance -----------------------------------------------------------------------

    @abstractmethod
    async def purge(
        self, *, threads_before: int | None = None, attachments_before: int | None = None
    ) -> PurgeResult:
        """Delete old state; return what went.

        Args:
            threads_before: delete threads created before this Unix time (with their items,
                attachments and bytes); ``None`` keeps every thread.
            attachments_before: delete attachments created before this Unix time that are
                still pending or were never attached to a thread; ``None`` keeps them.
        """

    # -- implementation hooks (arguments checked and copied already) ---------------------

    def _created_at(self, created_at: int | None) -> int:
        return checked_created_at(created_at, self._clock.time())

    @abstractmethod
    async def _insert_thread(self, thread: StoredThread) -> bool:
        """Add a new thread; return False (adding nothing) when its id is taken."""

    @abstractmethod
    async def _update_thread(self, thread_id: str, changes: Mapping[str, Any]) -> StoredThread:
        """Apply ``changes`` (some of ``title``, ``status``, ``extra``); return the thread.

        Raises:
            ThreadNotFound: no such thread.
        """

    @abstractmethod
    async def _list_threads(self, user: str | None, request: PageRequest) -> Page[StoredThread]:
        """Return one page of threads (``request`` is checked already)."""

    @abstractmethod
    async def _insert_item(self, item: StoredItem) -> bool:
        """Append a new item to its thread; return False (adding nothing) when its id is taken.

        Raises:
            ThreadNotFound: no such thread.
        """

    @abstractmethod
    async def _update_item(
        self, thread_id: str, item_id: str, content: Any, extra: Any
    ) -> StoredItem:
        """Replace an item's content, and its extra data unless ``None``; return the item.

        Raises:
            ThreadNotFound: no such thread or item.
        """

    @abstractmethod
    async def _list_items(
        self, thread_id: str, request: PageRequest, include_hidden: bool
    ) -> Page[StoredItem]:
        """Return one page of a thread's items.

        A missing thread is reported first: call ``request.check()`` once the thread is found.
        """

    @abstractmethod
    async def _save_attachment(self, attachment: StoredAttachment) -> None:
        """Create or replace an attachment's metadata, or drop it when its thread is gone."""

    @abstractmethod
    async def _update_attachment(
        self, attachment_id: str, data: dict[str, Any] | None, thread_id: str | None
    ) -> StoredAttachment:
        """Replace the data and/or the thread (not both ``None``) in one atomic step."""

    @abstractmethod
    async def _write_attachment_bytes(
        self, attachment_id: str, chunks: AsyncIterable[bytes], max_bytes: int, end: UploadEnd
    ) -> StoredAttachment:
        """Store the bytes, then end the upload as ``end`` says in one atomic step."""
