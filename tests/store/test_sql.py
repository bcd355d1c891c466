"""What only the SQL stores promise: persistence, several stores on one database, schema
versions, failures as StoreUnavailable, and where SQLite keeps attachment bytes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import sqlite3
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, Table

from ratekeeper import BackendError, InvalidParameter, ManualClock
from ratekeeper.store import (
    AttachmentNotFound,
    AttachmentTooLarge,
    ConversationStore,
    SQLStore,
    StoredAttachment,
    StoreSchemaError,
    StoreUnavailable,
    ThreadNotFound,
    assistant_message,
    store_from_url,
    user_message,
)
from ratekeeper.store import _schema as schema_module
from ratekeeper.store._blobs import CHUNK_BYTES
from ratekeeper.store._schema import SCHEMA_VERSION, UPGRADES
from tests.postgres import PrivatePostgres

from .conftest import START, Backing

pytestmark = pytest.mark.anyio

NOW = int(START)


async def stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def pending(attachment_id: str) -> StoredAttachment:
    return StoredAttachment(
        attachment_id, "u", NOW, {"name": "a.bin"}, upload_token_digest=b"\x01" * 32
    )


async def walk_items(store: ConversationStore, thread_id: str) -> list[str]:
    """Every item id, by SDK-style auto-pagination (after=last_id while has_more)."""
    seen: list[str] = []
    after = None
    while True:
        page = await store.list_items(thread_id, order="asc", limit=7, after=after)
        seen += [item.id for item in page.data]
        if not page.has_more:
            return seen
        after = page.last_id


# -- persistence and sharing ------------------------------------------------------------------


async def test_a_reopened_store_sees_everything(sql_backing: Backing) -> None:
    """Threads, items (hidden too), attachments, bytes and cursors survive a restart."""
    store = await sql_backing.make()
    thread = await store.create_thread("u", title="kept", extra={"k": [1, 2]})
    first = await store.add_item(thread.id, user_message("a"), extra={"i": 1})
    hidden = await store.add_item(thread.id, None)
    gone = await store.add_item(thread.id, assistant_message("b"))
    await store.delete_item(thread.id, gone.id)
    await store.save_attachment(pending("atc_1"))
    await store.write_attachment_bytes("atc_1", stream([b"bytes"]), max_bytes=10)
    await store.update_attachment("atc_1", thread_id=thread.id)
    await store.aclose()

    again = await sql_backing.make()
    got = await again.get_thread(thread.id)
    assert got == thread
    assert got.extra == {"k": [1, 2]}
    listed = await again.list_items(thread.id, order="asc", include_hidden=True)
    assert [i.id for i in listed.data] == [first.id, hidden.id]
    assert listed.data[0].extra == {"i": 1}
    page = await again.list_items(thread.id, before=gone.id, order="asc", include_hidden=True)
    assert page.data == listed.data
    attachment = await again.get_attachment("atc_1")
    assert (attachment.thread_id, attachment.size_bytes) == (thread.id, 5)
    assert b"".join([c async for c in again.read_attachment_bytes("atc_1")]) == b"bytes"


async def test_new_items_continue_after_a_restart(sql_backing: Backing) -> None:
    """The item counter lives in the database: appends after a restart list last."""
    store = await sql_backing.make()
    thread = await store.create_thread("u")
    before = [(await store.add_item(thread.id, user_message(str(n)))).id for n in range(3)]
    await store.aclose()
    again = await sql_backing.make()
    after = [(await again.add_item(thread.id, user_message(str(n)))).id for n in range(3)]
    assert await walk_items(again, thread.id) == before + after


async def test_two_stores_appending_to_one_thread_lose_nothing(sql_backing: Backing) -> None:
    """Two stores (as two workers) append at once: every item is listed once, in order."""
    stores = [await sql_backing.make() for _ in range(2)]
    thread = await stores[0].create_thread("u")
    written: list[list[str]] = [[], []]

    async def append(n: int) -> None:
        for k in range(40):
            item = await stores[n].add_item(thread.id, user_message(f"{n}/{k}"))
            written[n].append(item.id)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(append, 0)
        tasks.start_soon(append, 1)
    for store in stores:
        seen = await walk_items(store, thread.id)
        assert sorted(seen) == sorted(written[0] + written[1])
        assert len(set(seen)) == len(seen) == 80
        place = {item_id: n for n, item_id in enumerate(seen)}
        for mine in written:  # each writer's items keep the order it wrote them in
            assert [place[i] for i in mine] == sorted(place[i] for i in mine)


async def test_a_reader_paging_after_the_last_id_never_skips_an_append(
    sql_backing: Backing,
) -> None:
    """While two stores append, a third pages after=last_id and sees every item, in order."""
    writers = [await sql_backing.make() for _ in range(2)]
    reader = await sql_backing.make()
    thread = await reader.create_thread("u")
    total = 60
    seen: list[str] = []

    async def append(n: int) -> None:
        for k in range(total // 2):
            await writers[n].add_item(thread.id, user_message(f"{n}/{k}"))

    async def follow() -> None:
        after = None
        while len(seen) < total:
            page = await reader.list_items(thread.id, order="asc", limit=5, after=after)
            seen.extend(item.id for item in page.data)
            if page.data:
                after = page.last_id
            else:
                await anyio.lowlevel.checkpoint()

    with anyio.fail_after(120):  # a skipped item would make the reader wait forever
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(append, 0)
            tasks.start_soon(append, 1)
            tasks.start_soon(follow)
    assert seen == await walk_items(reader, thread.id)


async def test_a_thread_deleted_by_another_store_is_gone(sql_backing: Backing) -> None:
    """What one store deletes another no longer finds, and its cursor still pages."""
    first, second = await sql_backing.make(), await sql_backing.make()
    threads = [await first.create_thread("u", created_at=n) for n in range(3)]
    await second.delete_thread(threads[1].id)
    with pytest.raises(ThreadNotFound):
        await first.get_thread(threads[1].id)
    page = await first.list_threads(order="asc", after=threads[1].id)
    assert [t.id for t in page.data] == [threads[2].id]


# -- schema -----------------------------------------------------------------------------------


def test_upgrade_steps_match_the_schema_version() -> None:
    """One upgrade step per version after the first (the next release appends step 2)."""
    assert len(UPGRADES) == SCHEMA_VERSION - 1


async def test_open_records_the_schema_version(sql_backing: Backing) -> None:
    """An empty database gets the tables and version 1; opening again changes nothing."""
    await sql_backing.make()
    await sql_backing.make()
    assert await sql_backing.query("SELECT version FROM ratekeeper_schema") == [(SCHEMA_VERSION,)]


async def test_a_newer_schema_is_refused(sql_backing: Backing) -> None:
    """A database a newer release upgraded is refused with what to do about it."""
    store = await sql_backing.make()
    await store.aclose()
    await sql_backing.query("UPDATE ratekeeper_schema SET version = 3")
    with pytest.raises(StoreSchemaError) as caught:
        await sql_backing.make()
    assert str(caught.value) == (
        "store schema version 3 is newer than this release knows (1): upgrade ratekeeper"
    )


async def test_concurrent_opens_of_an_empty_database_succeed(sql_backing: Backing) -> None:
    """Several workers starting at once on an empty database: one creates, all work."""
    stores = [sql_backing.new() for _ in range(5)]
    async with anyio.create_task_group() as tasks:
        for store in stores:
            tasks.start_soon(store.open)
    for n, store in enumerate(stores):
        await store.create_thread(f"u{n}")
    assert await stores[0].count_threads() == 5
    assert await sql_backing.query("SELECT version FROM ratekeeper_schema") == [(SCHEMA_VERSION,)]


# -- tombstones and purge ---------------------------------------------------------------------


async def test_purge_forgets_deleted_positions_after_an_hour(sql_backing: Backing) -> None:
    """A deleted entry's cursor works for an hour; purge forgets it after that."""
    clock = ManualClock(START)
    store = await sql_backing.make(clock)
    thread = await store.create_thread("u")
    gone_thread = await store.create_thread("u")
    gone_item = await store.add_item(thread.id, user_message("x"))
    await store.delete_thread(gone_thread.id)
    await store.delete_item(thread.id, gone_item.id)
    clock.advance(3600)
    await store.purge()
    await store.list_threads(after=gone_thread.id)
    await store.list_items(thread.id, after=gone_item.id)
    clock.advance(1)
    await store.purge()
    with pytest.raises(InvalidParameter):
        await store.list_threads(after=gone_thread.id)
    with pytest.raises(InvalidParameter):
        await store.list_items(thread.id, after=gone_item.id)


