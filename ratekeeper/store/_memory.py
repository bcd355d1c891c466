"""The in-memory conversation store: one process's threads, items and attachments.

For tests and the library (it is never the service's default): nothing survives the process,
and another worker cannot see it. The pagination rules are :mod:`ratekeeper.store._base`'s.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, Generic, TypeVar

from sortedcontainers import SortedKeyList

from .._clock import Clock
from .._errors import InvalidParameter
from ._base import ConversationStore, PageRequest, PurgeResult, UploadEnd
from ._values import (
    AttachmentNotFound,
    AttachmentTooLarge,
    Page,
    StoredAttachment,
    StoredItem,
    StoredThread,
    ThreadNotFound,
)

#: How many deleted threads (and items) keep their position for cursors.
_TOMBSTONES = 10_000

T = TypeVar("T")
Key = tuple[int, int]


def _id_of(entry: Any) -> str:
    return str(entry.id)


class _Entries(Generic[T]):
    """Entries sorted by ``(created_at, seq)``, with an id index. Caller holds the lock."""

    __slots__ = ("by_id", "keys", "sorted")

    def __init__(self) -> None:
        self.by_id: dict[str, T] = {}
        self.keys: dict[str, Key] = {}
        self.sorted: SortedKeyList = SortedKeyList(key=self._key_of)

    def _key_of(self, entry: Any) -> Key:
        return self.keys[entry.id]

    def add(self, entry: T, key: Key) -> None:
        entry_id = _id_of(entry)
        self.keys[entry_id] = key
        self.by_id[entry_id] = entry
        self.sorted.add(entry)

    def replace(self, entry: T) -> None:
        entry_id = _id_of(entry)
        self.sorted.remove(self.by_id[entry_id])
        self.by_id[entry_id] = entry
        self.sorted.add(entry)

    def remove(self, entry_id: str) -> Key:
        self.sorted.remove(self.by_id.pop(entry_id))
        return self.keys.pop(entry_id)

    def __len__(self) -> int:
        return len(self.by_id)


class _ThreadRecord:
    __slots__ = ("items", "thread", "visible")

    def __init__(self, thread: StoredThread) -> None:
        self.thread = thread
        self.items: _Entries[StoredItem] = _Entries()  # every item, hidden ones too
        self.visible: _Entries[StoredItem] = _Entries()  # the items REST lists

    @property
    def id(self) -> str:
        return self.thread.id


class MemoryStore(ConversationStore):
    """Threads, items and attachments in this process's memory.

    Args:
        clock: gives ``created_at`` when the caller does not; the system clock by default.

    Thread-safe: every method holds one internal lock for its (short, non-blocking) duration,
    so an event loop and a test seeding from another thread can share one store. Nothing here
    awaits.
    """

    shared = False

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self._lock = threading.Lock()
        self._seq = 0
        self._threads: _Entries[_ThreadRecord] = _Entries()
        self._by_user: dict[str, _Entries[_ThreadRecord]] = {}
        # Positions of deleted threads and items, so a cursor naming one still works.
        self._gone: OrderedDict[str, Key] = OrderedDict()
        self._attachments: dict[str, StoredAttachment] = {}
        self._bytes: dict[str, bytes] = {}

    # -- threads --------------------------------------------------------------------------

    async def _insert_thread(self, thread: StoredThread) -> bool:
        with self._lock:
            if thread.id in self._threads.by_id:
                return False
            record = _ThreadRecord(thread)
            key = self._next_key(thread.created_at)
            self._threads.add(record, key)
            self._by_user.setdefault(thread.user, _Entries()).add(record, key)
            self._gone.pop(thread.id, None)
            return True

    async def get_thread(self, thread_id: str) -> StoredThread:
        """Return a thread (see :meth:`ConversationStore.get_thread`)."""
        with self._lock:
            return self._record(thread_id).thread

    async def _update_thread(self, thread_id: str, changes: Mapping[str, Any]) -> StoredThread:
        with self._lock:
            record = self._record(thread_id)
            # The record is shared by the global and per-user indexes; neither sorts by these.
            record.thread = replace(record.thread, **changes)
            return record.thread

    async def delete_thread(self, thread_id: str) -> StoredThread:
        """Delete a thread (see :meth:`ConversationStore.delete_thread`)."""
        with self._lock:
            record = self._record(thread_id)
            user = record.thread.user
            key = self._threads.remove(thread_id)
            by_user = self._by_user[user]
            by_user.remove(thread_id)
            if not by_user:
                del self._by_user[user]
            self._bury(thread_id, key)
            for item_id, item_key in record.items.keys.items():
                self._bury(item_id, item_key)
            # A scan, not an index: this store is for tests, and a scan cannot go stale when
            # an attachment moves to another thread.
            for attachment in list(self._attachments.values()):
                if attachment.thread_id == thread_id:
                    del self._attachments[attachment.id]
                    self._bytes.pop(attachment.id, None)
            return record.thread

    async def _list_threads(self, user: str | None, request: PageRequest) -> Page[StoredThread]:
        with self._lock:
            entries = self._threads if user is None else self._by_user.get(user)
            if entries is None:
                entries = _Entries()
            page = self._page(entries, self._threads, request)
            return Page([record.thread for record in page.data], page.has_more)

    async def count_threads(self, user: str | None = None) -> int:
        """Count threads (see :meth:`ConversationStore.count_threads`)."""
        with self._lock:
            if user is None:
                return len(self._threads)
            entries = self._by_user.get(user)
            return 0 if entries is None else len(entries)

    # -- items ----------------------------------------------------------------------------

    async def _insert_item(self, item: StoredItem) -> bool:
        with self._lock:
            record = self._record(item.thread_id)
            if item.id in record.items.by_id:
                return False
            key = self._next_key(item.created_at)
            record.items.add(item, key)
            if item.content is not None:
                record.visible.add(item, key)
            self._gone.pop(item.id, None)
            return True

    async def _update_item(
        self, thread_id: str, item_id: str, content: Any, extra: Any
    ) -> StoredItem:
        with self._lock:
            record = self._record(thread_id)
            old = record.items.by_id.get(item_id)
            if old is None:
                raise ThreadNotFound(thread_id, item_id)
            item = replace(old, content=content, extra=old.extra if extra is None else extra)
            record.items.replace(item)
            if old.content is not None:
                record.visible.remove(item_id)
            if content is not None:
                record.visible.add(item, record.items.keys[item_id])
            return item

    async def get_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Return one item (see :meth:`ConversationStore.get_item`)."""
        with self._lock:
            item = self._record(thread_id).items.by_id.get(item_id)
            if item is None:
                raise ThreadNotFound(thread_id, item_id)
            return item

    async def delete_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Delete one item (see :meth:`ConversationStore.delete_item`)."""
        with self._lock:
            record = self._record(thread_id)
            item = record.items.by_id.get(item_id)
            if item is None:
                raise ThreadNotFound(thread_id, item_id)
            self._bury(item_id, record.items.remove(item_id))
            if item.content is not None:
                record.visible.remove(item_id)
            return item

    async def _list_items(
        self, thread_id: str, request: PageRequest, include_hidden: bool
    ) -> Page[StoredItem]:
        with self._lock:
            record = self._record(thread_id)
            request.check()
            entries = record.items if include_hidden else record.visible
            return self._page(entries, record.items, request)

    # -- attachments ----------------------------------------------------------------------

    async def _save_attachment(self, attachment: StoredAttachment) -> None:
        with self._lock:
            if attachment.thread_id is not None and attachment.thread_id not in self._threads.by_id:
                # Its thread is gone (deleted meanwhile): it goes as if deleted with it.
                self._attachments.pop(attachment.id, None)
                self._bytes.pop(attachment.id, None)
                return
            self._attachments[attachment.id] = attachment

    async def get_attachment(self, attachment_id: str) -> StoredAttachment:
        """Return attachment metadata (see the interface)."""
        with self._lock:
            attachment = self._attachments.get(attachment_id)
            if attachment is None:
                raise AttachmentNotFound(attachment_id)
            return attachment

    async def delete_attachment(self, attachment_id: str) -> StoredAttachment:
        """Delete attachment metadata and bytes (see the interface)."""
        with self._lock:
            attachment = self._attachments.pop(attachment_id, None)
            if attachment is None:
                raise AttachmentNotFound(attachment_id)
            self._bytes.pop(attachment_id, None)
            return attachment

    async def _update_attachment(
        self, attachment_id: str, data: dict[str, Any] | None, thread_id: str | None
    ) -> StoredAttachment:
        with self._lock:
            attachment = self._attachments.get(attachment_id)
            if attachment is None:
                raise AttachmentNotFound(attachment_id)
            if thread_id is not None and thread_id not in self._threads.by_id:
                raise ThreadNotFound(thread_id)
            attachment = replace(
                attachment,
                data=attachment.data if data is None else data,
                thread_id=attachment.thread_id if thread_id is None else thread_id,
            )
            self._attachments[attachment_id] = attachment
            return attachment

    async def _write_attachment_bytes(
        self, attachment_id: str, chunks: AsyncIterable[bytes], max_bytes: int, end: UploadEnd
    ) -> StoredAttachment:
        # Held in memory here, whole.
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise AttachmentTooLarge(attachment_id, max_bytes)
            parts.append(chunk)
        with self._lock:
            attachment = self._attachments.get(attachment_id)
            if attachment is None or (
                end.token_digest is not None and attachment.upload_token_digest != end.token_digest
            ):
                raise AttachmentNotFound(attachment_id)
            attachment = replace(
                attachment,
                upload_token_digest=None,
                size_bytes=size,
                data=attachment.data if end.data is None else end.data,
            )
            self._attachments[attachment_id] = attachment
            self._bytes[attachment_id] = b"".join(parts)
            return attachment

    async def read_attachment_bytes(self, attachment_id: str) -> AsyncIterator[bytes]:
        """Stream an attachment's bytes (see the interface)."""
        with self._lock:
            data = self._bytes.get(attachment_id)
        if data is None:
            raise AttachmentNotFound(attachment_id)
        yield data

    # -- maintenance ----------------------------------------------------------------------

    async def purge(
        self, *, threads_before: int | None = None, attachments_before: int | None = None
    ) -> PurgeResult:
        """Delete old threads and stale attachments (see the interface)."""
        threads = 0
        if threads_before is not None:
            with self._lock:
                old = [r.id for r in self._threads.sorted if r.thread.created_at < threads_before]
            for thread_id in old:
                try:
                    await self.delete_thread(thread_id)
                except ThreadNotFound:
                    continue
                threads += 1
        attachments = 0
        if attachments_before is not None:
            with self._lock:
                stale = [
                    a.id
                    for a in self._attachments.values()
                    if a.created_at < attachments_before and (a.pending or a.thread_id is None)
                ]
                for attachment_id in stale:
                    del self._attachments[attachment_id]
                    self._bytes.pop(attachment_id, None)
                attachments = len(stale)
        return PurgeResult(threads, attachments)

    def __repr__(self) -> str:
        return f"MemoryStore(threads={len(self._threads)}, attachments={len(self._attachments)})"

    # -- internals (lock held) ------------------------------------------------------------

    def _record(self, thread_id: str) -> _ThreadRecord:
        record = self._threads.by_id.get(thread_id)
        if record is None:
            raise ThreadNotFound(thread_id)
        return record

    def _next_key(self, created_at: int) -> Key:
        self._seq += 1
        return (created_at, self._seq)

    def _bury(self, entry_id: str, key: Key) -> None:
        self._gone[entry_id] = key
        while len(self._gone) > _TOMBSTONES:
            self._gone.popitem(last=False)

    def _cursor(self, index: _Entries[Any], entry_id: str, param: str) -> Key:
        key = index.keys.get(entry_id)
        if key is None:
            key = self._gone.get(entry_id)
        if key is None:
            raise InvalidParameter(
                f"Invalid '{param}': no entry with id '{entry_id[:128]}' to page from.",
                param=param,
                code="invalid_value",
            )
        return key

    def _page(
        self,
        entries: _Entries[T],
        index: _Entries[Any],
        request: PageRequest,
    ) -> Page[T]:
        """Slice one page out of ``entries``; cursors are resolved through ``index``."""
        limit, order, after, before = request.limit, request.order, request.after, request.before
        ordered = entries.sorted
        lo, hi = 0, len(ordered)  # ascending positions of the candidates, [lo, hi)
        after_key = self._cursor(index, after, "after") if after is not None else None
        before_key = self._cursor(index, before, "before") if before is not None else None
        if order == "asc":
            if after_key is not None:
                lo = max(lo, ordered.bisect_key_right(after_key))
            if before_key is not None:
                hi = min(hi, ordered.bisect_key_left(before_key))
        else:
            # Descending: "after X" means older than X, "before Y" newer than Y.
            if after_key is not None:
                hi = min(hi, ordered.bisect_key_left(after_key))
            if before_key is not None:
                lo = max(lo, ordered.bisect_key_right(before_key))
        count = max(0, hi - lo)
        take = min(limit, count)
        # Travel away from the cursor: from the "start" of the order, unless only `before`.
        from_end = before is not None and after is None
        if (order == "asc") != from_end:
            chosen = list(ordered.islice(lo, lo + take))
        else:
            chosen = list(ordered.islice(hi - take, hi))
        if order == "desc":
            chosen.reverse()
        return Page(chosen, count > take)
