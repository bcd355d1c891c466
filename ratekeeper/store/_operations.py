"""The SQL store's database work: one synchronous function per operation, over a connection.

Each function runs inside the one transaction :meth:`~._database.Database.run` gives it (on a
worker thread for SQLite, through ``run_sync`` for PostgreSQL), does all of its operation's
statements, and returns the stored value or raises the store's error (which rolls the
transaction back). :class:`~._sql.SQLStore` picks the function, once the interface
(:class:`~._base.ConversationStore`) has checked the arguments.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ._base import PageRequest
from ._blobs import ChunkBlobs, FileBlobs
from ._keyset import AnyRow, bury, forget_items, page
from ._schema import attachments, items, threads
from ._values import (
    AttachmentNotFound,
    Page,
    StoredAttachment,
    StoredItem,
    StoredThread,
    ThreadNotFound,
    ThreadStatus,
)

Blobs = FileBlobs | ChunkBlobs

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


def _thread_exists(conn: Connection, thread_id: str, *, lock: bool) -> bool:
    query = select(threads.c.id).where(threads.c.id == thread_id)
    if lock:
        # PostgreSQL: FOR KEY SHARE, so the thread cannot be deleted before our commit
        # (what its foreign keys would otherwise fail on). SQLite holds the write lock.
        query = query.with_for_update(read=True, key_share=True)
    return conn.execute(query).first() is not None


def _missing_item(conn: Connection, thread_id: str, item_id: str) -> ThreadNotFound:
    if _thread_exists(conn, thread_id, lock=False):
        return ThreadNotFound(thread_id, item_id)
    return ThreadNotFound(thread_id)


# -- threads --------------------------------------------------------------------------------


def insert_thread(conn: Connection, row: dict[str, Any]) -> None:
    """Insert a thread row (IntegrityError: its id is taken)."""
    conn.execute(insert(threads).values(row))


def get_thread(conn: Connection, thread_id: str) -> StoredThread:
    """Return a thread (ThreadNotFound: there is none)."""
    row = conn.execute(select(*_THREAD).where(threads.c.id == thread_id)).first()
    if row is None:
        raise ThreadNotFound(thread_id)
    return _thread(row)


def update_thread(conn: Connection, thread_id: str, changes: dict[str, Any]) -> StoredThread:
    """Change a thread's columns; return it changed (ThreadNotFound: there is none)."""
    statement = update(threads).where(threads.c.id == thread_id).values(changes)
    row = conn.execute(statement.returning(*_THREAD)).first()
    if row is None:
        raise ThreadNotFound(thread_id)
    return _thread(row)


def delete_threads(conn: Connection, blobs: Blobs, ids: list[str], now: int) -> list[AnyRow]:
    """Delete threads with their items and attachments (bytes too); bury the threads."""
    # Their attachments go by cascade; the files (SQLite) need their ids, read first.
    attached = blobs.attachments_of(conn, attachments.c.thread_id.in_(ids))
    statement = delete(threads).where(threads.c.id.in_(ids))
    gone = list(conn.execute(statement.returning(*_THREAD, threads.c.seq)).all())
    bury(conn, "thread", "", gone, now)
    forget_items(conn, ids)
    blobs.remove(attached)
    return gone


def delete_thread(conn: Connection, blobs: Blobs, thread_id: str, now: int) -> StoredThread:
    """Delete one thread (see :func:`delete_threads`); ThreadNotFound: there is none."""
    gone = delete_threads(conn, blobs, [thread_id], now)
    if not gone:
        raise ThreadNotFound(thread_id)
    return _thread(gone[0])


def list_threads(conn: Connection, user: str | None, request: PageRequest) -> Page[StoredThread]:
    """Return one page of threads (see :meth:`ConversationStore.list_threads`)."""
    query = select(*_THREAD)
    if user is not None:
        query = query.where(threads.c.user_id == user)
    # A cursor may name any thread, another user's too (as MemoryStore's does).
    key = (threads.c.created_at, threads.c.seq)
    rows, has_more = page(
        conn, query, key, request, "thread", "", lambda cursor: threads.c.id == cursor
    )
    return Page([_thread(row) for row in rows], has_more)


