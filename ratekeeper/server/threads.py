"""The in-memory thread store behind ``/v1/chatkit/threads``, scoped by ``user``.

Threads and their items are kept in the shapes of the REST schema (``chatkit.thread``,
``chatkit.thread_item``), ordered by ``(created_at, insertion order)``, with cursor pagination
as the list envelope specifies. The ChatKit protocol endpoint puts an ``openai-chatkit``
``Store`` adapter on top of this class; tests seed it directly through the same methods.

Pagination (``limit``, ``order``, ``after``, ``before``), the same for threads and items:

* the entries are sorted by creation in ``order`` (``desc``: newest first);
* ``after=X`` keeps the entries that follow ``X`` in that order, ``before=Y`` those that
  precede ``Y``; both together keep the entries strictly between them;
* the page is the first ``limit`` of them, or with only ``before`` the last ``limit`` (the page
  just before the cursor), still listed in ``order``;
* ``has_more`` says whether more entries lie beyond the page in the direction of travel, so the
  SDK's auto-pagination (``after=last_id`` while ``has_more``) visits every entry once.

A cursor may name an entry deleted since the previous page (listing and deleting in one loop is
common), so the positions of recently deleted entries are remembered for a while.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Generic, TypeVar

from sortedcontainers import SortedKeyList

from .._secrets import new_id
from ..clock import Clock, SystemClock
from ..errors import InvalidParameter, RatekeeperError
from .thread_values import (
    ACTIVE,
    ITEM_TYPES,
    Page,
    StoredItem,
    StoredThread,
    ThreadStatus,
    assistant_message,
    check_content,
    user_message,
)

__all__ = (
    "ITEM_TYPES",
    "UNSET",
    "Page",
    "StoredItem",
    "StoredThread",
    "ThreadNotFound",
    "ThreadStatus",
    "ThreadStore",
    "assistant_message",
    "user_message",
)

#: How many deleted threads (and items) keep their position for cursors.
_TOMBSTONES = 10_000

T = TypeVar("T")
Key = tuple[int, int]


class ThreadNotFound(RatekeeperError, LookupError):
    """Raised when a thread (or an item of it) does not exist."""

    def __init__(self, thread_id: str, item_id: str | None = None) -> None:
        if item_id is None:
            message = f"Chatkit Thread with id '{thread_id}' not found."
        else:
            message = f"Chatkit Thread item with id '{item_id}' not found in thread '{thread_id}'."
        super().__init__(message)
        self.message = message
        self.thread_id = thread_id
        self.item_id = item_id


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
    __slots__ = ("items", "thread")

    def __init__(self, thread: StoredThread) -> None:
        self.thread = thread
        self.items: _Entries[StoredItem] = _Entries()

    @property
    def id(self) -> str:
        return self.thread.id


class _Unset:
    """The type of :data:`UNSET`: "leave this field as it is"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


#: Pass as ``title`` to :meth:`ThreadStore.update_thread` to keep the title (the default).
UNSET = _Unset()


