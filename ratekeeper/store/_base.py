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
from dataclasses import dataclass
from typing import Any, Literal

from ._values import ACTIVE, Page, StoredAttachment, StoredItem, StoredThread, ThreadStatus

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


class ConversationStore(ABC):
    """Threads, their items, and attachments (metadata and bytes), scoped by user.

    Every method is a coroutine. Implementations: :class:`~ratekeeper.store.MemoryStore` (one
    process, for tests and the library) and :class:`~ratekeeper.store.SQLStore` (SQLite for one
    host, PostgreSQL for several). :func:`~ratekeeper.store.store_from_url` picks one.

    Failures of the database itself raise :class:`~ratekeeper.store.StoreUnavailable`.
    """

    #: Whether several processes may open the same store and share its state.
    shared: bool = False

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

    @abstractmethod
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

    @abstractmethod
    async def get_thread(self, thread_id: str) -> StoredThread:
        """Return the thread ``thread_id``.

        Raises:
            ThreadNotFound: no such thread.
        """

    @abstractmethod
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

    @abstractmethod
    async def delete_thread(self, thread_id: str) -> StoredThread:
        """Delete a thread, its items, and its attachments with their bytes; return it.

        Raises:
            ThreadNotFound: no such thread.
        """

    @abstractmethod
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

    @abstractmethod
    async def count_threads(self, user: str | None = None) -> int:
        """Return how many threads exist (of ``user`` only, when given)."""

    # -- items -----------------------------------------------------------------------------

    @abstractmethod
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

    @abstractmethod
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

    @abstractmethod
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

    # -- attachments -----------------------------------------------------------------------

    @abstractmethod
    async def save_attachment(self, attachment: StoredAttachment) -> None:
        """Create or replace an attachment's metadata (its bytes, if any, are kept)."""

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

    @abstractmethod
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

    @abstractmethod
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