def count_threads(conn: Connection, user: str | None) -> int:
    """Count threads, all or one user's."""
    query = select(func.count()).select_from(threads)
    if user is not None:
        query = query.where(threads.c.user_id == user)
    return int(conn.execute(query).scalar_one())


# -- items ----------------------------------------------------------------------------------


def add_item(conn: Connection, item: StoredItem) -> None:
    """Append an item, numbered next in its thread (ThreadNotFound, or IntegrityError)."""
    # The thread row is locked from this UPDATE to the commit, so appends to one thread
    # take turns and their numbers follow commit order (see the module docstring of _sql).
    counter = (
        update(threads)
        .where(threads.c.id == item.thread_id)
        .values(next_item_seq=threads.c.next_item_seq + 1)
        .returning(threads.c.next_item_seq)
    )
    seq = conn.execute(counter).scalar()
    if seq is None:
        raise ThreadNotFound(item.thread_id)
    conn.execute(
        insert(items).values(
            thread_id=item.thread_id,
            id=item.id,
            seq=seq,
            created_at=item.created_at,
            content=item.content,
            data=item.extra,
        )
    )


def update_item(
    conn: Connection, thread_id: str, item_id: str, changes: dict[str, Any]
) -> StoredItem:
    """Change an item's columns; return it changed (ThreadNotFound: no item or thread)."""
    statement = (
        update(items)
        .where(items.c.thread_id == thread_id, items.c.id == item_id)
        .values(changes)
        .returning(*_ITEM)
    )
    row = conn.execute(statement).first()
    if row is None:
        raise _missing_item(conn, thread_id, item_id)
    return _item(row)


def get_item(conn: Connection, thread_id: str, item_id: str) -> StoredItem:
    """Return one item (ThreadNotFound: no such item or thread)."""
    query = select(*_ITEM).where(items.c.thread_id == thread_id, items.c.id == item_id)
    row = conn.execute(query).first()
    if row is None:
        raise _missing_item(conn, thread_id, item_id)
    return _item(row)


def delete_item(conn: Connection, thread_id: str, item_id: str, now: int) -> StoredItem:
    """Delete one item and bury it (ThreadNotFound: no such item or thread)."""
    statement = (
        delete(items)
        .where(items.c.thread_id == thread_id, items.c.id == item_id)
        .returning(*_ITEM, items.c.seq)
    )
    row = conn.execute(statement).first()
    if row is None:
        raise _missing_item(conn, thread_id, item_id)
    bury(conn, "item", thread_id, [row], now)
    return _item(row)


def list_items(
    conn: Connection, thread_id: str, request: PageRequest, include_hidden: bool
) -> Page[StoredItem]:
    """Return one page of a thread's items (see :meth:`ConversationStore.list_items`)."""
    if not _thread_exists(conn, thread_id, lock=False):
        raise ThreadNotFound(thread_id)
    request.check()  # after: a missing thread is the first thing to report
    query = select(*_ITEM).where(items.c.thread_id == thread_id)
    if not include_hidden:
        query = query.where(items.c.content.is_not(None))
    # A hidden item is a valid cursor for the visible listing too.
    key = (items.c.created_at, items.c.seq)
    rows, has_more = page(
        conn,
        query,
        key,
        request,
        "item",
        thread_id,
        lambda cursor: and_(items.c.thread_id == thread_id, items.c.id == cursor),
    )
    return Page([_item(row) for row in rows], has_more)


# -- attachments ----------------------------------------------------------------------------