async def test_purge_takes_many_attachments_and_tombstones(sql_backing: Backing) -> None:
    """More rows than one purge batch all go, batch by batch."""
    clock = ManualClock(START)
    store = await sql_backing.make(clock)
    thread = await store.create_thread("u")
    for n in range(510):
        await store.save_attachment(StoredAttachment(f"atc_{n}", "u", NOW - 10, {}))
    for _ in range(510):
        item = await store.add_item(thread.id, None)
        await store.delete_item(thread.id, item.id)
    clock.advance(4000)
    result = await store.purge(attachments_before=NOW)
    assert result.attachments == 510
    assert await sql_backing.query("SELECT count(*) FROM tombstones") == [(0,)]


# -- failures ---------------------------------------------------------------------------------


async def test_unreachable_postgresql_is_unavailable_and_shows_no_password() -> None:
    """Nothing listening: StoreUnavailable (a BackendError) from every call, password hidden."""
    store = SQLStore("postgresql://rk:sekrit@127.0.0.1:1/db", timeout_s=2)
    try:
        assert "sekrit" not in repr(store)
        with anyio.fail_after(20):
            for call in (store.open, store.ping, lambda: store.create_thread("u")):
                with pytest.raises(StoreUnavailable) as caught:
                    await call()
                assert isinstance(caught.value, BackendError)
                assert "sekrit" not in str(caught.value)
                assert caught.value.__cause__ is not None
    finally:
        await store.aclose()


