"""The SQL conversation store: SQLite for the workers of one host, PostgreSQL for several hosts.

One implementation on SQLAlchemy Core serves both dialects: each operation's database work is
one synchronous function of :mod:`~ratekeeper.store._operations`, which
:mod:`~ratekeeper.store._database` runs in one bounded transaction (on a worker thread over
sqlite3, or through ``run_sync`` over asyncpg; failures as StoreUnavailable). The interface
checks the arguments; this class picks the function. :mod:`~ratekeeper.store._schema` holds
the tables and their upgrades, :mod:`~ratekeeper.store._blobs` the attachment bytes. The
pagination rules are :mod:`~ratekeeper.store._base`'s, done in SQL: keyset conditions on
``(created_at, seq)`` and ``LIMIT limit + 1``, so a page never reads more rows than it returns,
plus one.

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

from .._clock import Clock
from . import _operations as ops
from ._base import ConversationStore, PageRequest, PurgeResult, UploadEnd
from ._blobs import ChunkBlobs, FileBlobs
from ._database import Database
from ._keyset import forget
from ._schema import attachments
from ._values import AttachmentNotFound, Page, StoredAttachment, StoredItem, StoredThread

#: Threads (with their items and attachments) deleted per transaction by :meth:`purge`.
_THREAD_BATCH = 100
#: Attachments and tombstones deleted per transaction by :meth:`purge`.
_BATCH = 500
#: How long a deleted thread's or item's position stays usable as a cursor.
_TOMBSTONE_TTL_S = 3600
#: The columns of the thread fields whose names differ.
_THREAD_COLUMNS = {"extra": "data"}


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
        super().__init__(clock)
        self._db = Database(url, timeout_s=timeout_s, schema=schema)
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

    def _now(self) -> int:
        """Whole seconds: when a deleted entry's tombstone says it went."""
        return math.floor(self._clock.time())

    # -- threads ----------------------------------------------------------------------------

    async def _insert_thread(self, thread: StoredThread) -> bool:
        row = {
            "id": thread.id,
            "user_id": thread.user,
            "created_at": thread.created_at,
            "title": thread.title,
            "status": thread.status.to_json(),
            "data": thread.extra,
        }
        try:
            await self._db.run(lambda conn: ops.insert_thread(conn, row), write=True)
        except sa_exc.IntegrityError:
            return False
        return True

    async def get_thread(self, thread_id: str) -> StoredThread:
        """Return a thread (see :meth:`ConversationStore.get_thread`)."""
        return await self._db.run(lambda conn: ops.get_thread(conn, thread_id))

    async def _update_thread(self, thread_id: str, changes: Mapping[str, Any]) -> StoredThread:
        columns = {_THREAD_COLUMNS.get(name, name): value for name, value in changes.items()}
        if "status" in columns:
            columns["status"] = columns["status"].to_json()
        return await self._db.run(
            lambda conn: ops.update_thread(conn, thread_id, columns), write=True
        )

    async def delete_thread(self, thread_id: str) -> StoredThread:
        """Delete a thread (see :meth:`ConversationStore.delete_thread`)."""
        now = self._now()
        return await self._db.run(
            lambda conn: ops.delete_thread(conn, self._blobs, thread_id, now), write=True
        )

    async def _list_threads(self, user: str | None, request: PageRequest) -> Page[StoredThread]:
        return await self._db.run(lambda conn: ops.list_threads(conn, user, request))

    async def count_threads(self, user: str | None = None) -> int:
        """Count threads (see :meth:`ConversationStore.count_threads`)."""
        return await self._db.run(lambda conn: ops.count_threads(conn, user))

    # -- items ------------------------------------------------------------------------------

    async def _insert_item(self, item: StoredItem) -> bool:
        try:
            await self._db.run(lambda conn: ops.add_item(conn, item), write=True)
        except sa_exc.IntegrityError:
            return False
        return True

    async def _update_item(
        self, thread_id: str, item_id: str, content: Any, extra: Any
    ) -> StoredItem:
        changes: dict[str, Any] = {"content": content}
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

    async def _list_items(
        self, thread_id: str, request: PageRequest, include_hidden: bool
    ) -> Page[StoredItem]:
        return await self._db.run(
            lambda conn: ops.list_items(conn, thread_id, request, include_hidden)
        )

    # -- attachments ------------------------------------------------------------------------

    async def _save_attachment(self, attachment: StoredAttachment) -> None:
        values = {
            "id": attachment.id,
            "user_id": attachment.user,
            "created_at": attachment.created_at,
            "data": attachment.data,
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

    async def _update_attachment(
        self, attachment_id: str, data: dict[str, Any] | None, thread_id: str | None
    ) -> StoredAttachment:
        # One statement.
        changes: dict[str, Any] = {}
        if data is not None:
            changes["data"] = data
        if thread_id is not None:
            changes["thread_id"] = thread_id
        return await self._db.run(
            lambda conn: ops.update_attachment(conn, attachment_id, changes), write=True
        )

    async def _write_attachment_bytes(
        self, attachment_id: str, chunks: AsyncIterable[bytes], max_bytes: int, end: UploadEnd
    ) -> StoredAttachment:
        # No transaction stays open while the client sends: on PostgreSQL each 256 KiB chunk
        # lands in its own, on SQLite the bytes go to a temporary file first. The token check
        # and the metadata change happen in the final transaction, with the switch to the new
        # bytes.
        changes: dict[str, Any] = {"upload_token_digest": None}
        if end.data is not None:
            changes["data"] = end.data
        finish = functools.partial(
            ops.finish_upload, token_digest=end.token_digest, changes=changes
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