def save_attachment(conn: Connection, blobs: Blobs, values: dict[str, Any]) -> None:
    """Upsert attachment metadata; drop it instead when its thread is gone."""
    thread_id = values["thread_id"]
    if thread_id is not None and not _thread_exists(conn, thread_id, lock=True):
        delete_attachments(conn, blobs, attachments.c.id == values["id"])
        return
    dialect = pg_dialect if conn.dialect.name == "postgresql" else sqlite_dialect
    upsert = dialect.insert(attachments).values(values)
    changed = {name: upsert.excluded[name] for name in values if name != "id"}
    conn.execute(upsert.on_conflict_do_update(index_elements=["id"], set_=changed))


def get_attachment(conn: Connection, attachment_id: str) -> StoredAttachment:
    """Return attachment metadata (AttachmentNotFound: there is none)."""
    query = select(*_ATTACHMENT).where(attachments.c.id == attachment_id)
    row = conn.execute(query).first()
    if row is None:
        raise AttachmentNotFound(attachment_id)
    return _attachment(row)


def delete_attachments(
    conn: Connection, blobs: Blobs, where: ColumnElement[bool]
) -> list[StoredAttachment]:
    """Delete the attachments ``where`` selects, bytes too; return them."""
    statement = delete(attachments).where(where).returning(*_ATTACHMENT)
    gone = list(conn.execute(statement).all())
    # Inside the transaction (SQLite's write lock held): a new upload of the same id
    # cannot land between the commit and the removal.
    blobs.remove([row.id for row in gone])
    return [_attachment(row) for row in gone]


def update_attachment(
    conn: Connection, attachment_id: str, changes: dict[str, Any]
) -> StoredAttachment:
    """Change an attachment's columns in one statement (ThreadNotFound, AttachmentNotFound)."""
    thread_id = changes.get("thread_id")
    if thread_id is not None and not _thread_exists(conn, thread_id, lock=True):
        raise ThreadNotFound(thread_id)
    statement = (
        update(attachments)
        .where(attachments.c.id == attachment_id)
        .values(changes)
        .returning(*_ATTACHMENT)
    )
    row = conn.execute(statement).first()
    if row is None:
        raise AttachmentNotFound(attachment_id)
    return _attachment(row)


def finish_upload(
    conn: Connection,
    attachment_id: str,
    size: int,
    blob: dict[str, Any],
    *,
    token_digest: bytes | None,
    changes: dict[str, Any],
) -> StoredAttachment:
    """Record arrived bytes in the metadata (see :data:`~._blobs.Finish`)."""
    statement = update(attachments).where(attachments.c.id == attachment_id)
    if token_digest is not None:
        statement = statement.where(attachments.c.upload_token_digest == token_digest)
    statement = statement.values(size_bytes=size, **changes, **blob).returning(*_ATTACHMENT)
    row = conn.execute(statement).first()
    if row is None:  # deleted meanwhile, or the token was used by another upload
        raise AttachmentNotFound(attachment_id)
    return _attachment(row)


# -- maintenance ----------------------------------------------------------------------------


def purge_threads(
    conn: Connection, blobs: Blobs, before: int, batch: int, now: int
) -> tuple[int, int]:
    """Delete up to ``batch`` of the oldest threads created before ``before``.

    Returns:
        How many were found, and how many deleted.
    """
    old = (
        select(threads.c.id)
        .where(threads.c.created_at < before)
        .order_by(threads.c.created_at, threads.c.seq)
        .limit(batch)
    )
    ids = list(conn.execute(old).scalars())
    return len(ids), len(delete_threads(conn, blobs, ids, now)) if ids else 0


def purge_attachments(conn: Connection, blobs: Blobs, before: int, batch: int) -> tuple[int, int]:
    """Delete up to ``batch`` pending or unattached attachments created before ``before``.

    Returns:
        How many were found, and how many deleted.
    """
    stale = (
        select(attachments.c.id)
        .where(
            attachments.c.created_at < before,
            attachments.c.upload_token_digest.is_not(None) | attachments.c.thread_id.is_(None),
        )
        .limit(batch)
    )
    ids = list(conn.execute(stale).scalars())
    return len(ids), len(delete_attachments(conn, blobs, attachments.c.id.in_(ids)))