async def test_a_server_that_never_answers_is_unavailable_within_the_timeout() -> None:
    """A server that accepts and then says nothing (stopped) fails the call; no hang."""
    held: list[anyio.abc.SocketStream] = []

    async def hold(client: anyio.abc.SocketStream) -> None:
        held.append(client)
        await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    store = SQLStore(f"postgresql://rk@127.0.0.1:{port}/db", timeout_s=0.5)
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, hold)
        with anyio.fail_after(20), pytest.raises(StoreUnavailable):
            await store.open()
        tasks.cancel_scope.cancel()
    for client in held:
        await client.aclose()
    await store.aclose()


async def test_a_paused_or_stopped_postgresql_is_unavailable_then_recovers() -> None:
    """SIGSTOPped, then shut down: StoreUnavailable within the timeout, never a hang; the
    store recovers by itself each time the server is back."""
    server = PrivatePostgres()
    try:
        server.start()
        store = SQLStore(server.url, timeout_s=1)
        try:
            await store.open()
            thread = await store.create_thread("u")
            for fail, recover in ((server.pause, server.resume), (server.stop, server.start)):
                fail()
                with anyio.fail_after(20):  # a hang fails the test instead of stalling it
                    with pytest.raises(StoreUnavailable):
                        await store.get_thread(thread.id)
                    with pytest.raises(StoreUnavailable):
                        await store.add_item(thread.id, user_message("lost"))
                recover()
                with anyio.fail_after(20):
                    assert await store.get_thread(thread.id) == thread
            await store.add_item(thread.id, user_message("after"))
            assert [i.type for i in (await store.list_items(thread.id)).data] == [
                "chatkit.user_message"
            ]
        finally:
            await store.aclose()
    finally:
        server.close()