class ThreadStore:
    """Threads and their items, in memory, per user, with cursor pagination.

    Args:
        clock: gives ``created_at`` when the caller does not; the system clock by default.

    Thread-safe: every method holds one internal lock for its (short, non-blocking) duration,
    so the event loop serving requests and a test or adapter seeding from another thread can
    share one store. Nothing here awaits.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._seq = 0
        self._threads: _Entries[_ThreadRecord] = _Entries()
        self._by_user: dict[str, _Entries[_ThreadRecord]] = {}
        # Positions of deleted threads and items, so a cursor naming one still works.
        self._gone: OrderedDict[str, Key] = OrderedDict()

    # -- threads --------------------------------------------------------------------------

    def create_thread(
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
            extra: opaque adapter data kept beside the thread.

        Raises:
            ValueError: ``thread_id`` is already taken, or ``user`` is empty.
        """
        if not isinstance(user, str) or not user:
            raise ValueError("a thread needs a non-empty user")
        with self._lock:
            thread_id = thread_id if thread_id is not None else new_id("cthr")
            if thread_id in self._threads.by_id:
                raise ValueError(f"thread id {thread_id!r} is already taken")
            thread = StoredThread(
                thread_id, user, self._created_at(created_at), title, status, extra
            )
            record = _ThreadRecord(thread)
            key = self._next_key(thread.created_at)
            self._threads.add(record, key)
            self._by_user.setdefault(user, _Entries()).add(record, key)
            self._gone.pop(thread_id, None)
            return thread

    def get_thread(self, thread_id: str) -> StoredThread:
        """Return the thread ``thread_id``.

        Raises:
            ThreadNotFound: no such thread.
        """
        with self._lock:
            return self._record(thread_id).thread

    def update_thread(
        self,
        thread_id: str,
        *,
        title: str | _Unset | None = UNSET,
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
        with self._lock:
            record = self._record(thread_id)
            thread = record.thread
            changes: dict[str, Any] = {}
            if not isinstance(title, _Unset):
                changes["title"] = title
            if status is not None:
                changes["status"] = status
            if extra is not None:
                changes["extra"] = extra
            # The record is shared by the global and per-user indexes; neither sorts by these.
            record.thread = replace(thread, **changes)
            return record.thread

    def delete_thread(self, thread_id: str) -> StoredThread:
        """Delete a thread and all its items; return the deleted thread.

        Raises:
            ThreadNotFound: no such thread.
        """
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
            return record.thread

    def list_threads(
        self,
        *,
        user: str | None = None,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredThread]:
        """Return one page of threads, of ``user`` only when given.

        Raises:
            InvalidParameter: ``after`` or ``before`` names no thread (``param`` is the cursor).
        """
        with self._lock:
            entries = self._threads if user is None else self._by_user.get(user)
            if entries is None:
                return Page([], False)
            page = self._page(entries, self._threads, limit, order, after, before)
            return Page([record.thread for record in page.data], page.has_more)

    def count_threads(self, user: str | None = None) -> int:
        """Return how many threads exist (of ``user`` only, when given)."""
        with self._lock:
            if user is None:
                return len(self._threads)
            entries = self._by_user.get(user)
            return 0 if entries is None else len(entries)

    # -- items ----------------------------------------------------------------------------

    def add_item(
        self,
        thread_id: str,
        content: Mapping[str, Any],
        *,
        item_id: str | None = None,
        created_at: int | None = None,
        extra: Any = None,
    ) -> StoredItem:
        """Append an item to a thread and return it.

        Args:
            thread_id: the thread.
            content: the type-specific fields, ``type`` included; see :func:`user_message`.
            item_id: the id to use; a fresh ``cthi_…`` when omitted.
            created_at: integer Unix time; now when omitted.
            extra: opaque adapter data kept beside the item.

        Raises:
            ThreadNotFound: no such thread.
            ValueError: ``content`` has no known ``type``, or ``item_id`` is taken.
        """
        check_content(content)
        with self._lock:
            items = self._record(thread_id).items
            item_id = item_id if item_id is not None else new_id("cthi")
            if item_id in items.by_id:
                raise ValueError(f"item id {item_id!r} is already taken in this thread")
            item = StoredItem(
                item_id, thread_id, self._created_at(created_at), dict(content), extra
            )
            items.add(item, self._next_key(item.created_at))
            self._gone.pop(item_id, None)
            return item

    def update_item(
        self,
        thread_id: str,
        item_id: str,
        content: Mapping[str, Any],
        *,
        extra: Any = None,
    ) -> StoredItem:
        """Replace an item's content (and extra data when given), keeping its place.

        Raises:
            ThreadNotFound: no such thread or item.
            ValueError: ``content`` has no known ``type``.
        """
        check_content(content)
        with self._lock:
            items = self._record(thread_id).items
            old = items.by_id.get(item_id)
            if old is None:
                raise ThreadNotFound(thread_id, item_id)
            item = replace(old, content=dict(content), extra=old.extra if extra is None else extra)
            items.replace(item)
            return item

    def get_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Return one item of a thread.

        Raises:
            ThreadNotFound: no such thread or item.
        """
        with self._lock:
            item = self._record(thread_id).items.by_id.get(item_id)
            if item is None:
                raise ThreadNotFound(thread_id, item_id)
            return item

    def delete_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Delete one item of a thread and return it.

        Raises:
            ThreadNotFound: no such thread or item.
        """
        with self._lock:
            items = self._record(thread_id).items
            item = items.by_id.get(item_id)
            if item is None:
                raise ThreadNotFound(thread_id, item_id)
            self._bury(item_id, items.remove(item_id))
            return item

    def list_items(
        self,
        thread_id: str,
        *,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredItem]:
        """Return one page of a thread's items.

        Raises:
            ThreadNotFound: no such thread.
            InvalidParameter: ``after`` or ``before`` names no item of this thread.
        """
        with self._lock:
            items = self._record(thread_id).items
            return self._page(items, items, limit, order, after, before)

    # -- internals (lock held) ------------------------------------------------------------

    def _record(self, thread_id: str) -> _ThreadRecord:
        record = self._threads.by_id.get(thread_id)
        if record is None:
            raise ThreadNotFound(thread_id)
        return record

    def _created_at(self, created_at: int | None) -> int:
        if created_at is None:
            return math.floor(self._clock.time())
        if isinstance(created_at, bool) or not isinstance(created_at, int):
            raise ValueError(f"created_at must be an integer Unix time, got {created_at!r}")
        return created_at

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
        limit: int,
        order: str,
        after: str | None,
        before: str | None,
    ) -> Page[T]:
        """Slice one page out of ``entries``; cursors are resolved through ``index``."""
        if order not in ("asc", "desc"):
            raise ValueError(f"order must be 'asc' or 'desc', got {order!r}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
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
