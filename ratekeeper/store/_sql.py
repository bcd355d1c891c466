"""The SQL conversation store: SQLite for the workers of one host, PostgreSQL for several hosts.

One implementation on SQLAlchemy Core serves both dialects: each operation's database work is
one synchronous function of :mod:`~ratekeeper.store._operations`, which
:mod:`~ratekeeper.store._database` runs in one bounded transaction (on a worker thread over
sqlite3, or through ``run_sync`` over asyncpg; failures as StoreUnavailable). This class checks
arguments and picks the function. :mod:`~ratekeeper.store._schema` holds the tables and their
upgrades, :mod:`~ratekeeper.store._blobs` the attachment bytes. The pagination rules
are :mod:`~ratekeeper.store._base`'s, done in SQL: keyset conditions on ``(created_at, seq)``
and ``LIMIT limit + 1``, so a page never reads more rows than it returns, plus one.

Concurrency: on SQLite every write begins ``BEGIN IMMEDIATE`` (one writer at a time, and no
reader is upgraded to a writer half-way, which busy_timeout cannot rescue); on PostgreSQL
appends to one thread are serialized by the thread row holding the item counter, so items are
numbered in commit order and a reader paging ``after=last_id`` never skips one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from .._clock import Clock, SystemClock
from .._secrets import new_id
from . import _operations as ops
from ._base import UNSET, ConversationStore, Order, PurgeResult, Unset
from ._blobs import ChunkBlobs, FileBlobs
from ._database import Database
from ._keyset import check_page, forget
from ._schema import attachments
from ._values import (
    ACTIVE,
    AttachmentNotFound,
    Page,
    StoredAttachment,
    StoredItem,
    StoredThread,
    ThreadStatus,
    check_content,
    checked_created_at,
    json_copy,
)

#: Threads (with their items and attachments) deleted per transaction by :meth:`purge`.
_THREAD_BATCH = 100
#: Attachments and tombstones deleted per transaction by :meth:`purge`.
_BATCH = 500
#: How long a deleted thread's or item's position stays usable as a cursor.
_TOMBSTONE_TTL_S = 3600


class SQLStore(ConversationStore):
    """Threads, items and attachments in SQLite (one host) or PostgreSQL (several hosts).

    Args:
        url: ``sqlite:///PATH`` or ``postgresql://user@host:port/db`` (``postgres://`` too; the
            drivers ``sqlite+pysqlite``/``postgresql+asyncpg`` may be named already).
            Attachment bytes go to ``PATH.attachments/`` on SQLite, into the database on
            PostgreSQL.
        clock: gives ``created_at`` when the caller does not; the system clock by default.
        timeout_s: longest one database operation may take before
            :class:`~ratekeeper.store.StoreUnavailable` (connecting, waiting for a pooled
            connection or a lock, and the statements themselves).
        schema: PostgreSQL schema holding the tables (created when missing); the connection's
            default when ``None``.

    Call :meth:`open` first, :meth:`aclose` last. Any number of processes may open the same
    database. Not thread-safe: one store belongs to one event loop (asyncio only: asyncpg is
    an asyncio library, and SQLite's worker threads are the store's own).

    Raises:
        ValueError: the URL names no SQLite file or PostgreSQL database, or ``schema`` is given
            for SQLite.
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        clock: Clock | None = None,
        timeout_s: float = 10.0,
        schema: str | None = None,
    ) -> None:
        self._db = Database(url, timeout_s=timeout_s, schema=schema)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._blobs: FileBlobs | ChunkBlobs
        if self._db.path is not None:
            directory = Path(f"{self._db.path}.attachments")
            self._blobs = FileBlobs(directory, self._db.unavailable)
        else:
            self._blobs = ChunkBlobs(self._clock)

    def __repr__(self) -> str:
        schema = "" if self._db.schema is None else f", schema={self._db.schema!r}"
        return f"SQLStore({self._db.safe_url!r}{schema})"

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the schema when missing, or check and upgrade it (see the interface)."""
        await self._db.open()
        await self._blobs.open()

    async def aclose(self) -> None:
        """Close the pooled connections (waiting at most ``timeout_s``)."""
        await self._db.dispose()

    async def ping(self) -> None:
        """Run ``SELECT 1`` (see the interface)."""
        await self._db.run(lambda conn: conn.execute(text("SELECT 1")))

    # -- internals --------------------------------------------------------------------------

    def _created_at(self, created_at: int | None) -> int:
        return checked_created_at(created_at, self._clock.time())

    def _now(self) -> int:
        """Whole seconds: when a deleted entry's tombstone says it went."""
        return math.floor(self._clock.time())

    # -- threads ----------------------------------------------------------------------------

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
        """Create a thread (see :meth:`ConversationStore.create_thread`)."""
        if not isinstance(user, str) or not user:
            raise ValueError("a thread needs a non-empty user")
        extra = json_copy(extra)
        thread_id = thread_id if thread_id is not None else new_id("cthr")
        thread = StoredThread(thread_id, user, self._created_at(created_at), title, status, extra)
        row = {
            "id": thread.id,
            "user_id": user,
            "created_at": thread.created_at,
            "title": title,
            "status": status.to_json(),
            "data": extra,
        }
        try:
            await self._db.run(lambda conn: ops.insert_thread(conn, row), write=True)
        except sa_exc.IntegrityError:
            raise ValueError(f"thread id {thread_id!r} is already taken") from None
        return thread

    async def get_thread(self, thread_id: str) -> StoredThread:
        """Return a thread (see :meth:`ConversationStore.get_thread`)."""
        return await self._db.run(lambda conn: ops.get_thread(conn, thread_id))

    async def update_thread(
        self,
        thread_id: str,
        *,
        title: str | Unset | None = UNSET,
        status: ThreadStatus | None = None,
        extra: Any = None,
    ) -> StoredThread:
        """Update a thread (see :meth:`ConversationStore.update_thread`)."""
        extra = json_copy(extra)
        changes: dict[str, Any] = {}
        if not isinstance(title, Unset):
            changes["title"] = title
        if status is not None:
            changes["status"] = status.to_json()
        if extra is not None:
            changes["data"] = extra
        if not changes:
            return await self.get_thread(thread_id)
        return await self._db.run(
            lambda conn: ops.update_thread(conn, thread_id, changes), write=True
        )

    async def delete_thread(self, thread_id: str) -> StoredThread:
        """Delete a thread (see :meth:`ConversationStore.delete_thread`)."""
        now = self._now()
        return await self._db.run(
            lambda conn: ops.delete_thread(conn, self._blobs, thread_id, now), write=True
        )

    async def list_threads(
        self,
        *,
        user: str | None = None,
        limit: int = 20,
        order: Order = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> Page[StoredThread]:
        """List threads (see :meth:`ConversationStore.list_threads`)."""
        check_page(order, limit)
        return await self._db.run(
            lambda conn: ops.list_threads(conn, user, limit, order, after, before)
        )

    async def count_threads(self, user: str | None = None) -> int:
        """Count threads (see :meth:`ConversationStore.count_threads`)."""
        return await self._db.run(lambda conn: ops.count_threads(conn, user))

    # -- items ------------------------------------------------------------------------------

    async def add_item(
        self,
        thread_id: str,
        content: Mapping[str, Any] | None,
        *,
        item_id: str | None = None,
        created_at: int | None = None,
        extra: Any = None,
    ) -> StoredItem:
        """Append an item (see :meth:`ConversationStore.add_item`)."""
        check_content(content)
        item = StoredItem(
            item_id if item_id is not None else new_id("cthi"),
            thread_id,
            self._created_at(created_at),
            json_copy(content),
            json_copy(extra),
        )
        try:
            await self._db.run(lambda conn: ops.add_item(conn, item), write=True)
        except sa_exc.IntegrityError:
            raise ValueError(f"item id {item.id!r} is already taken in this thread") from None
        return item

    async def update_item(
        self,
        thread_id: str,
        item_id: str,
        content: Mapping[str, Any] | None,
        *,
        extra: Any = None,
    ) -> StoredItem:
        """Replace an item's content (see :meth:`ConversationStore.update_item`)."""
        check_content(content)
        changes: dict[str, Any] = {"content": json_copy(content)}
        extra = json_copy(extra)
        if extra is not None:
            changes["data"] = extra
        return await self._db.run(
            lambda conn: ops.update_item(conn, thread_id, item_id, changes), write=True
        )

    async def get_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Return one item (see :meth:`ConversationStore.get_item`)."""
        return await self._db.run(lambda conn: ops.get_item(conn, thread_id, item_id))

    async def delete_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Delete one item (see :meth:`ConversationStore.delete_item`)."""
        now = self._now()
        return await self._db.run(
            lambda conn: ops.delete_item(conn, thread_id, item_id, now), write=True
        )

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
        """List a thread's items (see :meth:`ConversationStore.list_items`)."""
        return await self._db.run(
            lambda conn: ops.list_items(
                conn, thread_id, limit, order, after, before, include_hidden
            )
        )

    # -- attachments ------------------------------------------------------------------------

    async def save_attachment(self, attachment: StoredAttachment) -> None:
        """Create or replace attachment metadata (see the interface).

        An attachment saved with the id of a thread that does not exist (deleted meanwhile)
        goes as if that thread had been deleted just after: with its bytes.
        """
        values = {
            "id": attachment.id,
            "user_id": attachment.user,
            "created_at": attachment.created_at,
            "data": json_copy(dict(attachment.data)),
            "thread_id": attachment.thread_id,
            "session_id": attachment.session_id,
            "declared_bytes": attachment.declared_bytes,
            "upload_token_digest": attachment.upload_token_digest,
            "size_bytes": attachment.size_bytes,
        }
        await self._db.run(lambda conn: ops.save_attachment(conn, self._blobs, values), write=True)

    async def get_attachment(self, attachment_id: str) -> StoredAttachment:
        """Return attachment metadata (see the interface)."""
        return await self._db.run(lambda conn: ops.get_attachment(conn, attachment_id))

    async def delete_attachment(self, attachment_id: str) -> StoredAttachment:
        """Delete attachment metadata and bytes (see the interface)."""
        where = attachments.c.id == attachment_id
        gone = await self._db.run(
            lambda conn: ops.delete_attachments(conn, self._blobs, where), write=True
        )
        if not gone:
            raise AttachmentNotFound(attachment_id)
        return gone[0]

    async def update_attachment(
        self,
        attachment_id: str,
        *,
        data: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
    ) -> StoredAttachment:
        """Change an attachment's data and/or thread, in one statement (see the interface)."""
        changes: dict[str, Any] = {}
        if data is not None:
            changes["data"] = json_copy(dict(data))
        if thread_id is not None:
            changes["thread_id"] = thread_id
        if not changes:
            return await self.get_attachment(attachment_id)
        return await self._db.run(
            lambda conn: ops.update_attachment(conn, attachment_id, changes), write=True
        )

    async def write_attachment_bytes(
        self,
        attachment_id: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        upload_token_digest: bytes | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> StoredAttachment:
        """Store an attachment's bytes, streamed (see the interface).

        No transaction stays open while the client sends: on PostgreSQL each 256 KiB chunk
        lands in its own, on SQLite the bytes go to a temporary file first. The token check
        and the metadata change happen in the final transaction, with the switch to the new
        bytes.
        """
        await self.get_attachment(attachment_id)
        changes: dict[str, Any] = {"upload_token_digest": None}
        if data is not None:
            changes["data"] = json_copy(dict(data))
        finish = functools.partial(
            ops.finish_upload, token_digest=upload_token_digest, changes=changes
        )
        return await self._blobs.write(self._db.run, attachment_id, chunks, max_bytes, finish)

    async def read_attachment_bytes(self, attachment_id: str) -> AsyncIterator[bytes]:
        """Stream an attachment's bytes (see the interface)."""
        async for chunk in self._blobs.read(self._db.run, attachment_id):
            yield chunk

    # -- maintenance ------------------------------------------------------------------------

    async def purge(
        self, *, threads_before: int | None = None, attachments_before: int | None = None
    ) -> PurgeResult:
        """Delete old state in short transactions (see the interface).

        Also forgets the positions of threads and items deleted over an hour ago (their
        cursors become unknown), and on PostgreSQL the chunks of uploads that failed without
        cleaning up after themselves.
        """
        blobs = self._blobs
        deleted_threads = 0
        if threads_before is not None:
            found = _THREAD_BATCH
            while found == _THREAD_BATCH:
                batch = functools.partial(
                    ops.purge_threads,
                    blobs=blobs,
                    before=threads_before,
                    batch=_THREAD_BATCH,
                    now=self._now(),
                )
                found, deleted = await self._db.run(batch, write=True)
                deleted_threads += deleted
        deleted_attachments = 0
        if attachments_before is not None:
            found = _BATCH
            while found == _BATCH:
                found, deleted = await self._db.run(
                    lambda conn: ops.purge_attachments(conn, blobs, attachments_before, _BATCH),
                    write=True,
                )
                deleted_attachments += deleted
        cutoff = self._now() - _TOMBSTONE_TTL_S
        await forget(self._db.run, cutoff, _BATCH)
        await self._blobs.purge(self._db.run, cutoff, _BATCH)
        return PurgeResult(deleted_threads, deleted_attachments)