async def test_a_locked_sqlite_database_is_unavailable_within_the_timeout(
    sqlite_backing: Backing,
) -> None:
    """Another process holding the write lock past the timeout: StoreUnavailable; reads go on."""
    assert sqlite_backing.path is not None
    store = await sqlite_backing.make(timeout_s=0.5)
    thread = await store.create_thread("u")
    blocker = sqlite3.connect(sqlite_backing.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with anyio.fail_after(20), pytest.raises(StoreUnavailable):
            await store.create_thread("u")
        assert await store.get_thread(thread.id) == thread  # WAL: readers are not blocked
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await store.create_thread("u")
    assert await store.count_threads() == 2


async def test_more_concurrent_operations_than_sqlite_worker_threads_all_succeed(
    sqlite_backing: Backing,
) -> None:
    """SQLite runs each operation on one of a few worker threads: the rest wait their turn."""
    store = await sqlite_backing.make()
    thread = await store.create_thread("u")
    async with anyio.create_task_group() as tasks:
        for n in range(40):
            tasks.start_soon(store.add_item, thread.id, user_message(str(n)))
            tasks.start_soon(store.list_threads)
    assert len(await walk_items(store, thread.id)) == 40


async def test_values_the_database_cannot_keep_are_value_errors(sql_backing: Backing) -> None:
    """Text the database refuses is the caller's ValueError, not StoreUnavailable."""
    store = await sql_backing.make()
    with pytest.raises(ValueError, match=r"surrogates|cannot keep"):
        await store.create_thread("u", title="lone \ud800 surrogate")
    if sql_backing.kind == "postgresql":  # PostgreSQL text holds no NUL; SQLite's does
        with pytest.raises(ValueError, match="cannot keep"):
            await store.create_thread("u", title="nul \x00")
        thread = await store.create_thread("u")
        with pytest.raises(ValueError, match="cannot keep"):
            await store.add_item(thread.id, user_message("nul \x00"))
        assert (await store.list_items(thread.id)).data == []
    await store.create_thread("u", title="fine")
    assert (await store.list_threads(user="u", limit=1)).data[0].title == "fine"


# -- attachment bytes -------------------------------------------------------------------------


async def test_a_20_mb_attachment_round_trips_in_chunks(sql_backing: Backing) -> None:
    """20 MB in 64 KiB chunks goes in and comes out in bounded chunks, byte for byte."""
    store = await sql_backing.make(timeout_s=30)
    size = 20 * 1024 * 1024
    generator = random.Random(20)
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // (64 * 1024)):
            chunk = generator.randbytes(64 * 1024)
            sent.update(chunk)
            yield chunk

    await store.save_attachment(pending("atc_big"))
    stored = await store.write_attachment_bytes("atc_big", body(), max_bytes=size)
    assert stored.size_bytes == size
    received = hashlib.sha256()
    largest = 0
    async for chunk in store.read_attachment_bytes("atc_big"):
        received.update(chunk)
        largest = max(largest, len(chunk))
    assert received.hexdigest() == sent.hexdigest()
    assert largest <= CHUNK_BYTES


async def test_sqlite_keeps_bytes_in_files_beside_the_database(sqlite_backing: Backing) -> None:
    """Bytes live in PATH.attachments/<sha256 of the id>; nothing else is left there."""
    assert sqlite_backing.path is not None
    assert not sqlite_backing.path.parent.exists()  # open() creates the directory
    store = await sqlite_backing.make()
    directory = sqlite_backing.path.with_name(sqlite_backing.path.name + ".attachments")
    assert directory.is_dir()
    assert sqlite3.connect(sqlite_backing.path).execute("PRAGMA journal_mode").fetchone() == (
        "wal",
    )
    await store.save_attachment(pending("atc_1"))
    await store.write_attachment_bytes("atc_1", stream([b"on disk"]), max_bytes=100)
    name = hashlib.sha256(b"atc_1").hexdigest()
    assert [p.name for p in directory.iterdir()] == [name]
    assert (directory / name).read_bytes() == b"on disk"
    with pytest.raises(AttachmentTooLarge):
        await store.write_attachment_bytes("atc_1", stream([b"x" * 101]), max_bytes=100)
    assert [p.name for p in directory.iterdir()] == [name]  # no temporary file left
    await store.delete_attachment("atc_1")
    assert list(directory.iterdir()) == []


async def test_sqlite_bytes_missing_on_disk_are_not_found(sqlite_backing: Backing) -> None:
    """A file removed behind the store's back reads as AttachmentNotFound."""
    assert sqlite_backing.path is not None
    store = await sqlite_backing.make()
    await store.save_attachment(pending("atc_1"))
    await store.write_attachment_bytes("atc_1", stream([b"x"]), max_bytes=10)
    directory = sqlite_backing.path.with_name(sqlite_backing.path.name + ".attachments")
    (directory / hashlib.sha256(b"atc_1").hexdigest()).unlink()
    with pytest.raises(AttachmentNotFound):
        await store.read_attachment_bytes("atc_1").__anext__()


async def test_postgresql_chunks_of_replaced_and_abandoned_uploads_go(
    postgres_backing: Backing,
) -> None:
    """A second upload drops the first's chunks; purge drops an abandoned upload's chunks."""
    clock = ManualClock(START)
    store = await postgres_backing.make(clock)
    await store.save_attachment(pending("atc_1"))
    await store.write_attachment_bytes("atc_1", stream([b"a" * (CHUNK_BYTES + 1)]), max_bytes=10**6)
    await store.write_attachment_bytes("atc_1", stream([b"b" * 10]), max_bytes=10**6)
    assert await postgres_backing.query("SELECT count(*) FROM attachment_chunks") == [(1,)]
    # What an upload leaves when the database went away before it could clean up.
    await postgres_backing.query(
        "INSERT INTO attachment_chunks (attachment_id, generation, n, created_at, data) "  # noqa: S608 - constants only
        f"VALUES ('atc_1', 42, 0, {NOW}, '\\x00'::bytea)"
    )
    clock.advance(3600)
    await store.purge()
    assert await postgres_backing.query("SELECT count(*) FROM attachment_chunks") == [(2,)]
    clock.advance(1)
    await store.purge()
    assert await postgres_backing.query("SELECT generation <> 42 FROM attachment_chunks") == [
        (True,)
    ]
    assert b"".join([c async for c in store.read_attachment_bytes("atc_1")]) == b"b" * 10


# -- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///data/store.sqlite3", "sqlite+pysqlite"),
        ("sqlite+pysqlite:///data/store.sqlite3", "sqlite+pysqlite"),
        ("postgresql://rk:pw@db.internal:5432/chat", "postgresql+asyncpg"),
        ("postgres://rk@db.internal/chat", "postgresql+asyncpg"),
        ("postgresql+asyncpg://rk@db.internal/chat", "postgresql+asyncpg"),
    ],
)
def test_store_from_url_picks_the_sql_store(url: str, driver: str) -> None:
    """SQLite and PostgreSQL URLs, with or without the driver, give a shared SQLStore."""
    store = store_from_url(url)
    assert isinstance(store, SQLStore)
    assert store.shared
    assert repr(store).startswith(f"SQLStore('{driver}://")
    assert "pw" not in repr(store)


