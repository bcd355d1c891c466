"""The SQL store's tables, and how a database gets (and keeps) the schema this release knows.

One :class:`~sqlalchemy.MetaData` serves SQLite and PostgreSQL; the differences are column
variants (JSONB on PostgreSQL, SQLite's rowid alias for ``threads.seq``). The tables:

* ``threads``: one row per thread; ``seq`` (autoincrement, never reused) breaks ``created_at``
  ties in write order, and ``next_item_seq`` numbers the thread's items in commit order;
* ``items``: one row per thread item, keyed ``(thread_id, id)``; ``content`` NULL marks a hidden
  item (one REST never lists);
* ``attachments``: metadata, plus where the stored bytes are (``blob_size``, and on PostgreSQL
  ``blob_generation``, the upload whose ``attachment_chunks`` rows hold them);
* ``attachment_chunks``: PostgreSQL's attachment bytes, 256 KiB per row (SQLite keeps them in
  files beside the database instead);
* ``tombstones``: where deleted threads and items stood, so a cursor naming one still pages;
* ``ratekeeper_schema``: the schema version.

Upgrades: :data:`SCHEMA_VERSION` is the version these tables are. An empty database gets them
whole; a database at an older version gets each step of :data:`UPGRADES` after its version, in
order, in the transaction that opens it; a newer one is refused. The next release that changes
a table bumps :data:`SCHEMA_VERSION`, changes the table here, and appends its step. A step
works through SQLAlchemy constructs (``Table.create``, ``conn.execute(update(...))``) so that
a PostgreSQL store's ``schema`` applies to it: raw SQL text is not translated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

from ._values import StoreSchemaError

#: The version of the tables below.
SCHEMA_VERSION = 1

#: ``UPGRADES[i]`` takes a database from version ``i + 1`` to ``i + 2``, in the open transaction.
UPGRADES: tuple[Callable[[Connection], None], ...] = ()

#: Key of the PostgreSQL advisory lock that serializes schema creation and upgrades ("ratekeep").
ADVISORY_LOCK = 0x726174656B656570

# none_as_null: a Python None is SQL NULL (a hidden item's content, absent extra data), never
# the JSON literal `null`, so `content IS NULL` finds exactly the hidden items.
_JSON: TypeEngine[Any] = JSON(none_as_null=True).with_variant(
    JSONB(none_as_null=True), "postgresql"
)
# On SQLite an INTEGER PRIMARY KEY is the rowid; with sqlite_autoincrement it is never reused,
# so a deleted thread's tombstone can never share its (created_at, seq) with a new thread.
_SEQ: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

threads = Table(
    "threads",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", Text, nullable=False, unique=True),
    Column("user_id", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("title", Text, nullable=True),
    Column("status", _JSON, nullable=False),
    Column("data", _JSON, nullable=True),
    Column("next_item_seq", BigInteger, nullable=False, server_default="0"),
    Index("threads_by_user", "user_id", "created_at", "seq"),
    Index("threads_by_time", "created_at", "seq"),
    sqlite_autoincrement=True,
)

items = Table(
    "items",
    metadata,
    Column(
        "thread_id",
        Text,
        ForeignKey("threads.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("content", _JSON, nullable=True),
    Column("data", _JSON, nullable=True),
    PrimaryKeyConstraint("thread_id", "id"),
    Index("items_by_time", "thread_id", "created_at", "seq"),
)

attachments = Table(
    "attachments",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column(
        "thread_id",
        Text,
        ForeignKey("threads.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("session_id", Text, nullable=True),
    Column("declared_bytes", BigInteger, nullable=True),
    Column("upload_token_digest", LargeBinary, nullable=True),
    Column("size_bytes", BigInteger, nullable=True),
    Column("data", _JSON, nullable=False),
    # Where the stored bytes are, apart from the metadata a caller saves: bytes stay when
    # save_attachment replaces the metadata. NULL until bytes arrived.
    Column("blob_size", BigInteger, nullable=True),
    Column("blob_generation", BigInteger, nullable=True),
    # The cascade from threads and purge's scan of stale attachments.
    Index("attachments_by_thread", "thread_id"),
    Index("attachments_by_time", "created_at"),
)

attachment_chunks = Table(
    "attachment_chunks",
    metadata,
    Column(
        "attachment_id",
        Text,
        ForeignKey("attachments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # Each upload writes under a fresh generation, so a failed or concurrent upload never
    # mixes its chunks with the stored bytes; the final transaction switches generations.
    Column("generation", BigInteger, nullable=False),
    Column("n", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("attachment_id", "generation", "n"),
)

tombstones = Table(
    "tombstones",
    metadata,
    Column("kind", Text, nullable=False),  # "thread" or "item"
    # "" for a thread; an item's thread id (item ids are unique within a thread only).
    Column("scope", Text, nullable=False),
    Column("id", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("deleted_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("kind", "scope", "id"),
    Index("tombstones_by_age", "deleted_at"),
)

schema_version = Table(
    "ratekeeper_schema",
    metadata,
    Column("version", Integer, nullable=False),
)


def migrate(conn: Connection, schema: str | None) -> None:
    """Bring the database to :data:`SCHEMA_VERSION`, inside the caller's write transaction.

    The caller holds what serializes concurrent openers (SQLite's ``BEGIN IMMEDIATE``, or
    PostgreSQL's advisory lock), so the first one creates and the others find it done.

    Raises:
        StoreSchemaError: the database is at a version newer than this release knows.
    """
    version: int | None = None
    if inspect(conn).has_table(schema_version.name, schema=schema):
        version = conn.execute(select(func.max(schema_version.c.version))).scalar()
    if version is None:
        # An empty database (or one a crash left before its first commit): the latest tables.
        metadata.create_all(conn, checkfirst=True)
        conn.execute(schema_version.delete())
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION))
        return
    if version > SCHEMA_VERSION:
        raise StoreSchemaError(
            f"store schema version {version} is newer than this release knows "
            f"({SCHEMA_VERSION}): upgrade ratekeeper"
        )
    if version < 1:
        raise StoreSchemaError(f"store schema version {version} is not a ratekeeper schema")
    for step in UPGRADES[version - 1 :]:
        step(conn)
    if version != SCHEMA_VERSION:
        conn.execute(schema_version.update().values(version=SCHEMA_VERSION))


def lock_for_migration(conn: Connection, schema: str | None) -> None:
    """On PostgreSQL, serialize openers and create ``schema``; SQLite needs neither.

    Concurrent ``CREATE SCHEMA/TABLE IF NOT EXISTS`` can still collide in PostgreSQL's catalog,
    so every opener first takes one transaction-scoped advisory lock.
    """
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    if schema is None:
        return
    # Look first: creating needs the CREATE privilege on the database, which a user given a
    # schema made for it by an administrator may well not have.
    found = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema})
    if found.first() is None:
        quoted = conn.dialect.identifier_preparer.quote_schema(schema)
        conn.exec_driver_sql(f"CREATE SCHEMA {quoted}")
