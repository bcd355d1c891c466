"""Where a thread or item stands in its listing, even after it was deleted: keyset paging.

Entries are ordered by ``(created_at, seq)``: ``seq`` is the thread's autoincrement number,
or the item's number within its thread, both in write (commit) order. A page is one query
bounded by the cursors' positions, with ``LIMIT limit + 1`` to learn ``has_more``; a cursor's
position comes from its live row, or from the tombstone its deletion left (``tombstones``,
kept an hour), so listing and deleting in one loop works.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeAlias

from sqlalchemy import ColumnElement, Connection, Row, Select, delete, insert, select, tuple_

from .._errors import InvalidParameter
from ._base import PageRequest
from ._database import Run
from ._schema import tombstones

AnyRow: TypeAlias = Row[*tuple[Any, ...]]
#: What a tombstone marks: a thread (scope ``""``) or an item (scope: its thread's id).
Kind = Literal["thread", "item"]
Position = tuple[int, int]


def position(
    conn: Connection,
    live: Select[*tuple[Any, ...]],
    kind: Kind,
    scope: str,
    entry_id: str,
    param: str,
) -> Position:
    """Return a cursor's ``(created_at, seq)``: from its live row (``live``), else its tombstone.

    Raises:
        InvalidParameter: neither knows ``entry_id`` (``param`` names the cursor).
    """
    row = conn.execute(live).first()
    if row is None:
        buried = select(tombstones.c.created_at, tombstones.c.seq).where(
            tombstones.c.kind == kind, tombstones.c.scope == scope, tombstones.c.id == entry_id
        )
        row = conn.execute(buried).first()
    if row is None:
        raise InvalidParameter(
            f"Invalid '{param}': no entry with id '{entry_id[:128]}' to page from.",
            param=param,
            code="invalid_value",
        )
    return (row[0], row[1])


def page(
    conn: Connection,
    query: Select[Any],
    key: tuple[ColumnElement[int], ColumnElement[int]],
    request: PageRequest,
    kind: Kind,
    scope: str,
    named: Callable[[str], ColumnElement[bool]],
) -> tuple[list[AnyRow], bool]:
    """Run one page of ``query`` ordered by ``key``; see the interface's rules.

    Args:
        conn: the connection.
        query: the entries that may be listed.
        key: the columns ``(created_at, seq)`` of the entries.
        request: the page wanted (checked already).
        kind: what the entries are, for the tombstones of their cursors.
        scope: the tombstones' scope (see :data:`Kind`).
        named: the condition selecting the live entry a cursor names, among all (hidden
            entries and other users' threads too).

    Returns:
        The rows, in ``order``, and whether more lie beyond them in the direction of travel.
    """
    limit, order = request.limit, request.order
    after, before = [
        None
        if cursor is None
        else position(conn, select(*key).where(named(cursor)), kind, scope, cursor, param)
        for cursor, param in ((request.after, "after"), (request.before, "before"))
    ]
    here = tuple_(*key)
    if after is not None:
        mark = tuple_(*after)
        query = query.where(here > mark if order == "asc" else here < mark)
    if before is not None:
        mark = tuple_(*before)
        query = query.where(here < mark if order == "asc" else here > mark)
    # Travel away from the cursor: from the start of `order`, unless there is only `before`,
    # whose page is the one just before it (so scanned from the cursor backwards).
    ascending = (order == "asc") != (before is not None and after is None)
    ordering = [column.asc() if ascending else column.desc() for column in key]
    rows = list(conn.execute(query.order_by(*ordering).limit(limit + 1)).all())
    has_more = len(rows) > limit
    del rows[limit:]
    if ascending != (order == "asc"):
        rows.reverse()
    return rows, has_more


def bury(conn: Connection, kind: Kind, scope: str, rows: Sequence[AnyRow], now: int) -> None:
    """Remember where deleted entries stood (``rows`` with ``id``, ``created_at``, ``seq``)."""
    if not rows:
        return
    ids = [row.id for row in rows]
    conn.execute(
        delete(tombstones).where(
            tombstones.c.kind == kind, tombstones.c.scope == scope, tombstones.c.id.in_(ids)
        )
    )
    marks = [
        {
            "kind": kind,
            "scope": scope,
            "id": row.id,
            "created_at": row.created_at,
            "seq": row.seq,
            "deleted_at": now,
        }
        for row in rows
    ]
    conn.execute(insert(tombstones), marks)


def forget_items(conn: Connection, thread_ids: list[str]) -> None:
    """Forget the positions of deleted items of these (deleted) threads.

    Their thread is gone, so they can page nothing; and a new thread of the same id numbers
    its items afresh.
    """
    conn.execute(
        delete(tombstones).where(tombstones.c.kind == "item", tombstones.c.scope.in_(thread_ids))
    )


async def forget(run: Run, deleted_before: int, batch: int) -> None:
    """Forget positions of entries deleted before ``deleted_before``, ``batch`` at a time."""
    # An alias, or SQLAlchemy would correlate the subquery to the DELETE's own rows.
    old = tombstones.alias("old")
    forgotten = (
        select(old.c.kind, old.c.scope, old.c.id)
        .where(old.c.deleted_at < deleted_before)
        .limit(batch)
    )
    key = tuple_(tombstones.c.kind, tombstones.c.scope, tombstones.c.id)
    statement = delete(tombstones).where(key.in_(forgotten))
    while await run(lambda conn: conn.execute(statement).rowcount, write=True) >= batch:
        pass
