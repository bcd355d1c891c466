"""The SQL conversation store: SQLite for the workers of one host, PostgreSQL for several hosts.

One implementation on SQLAlchemy Core's asyncio layer serves both dialects (aiosqlite and
asyncpg drive them). :mod:`~ratekeeper.store._database` reaches the database (bounded
transactions, failures as StoreUnavailable), :mod:`~ratekeeper.store._schema` holds the tables
and their upgrades, :mod:`~ratekeeper.store._blobs` the attachment bytes. The pagination rules
are :mod:`~ratekeeper.store._base`'s, done in SQL: keyset conditions on ``(created_at, seq)``
and ``LIMIT limit + 1``, so a page never reads more rows than it returns, plus one.

Concurrency: on SQLite every write begins ``BEGIN IMMEDIATE`` (one writer at a time, and no
reader is upgraded to a writer half-way, which busy_timeout cannot rescue); on PostgreSQL
appends to one thread are serialized by the thread row holding the item counter, so items are
numbered in commit order and a reader paging ``after=last_id`` never skips one.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from .._secrets import new_id
from ..clock import Clock, SystemClock
from ._base import UNSET, ConversationStore, Order, PurgeResult, Unset
from ._blobs import ChunkBlobs, FileBlobs
from ._database import Database
from ._keyset import AnyRow, bury, check_page, forget, forget_items, page, position
from ._schema import attachments, items, threads
from ._values import (
    ACTIVE,
    AttachmentNotFound,
    Page,
    StoredAttachment,
    StoredItem,
    StoredThread,
    ThreadNotFound,
    ThreadStatus,
    check_content,
    checked_created_at,
    json_copy,
)

__all__ = ("SQLStore",)

#: Threads (with their items and attachments) deleted per transaction by :meth:`purge`.
_THREAD_BATCH = 100
#: Attachments and tombstones deleted per transaction by :meth:`purge`.
_BATCH = 500
#: How long a deleted thread's or item's position stays usable as a cursor.
_TOMBSTONE_TTL_S = 3600

_THREAD = (
    threads.c.id,
    threads.c.user_id,
    threads.c.created_at,
    threads.c.title,
    threads.c.status,
    threads.c.data,
)
_ITEM = (
    items.c.id,
    items.c.thread_id,
    items.c.created_at,
    items.c.content,
    items.c.data,
)
_ATTACHMENT = (
    attachments.c.id,
    attachments.c.user_id,
    attachments.c.created_at,
    attachments.c.data,
    attachments.c.thread_id,
    attachments.c.session_id,
    attachments.c.declared_bytes,
    attachments.c.upload_token_digest,
    attachments.c.size_bytes,
)


def _thread(row: AnyRow) -> StoredThread:
    status = row.status
    return StoredThread(
        row.id,
        row.user_id,
        row.created_at,
        row.title,
        ThreadStatus(status["type"], status.get("reason")),
        row.data,
    )


def _item(row: AnyRow) -> StoredItem:
    return StoredItem(row.id, row.thread_id, row.created_at, row.content, row.data)


def _attachment(row: AnyRow) -> StoredAttachment:
    return StoredAttachment(
        row.id,
        row.user_id,
        row.created_at,
        row.data,
        thread_id=row.thread_id,
        session_id=row.session_id,
        declared_bytes=row.declared_bytes,
        upload_token_digest=row.upload_token_digest,
        size_bytes=row.size_bytes,
    )


class SQLStore(ConversationStore):
    """Threads, items and attachments in SQLite (one host) or PostgreSQL (several hosts).

    Args:
        url: ``sqlite:///PATH`` or ``postgresql://user@host:port/db`` (``postgres://`` too; the
            drivers ``sqlite+aiosqlite``/``postgresql+asyncpg`` may be named already).
            Attachment bytes go to ``PATH.attachments/`` on SQLite, into the database on
            PostgreSQL.
        clock: gives ``created_at`` when the caller does not; the system clock by default.
        timeout_s: longest one database operation may take before
            :class:`~ratekeeper.store.StoreUnavailable` (connecting, waiting for a pooled
            connection or a lock, and the statements themselves).
        schema: PostgreSQL schema holding the tables (created when missing); the connection's
            default when ``None``.

    Call :meth:`open` first, :meth:`aclose` last. Any number of processes may open the same
    database. Not thread-safe: one store belongs to one event loop (asyncio only: both drivers
    are asyncio libraries).

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
        async with self._db.transaction() as conn:
            await conn.execute(text("SELECT 1"))

    # -- internals --------------------------------------------------------------------------

    def _created_at(self, created_at: int | None) -> int:
        return checked_created_at(created_at, self._clock.time())

    async def _thread_exists(self, conn: AsyncConnection, thread_id: str, *, lock: bool) -> bool:
        query = select(threads.c.id).where(threads.c.id == thread_id)
        if lock:
            # PostgreSQL: FOR KEY SHARE, so the thread cannot be deleted before our commit
            # (what its foreign keys would otherwise fail on). SQLite holds the write lock.
            query = query.with_for_update(read=True, key_share=True)
        return (await conn.execute(query)).first() is not None

    async def _missing_item(
        self, conn: AsyncConnection, thread_id: str, item_id: str
    ) -> ThreadNotFound:
        if await self._thread_exists(conn, thread_id, lock=False):
            return ThreadNotFound(thread_id, item_id)
        return ThreadNotFound(thread_id)

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
            async with self._db.transaction(write=True) as conn:
                await conn.execute(insert(threads).values(row))
        except sa_exc.IntegrityError:
            raise ValueError(f"thread id {thread_id!r} is already taken") from None
        return thread

    async def get_thread(self, thread_id: str) -> StoredThread:
        """Return a thread (see :meth:`ConversationStore.get_thread`)."""
        async with self._db.transaction() as conn:
            row = (await conn.execute(select(*_THREAD).where(threads.c.id == thread_id))).first()
        if row is None:
            raise ThreadNotFound(thread_id)
        return _thread(row)

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
        statement = update(threads).where(threads.c.id == thread_id).values(changes)
        async with self._db.transaction(write=True) as conn:
            row = (await conn.execute(statement.returning(*_THREAD))).first()
        if row is None:
            raise ThreadNotFound(thread_id)
        return _thread(row)

    async def delete_thread(self, thread_id: str) -> StoredThread:
        """Delete a thread (see :meth:`ConversationStore.delete_thread`)."""
        async with self._db.transaction(write=True) as conn:
            gone = await self._delete_threads(conn, [thread_id])
        if not gone:
            raise ThreadNotFound(thread_id)
        return _thread(gone[0])

    async def _delete_threads(self, conn: AsyncConnection, ids: list[str]) -> list[AnyRow]:
        """Delete threads with their items and attachments (bytes too); bury the threads."""
        # Their attachments go by cascade; the files (SQLite) need their ids, read first.
        attached = await self._blobs.attachments_of(conn, attachments.c.thread_id.in_(ids))
        statement = delete(threads).where(threads.c.id.in_(ids))
        gone = list((await conn.execute(statement.returning(*_THREAD, threads.c.seq))).all())
        await bury(conn, "thread", "", gone, math.floor(self._clock.time()))
        await forget_items(conn, ids)
        await self._blobs.remove(attached)
        return gone

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
        query = select(*_THREAD)
        if user is not None:
            query = query.where(threads.c.user_id == user)
        async with self._db.transaction() as conn:
            # A cursor may name any thread, another user's too (as MemoryStore's does).
            keys = [
                None
                if cursor is None
                else await position(
                    conn,
                    select(threads.c.created_at, threads.c.seq).where(threads.c.id == cursor),
                    "thread",
                    "",
                    cursor,
                    param,
                )
                for cursor, param in ((after, "after"), (before, "before"))
            ]
            key = (threads.c.created_at, threads.c.seq)
            rows, has_more = await page(conn, query, key, limit, order, *keys)
        return Page([_thread(row) for row in rows], has_more)

    async def count_threads(self, user: str | None = None) -> int:
        """Count threads (see :meth:`ConversationStore.count_threads`)."""
        query = select(func.count()).select_from(threads)
        if user is not None:
            query = query.where(threads.c.user_id == user)
        async with self._db.transaction() as conn:
            return int((await conn.execute(query)).scalar_one())

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
        content = json_copy(content)
        extra = json_copy(extra)
        item = StoredItem(
            item_id if item_id is not None else new_id("cthi"),
            thread_id,
            self._created_at(created_at),
            content,
            extra,
        )
        # The thread row is locked from this UPDATE to the commit, so appends to one thread
        # take turns and their numbers follow commit order (see the module docstring).
        counter = (
            update(threads)
            .where(threads.c.id == thread_id)
            .values(next_item_seq=threads.c.next_item_seq + 1)
            .returning(threads.c.next_item_seq)
        )
        try:
            async with self._db.transaction(write=True) as conn:
                seq = (await conn.execute(counter)).scalar()
                if seq is None:
                    raise ThreadNotFound(thread_id)
                await conn.execute(
                    insert(items).values(
                        thread_id=thread_id,
                        id=item.id,
                        seq=seq,
                        created_at=item.created_at,
                        content=content,
                        data=extra,
                    )
                )
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
        statement = (
            update(items)
            .where(items.c.thread_id == thread_id, items.c.id == item_id)
            .values(changes)
            .returning(*_ITEM)
        )
        async with self._db.transaction(write=True) as conn:
            row = (await conn.execute(statement)).first()
            if row is None:
                raise await self._missing_item(conn, thread_id, item_id)
        return _item(row)

    async def get_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Return one item (see :meth:`ConversationStore.get_item`)."""
        query = select(*_ITEM).where(items.c.thread_id == thread_id, items.c.id == item_id)
        async with self._db.transaction() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                raise await self._missing_item(conn, thread_id, item_id)
        return _item(row)

    async def delete_item(self, thread_id: str, item_id: str) -> StoredItem:
        """Delete one item (see :meth:`ConversationStore.delete_item`)."""
        statement = (
            delete(items)
            .where(items.c.thread_id == thread_id, items.c.id == item_id)
            .returning(*_ITEM, items.c.seq)
        )
        async with self._db.transaction(write=True) as conn:
            row = (await conn.execute(statement)).first()
            if row is None:
                raise await self._missing_item(conn, thread_id, item_id)
            await bury(conn, "item", thread_id, [row], math.floor(self._clock.time()))
        return _item(row)

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
        query = select(*_ITEM).where(items.c.thread_id == thread_id)
        if not include_hidden:
            query = query.where(items.c.content.is_not(None))
        async with self._db.transaction() as conn:
            if not await self._thread_exists(conn, thread_id, lock=False):
                raise ThreadNotFound(thread_id)
            check_page(order, limit)
            # A hidden item is a valid cursor for the visible listing too.
            keys = [
                None
                if cursor is None
                else await position(
                    conn,
                    select(items.c.created_at, items.c.seq).where(
                        items.c.thread_id == thread_id, items.c.id == cursor
                    ),
                    "item",
                    thread_id,
                    cursor,
                    param,
                )
                for cursor, param in ((after, "after"), (before, "before"))
            ]
            key = (items.c.created_at, items.c.seq)
            rows, has_more = await page(conn, query, key, limit, order, *keys)
        return Page([_item(row) for row in rows], has_more)

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
        async with self._db.transaction(write=True) as conn:
            if attachment.thread_id is not None and not await self._thread_exists(
                conn, attachment.thread_id, lock=True
            ):
                await self._delete_attachments(conn, attachments.c.id == attachment.id)
                return
            upsert = _insert_for(conn).values(values)
            changed = {name: upsert.excluded[name] for name in values if name != "id"}
            await conn.execute(upsert.on_conflict_do_update(index_elements=["id"], set_=changed))

    async def get_attachment(self, attachment_id: str) -> StoredAttachment:
        """Return attachment metadata (see the interface)."""
        query = select(*_ATTACHMENT).where(attachments.c.id == attachment_id)
        async with self._db.transaction() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            raise AttachmentNotFound(attachment_id)
        return _attachment(row)

    async def delete_attachment(self, attachment_id: str) -> StoredAttachment:
        """Delete attachment metadata and bytes (see the interface)."""
        async with self._db.transaction(write=True) as conn:
            gone = await self._delete_attachments(conn, attachments.c.id == attachment_id)
        if not gone:
            raise AttachmentNotFound(attachment_id)
        return _attachment(gone[0])

    async def _delete_attachments(
        self, conn: AsyncConnection, where: ColumnElement[bool]
    ) -> list[AnyRow]:
        statement = delete(attachments).where(where).returning(*_ATTACHMENT)
        gone = list((await conn.execute(statement)).all())
        # Inside the transaction (SQLite's write lock held): a new upload of the same id
        # cannot land between the commit and the removal.
        await self._blobs.remove([row.id for row in gone])
        return gone

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
        statement = (
            update(attachments)
            .where(attachments.c.id == attachment_id)
            .values(changes)
            .returning(*_ATTACHMENT)
        )
        async with self._db.transaction(write=True) as conn:
            if thread_id is not None and not await self._thread_exists(conn, thread_id, lock=True):
                raise ThreadNotFound(thread_id)
            row = (await conn.execute(statement)).first()
        if row is None:
            raise AttachmentNotFound(attachment_id)
        return _attachment(row)

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

        async def finish(
            conn: AsyncConnection, attachment_id: str, size: int, blob: dict[str, Any]
        ) -> StoredAttachment:
            statement = update(attachments).where(attachments.c.id == attachment_id)
            if upload_token_digest is not None:
                statement = statement.where(
                    attachments.c.upload_token_digest == upload_token_digest
                )
            row = (
                await conn.execute(
                    statement.values(size_bytes=size, **changes, **blob).returning(*_ATTACHMENT)
                )
            ).first()
            if row is None:  # deleted meanwhile, or the token was used by another upload
                raise AttachmentNotFound(attachment_id)
            return _attachment(row)

        return await self._blobs.write(
            self._db.transaction, attachment_id, chunks, max_bytes, finish
        )

    async def read_attachment_bytes(self, attachment_id: str) -> AsyncIterator[bytes]:
        """Stream an attachment's bytes (see the interface)."""
        async for chunk in self._blobs.read(self._db.transaction, attachment_id):
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
        deleted_threads = 0
        if threads_before is not None:
            old = (
                select(threads.c.id)
                .where(threads.c.created_at < threads_before)
                .order_by(threads.c.created_at, threads.c.seq)
                .limit(_THREAD_BATCH)
            )
            while True:
                async with self._db.transaction(write=True) as conn:
                    ids = list((await conn.execute(old)).scalars())
                    gone = await self._delete_threads(conn, ids) if ids else []
                deleted_threads += len(gone)
                if len(ids) < _THREAD_BATCH:
                    break
        deleted_attachments = 0
        if attachments_before is not None:
            stale = (
                select(attachments.c.id)
                .where(
                    attachments.c.created_at < attachments_before,
                    attachments.c.upload_token_digest.is_not(None)
                    | attachments.c.thread_id.is_(None),
                )
                .limit(_BATCH)
            )
            while True:
                async with self._db.transaction(write=True) as conn:
                    ids = list((await conn.execute(stale)).scalars())
                    gone = await self._delete_attachments(conn, attachments.c.id.in_(ids))
                deleted_attachments += len(gone)
                if len(ids) < _BATCH:
                    break
        cutoff = math.floor(self._clock.time()) - _TOMBSTONE_TTL_S
        await forget(self._db.transaction, cutoff, _BATCH)
        await self._blobs.purge(self._db.transaction, cutoff, _BATCH)
        return PurgeResult(deleted_threads, deleted_attachments)


def _insert_for(conn: AsyncConnection) -> Any:
    """Return the dialect's ``insert`` (both offer ``on_conflict_do_update``)."""
    if conn.dialect.name == "postgresql":
        return pg_dialect.insert(attachments)
    return sqlite_dialect.insert(attachments)