@pytest.mark.parametrize(
    "url",
    ["mysql://db/chat", "postgresql+psycopg://db/chat", "sqlite://", "sqlite:///:memory:"],
)
def test_urls_of_no_sql_store_are_refused(url: str) -> None:
    """Other databases and drivers, and SQLite in memory, are ValueErrors."""
    with pytest.raises(ValueError, match=r"scheme|SQLite store needs a file"):
        store_from_url(url)


def test_a_schema_is_for_postgresql_only() -> None:
    """SQLite has no schemas to isolate in; timeout_s must be positive."""
    with pytest.raises(ValueError, match="schema"):
        SQLStore("sqlite:///x.sqlite3", schema="s")
    with pytest.raises(ValueError, match="timeout_s"):
        SQLStore("sqlite:///x.sqlite3", timeout_s=0)


async def test_open_applies_upgrade_steps_once(
    sql_backing: Backing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database at version 1 opened by a release at version 2 gets step 2, once."""
    store = await sql_backing.make()
    thread = await store.create_thread("u")
    await store.aclose()
    applied: list[int] = []

    def step_2(conn: Connection) -> None:
        applied.append(1)
        # Through SQLAlchemy, so the store's PostgreSQL schema applies (raw SQL would not).
        Table("upgraded", MetaData(), Column("n", Integer)).create(conn)

    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(schema_module, "UPGRADES", (step_2,))
    upgraded = await sql_backing.make()
    await sql_backing.make()
    assert applied == [1]
    assert await sql_backing.query("SELECT version FROM ratekeeper_schema") == [(2,)]
    assert await sql_backing.query("SELECT count(*) FROM upgraded") == [(0,)]
    assert await upgraded.get_thread(thread.id) == thread


def test_a_password_in_the_query_string_is_hidden_too() -> None:
    """`?password=` (which libpq and asyncpg read) never shows in repr or in an outage error."""
    store = store_from_url("postgresql://rk@127.0.0.1:1/x?password=querysecret", timeout_s=1)
    assert "querysecret" not in repr(store)
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(store.open())
    assert "querysecret" not in str(caught.value)
    asyncio.run(store.aclose())


async def test_sqlite_purge_removes_temporary_files_of_abandoned_uploads(
    sqlite_backing: Backing,
) -> None:
    """A ``.upload-*.part`` file left by a process that died mid-upload goes after an hour."""
    assert sqlite_backing.path is not None
    clock = ManualClock(START)
    store = await sqlite_backing.make(clock)
    await store.save_attachment(pending("atc_1"))
    await store.write_attachment_bytes("atc_1", stream([b"kept"]), max_bytes=100)
    directory = sqlite_backing.path.with_name(sqlite_backing.path.name + ".attachments")
    stored = directory / hashlib.sha256(b"atc_1").hexdigest()
    # What a killed process leaves: one file written at NOW, one written half an hour later.
    old = directory / ".upload-dead.part"
    recent = directory / ".upload-slow.part"
    for part, written in ((old, NOW), (recent, NOW + 1800)):
        part.write_bytes(b"partial")
        os.utime(part, (written, written))
    os.utime(stored, (NOW - 86400, NOW - 86400))  # stored bytes are never taken, however old
    clock.advance(3600)
    await store.purge()
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [stored.name, old.name, recent.name]
    )
    clock.advance(1)
    await store.purge()
    assert sorted(p.name for p in directory.iterdir()) == sorted([stored.name, recent.name])
    clock.advance(1800)
    await store.purge()
    assert [p.name for p in directory.iterdir()] == [stored.name]
    assert b"".join([c async for c in store.read_attachment_bytes("atc_1")]) == b"kept"
