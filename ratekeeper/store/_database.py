"""How the SQL store reaches its database: URLs, engines, bounded transactions, failures.

:class:`Database` runs the store's database work, a plain synchronous function over one
SQLAlchemy :class:`~sqlalchemy.Connection`, in one transaction that is bounded in time and that
turns every failure of the database into :class:`~ratekeeper.store.StoreUnavailable`, so nothing
above it sees a driver's exception or waits forever on a stopped server. Two runners, one
function:

* SQLite: a synchronous engine (pysqlite); the whole transaction runs on a worker thread, one
  hop from the event loop per operation (the asyncio driver took one per statement, BEGIN,
  fetch and COMMIT, and that hopping was most of an operation's cost);
* PostgreSQL: the asyncio engine (asyncpg), the function run through
  :meth:`~sqlalchemy.ext.asyncio.AsyncConnection.run_sync` on the event loop.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from .._urls import hide_password, hide_url_secrets
from ._schema import lock_for_migration, migrate
from ._values import StoreUnavailable, UnstorableValue

R = TypeVar("R")

#: Execution option marking a write transaction (SQLite begins it IMMEDIATE).
_WRITE = "ratekeeper_write"
#: SQLite transactions running at once in one process (worker threads, pooled connections).
#: More threads only fight the event loop for the GIL: with 8, the service's thread listing
#: at 32 connections had a p99 of 173 ms; with 4, 25 ms at the same throughput
#: (benchmarks/server_load.py, docs/benchmarks.md).
_SQLITE_THREADS = 4


class Run(Protocol):
    """``run(fn, write=False)``: :meth:`Database.run`, as the store's parts receive it."""

    async def __call__(self, fn: Callable[[Connection], R], /, *, write: bool = False) -> R:
        """Run ``fn`` in one bounded transaction and return its result."""


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the database failed" rather than "the call was wrong"."""
    # OSError covers ConnectionError and TimeoutError (the backstop's, and asyncpg's
    # command_timeout) and the attachment files' failures; DBAPIError covers what SQLAlchemy
    # wraps of either driver; sqlite3.Error what pysqlite raises when SQLAlchemy is bypassed
    # (Database._try_wal).
    errors: list[type[BaseException]] = [
        sa_exc.DBAPIError,
        sa_exc.TimeoutError,
        OSError,
        sqlite3.Error,
    ]
    try:  # asyncpg errors raised outside a statement (rare) reach us unwrapped
        asyncpg = importlib.import_module("asyncpg")
    except ImportError:  # pragma: no cover - asyncpg ships with the store extra
        return tuple(errors)
    errors += [asyncpg.PostgresError, asyncpg.InterfaceError]
    return tuple(errors)


_UNAVAILABLE = _unavailable_errors()


def driver_url(url: str) -> URL:
    """Return ``url`` with the driver named (``sqlite+pysqlite``, ``postgresql+asyncpg``).

    SQLite runs on the standard library's sqlite3 (pysqlite) in worker threads: see
    :class:`Database`.

    Raises:
        ValueError: not a SQLite or PostgreSQL URL, another driver, or SQLite in memory (which
            several connections, let alone workers, cannot share).
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("a SQLite store needs a file: sqlite:///PATH (or use 'memory')")
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres") and driver in ("", "asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(
        f"unsupported store URL scheme {parsed.drivername!r}: use sqlite:///PATH or "
        "postgresql://… (drivers pysqlite and asyncpg)"
    )


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception inside SQLAlchemy's wrapper (or ``exc`` itself)."""
    return exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


def _is_bad_value(exc: sa_exc.DBAPIError) -> bool:
    """Whether the database refused a value rather than failed (e.g. NUL in PostgreSQL text)."""
    cause: BaseException | None = _driver_error(exc)
    if str(getattr(cause, "sqlstate", None) or "").startswith("22"):  # class 22: data exception
        return True
    while cause is not None:  # asyncpg's client-side DataError is a ValueError
        if isinstance(cause, ValueError):
            return True
        cause = cause.__cause__
    return False


class Database:
    """One SQLite file or PostgreSQL database (and schema), through a pool of connections.

    Args:
        url: a URL :func:`driver_url` accepts.
        timeout_s: longest one transaction may take, from waiting for a connection to the
            commit; also the drivers' connect and statement timeouts and SQLite's busy timeout.
        schema: PostgreSQL schema holding the tables (created when missing).

    Not thread-safe: the engine belongs to the event loop that first uses it (the SQLite
    engine's pool is thread-safe, and only this class's worker threads use it).
    """

    def __init__(self, url: str, *, timeout_s: float, schema: str | None) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self.url = driver_url(url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        if schema is not None and self.sqlite:
            raise ValueError("schema is for PostgreSQL; a SQLite store is its own file")
        self.schema = schema
        self.timeout_s = float(timeout_s)
        #: The SQLite file (``None`` on PostgreSQL).
        self.path = Path(str(self.url.database)) if self.sqlite else None
        self._engine: Engine | None = None
        self._writer: Engine | None = None
        self._async_engine: AsyncEngine | None = None
        if self.sqlite:
            self._engine = self._create_sqlite_engine()
            # Writes go through this twin of the engine (same pool) to BEGIN IMMEDIATE.
            self._writer = self._engine.execution_options(**{_WRITE: True})
        else:
            self._async_engine = self._create_postgres_engine()
        # SQLite has one writer at a time. Within a process, writers queue here, on the event
        # loop, instead of in SQLite's busy handler, which sleeps in steps of up to 100 ms
        # (16 concurrent writers took a p99 of 0.7 s that way). Other processes still meet in
        # the busy handler. PostgreSQL locks rows, not the database: no lock here.
        self._write_lock: anyio.Lock | None = anyio.Lock() if self.sqlite else None
        # SQLite's worker threads, apart from the default pool's (file I/O, the application's):
        # as many as the pool keeps connections.
        self._threads = anyio.CapacityLimiter(_SQLITE_THREADS)

    @property
    def safe_url(self) -> str:
        """The URL without its password (for messages and ``repr``)."""
        return hide_password(self.url.render_as_string(hide_password=True))

    def _create_sqlite_engine(self) -> Engine:
        engine = create_engine(
            self.url,
            # check_same_thread off: a pooled connection serves whichever worker thread
            # checks it out, one at a time (pysqlite's own default for file databases).
            connect_args={"timeout": self.timeout_s, "check_same_thread": False},
            poolclass=QueuePool,
            pool_size=_SQLITE_THREADS,
            # Beyond the pool: a WAL switch given up at open (_ensure_wal abandons its thread
            # at the deadline) may still hold a connection the limiter no longer counts.
            max_overflow=_SQLITE_THREADS,
            pool_timeout=self.timeout_s,
            # A file has no server to lose and get back: nothing to ping.
            pool_pre_ping=False,
            # Every checkout is a begin() block that commits or rolls back before the
            # connection goes back: the pool's own rollback would be one more call for nothing.
            pool_reset_on_return=None,
        )
        event.listen(engine, "connect", self._on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine

    def _create_postgres_engine(self) -> AsyncEngine:
        options: dict[str, Any] = {}
        if self.schema is not None:
            options["schema_translate_map"] = {None: self.schema}
        return create_async_engine(
            self.url,
            # asyncpg's own deadlines, so a dead or stopped server fails the call cleanly;
            # the backstop in run() bounds the operation as a whole.
            connect_args={"timeout": self.timeout_s, "command_timeout": self.timeout_s},
            pool_pre_ping=True,  # recover by itself when the database comes back
            pool_timeout=self.timeout_s,
            execution_options=options,
        )

    def _on_sqlite_connect(self, dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's documented recipe: sqlite3 must not BEGIN by itself; _on_sqlite_begin
        # does, so that a write begins IMMEDIATE instead of upgrading a read lock mid-way.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # Bounds every wait for another process's lock inside a worker thread, which the
            # backstop cannot interrupt (see run()).
            # An int of milliseconds: past 2**31 - 1 SQLite would wrap it to "never wait".
            busy_ms = min(int(self.timeout_s * 1000), 2**31 - 1)
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            # NORMAL: durable across process crashes; consistent (if not durable to the last
            # commit) across power loss. Per connection, as foreign_keys.
            cursor.execute("PRAGMA synchronous = NORMAL")
            # WAL (readers never block the writer, nor the writer readers) is a property of
            # the file: set once, every connection follows. While workers race to create a
            # new file, SQLite may refuse the switch at once ("database is locked") rather
            # than wait; open() then retries until it holds, so do not fail the connection.
            with contextlib.suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    async def open(self) -> None:
        """Create the SQLite file's directory, then create, check or upgrade the schema.

        Raises:
            StoreUnavailable: the database cannot be reached.
            StoreSchemaError: its schema is newer than this release knows.
        """
        if self.path is not None:
            try:
                await anyio.to_thread.run_sync(self._make_parent)
            except OSError as exc:
                raise self.unavailable(exc) from exc
            await self._ensure_wal()
        await self.run(functools.partial(_migrate, schema=self.schema), write=True)

    async def _ensure_wal(self) -> None:
        """Put the SQLite file in WAL mode, retrying while a concurrent opener holds it."""
        delay_s = 0.005
        try:
            with anyio.fail_after(self.timeout_s):
                while not await anyio.to_thread.run_sync(
                    self._try_wal, abandon_on_cancel=True, limiter=self._threads
                ):
                    await anyio.sleep(delay_s)
                    delay_s = min(delay_s * 2, 0.1)
        except _UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    def _try_wal(self) -> bool:
        assert self._engine is not None
        with self._engine.connect() as conn:
            # Outside any transaction (the switch is refused inside one): on the driver's
            # connection, which SQLAlchemy has not begun.
            raw = conn.connection.driver_connection
            assert raw is not None
            with contextlib.suppress(sqlite3.OperationalError):
                return bool(raw.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",))
        return False

    def _make_parent(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)

    async def dispose(self) -> None:
        """Close the pooled connections (waiting at most ``timeout_s``)."""
        with anyio.move_on_after(self.timeout_s):
            if self._engine is not None:
                await anyio.to_thread.run_sync(self._engine.dispose, abandon_on_cancel=True)
            if self._async_engine is not None:
                await self._async_engine.dispose()

    async def run(self, fn: Callable[[Connection], R], /, *, write: bool = False) -> R:
        """Run ``fn`` in one transaction within ``timeout_s``; return what it returns.

        ``fn`` does all of an operation's database work, synchronously: the transaction
        commits when it returns and rolls back when it raises (its exception propagates).

        Args:
            fn: the work, over a connection inside the transaction.
            write: the transaction writes (SQLite takes the write lock at its start).

        Raises:
            StoreUnavailable: the database failed or did not answer in time.
            UnstorableValue: the database refused a value (PostgreSQL keeps no NUL in text).
            sqlalchemy.exc.IntegrityError: a constraint failed (callers turn it into theirs).
        """
        try:
            if self._async_engine is not None:
                with anyio.fail_after(self.timeout_s):
                    async with self._async_engine.begin() as conn:
                        return await conn.run_sync(fn)
            return await self._run_in_sqlite_thread(fn, write)
        except sa_exc.IntegrityError:
            raise
        except sa_exc.DBAPIError as exc:
            if _is_bad_value(exc):
                detail = _first_line(_driver_error(exc))
                raise UnstorableValue(f"the store cannot keep this value: {detail}") from exc
            raise self.unavailable(exc) from exc
        except _UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    async def _run_in_sqlite_thread(self, fn: Callable[[Connection], R], write: bool) -> R:
        """SQLite: wait (cancellably, within the deadline) for our turn, then run ``fn`` whole
        on a worker thread and take its outcome, whatever it is.

        Once a transaction runs it is never abandoned: a caller told "unavailable" must not
        find its write committed after all (a retried create would be a duplicate). Instead the
        transaction's own waits are bounded by what is left of the deadline: SQLite's busy
        timeout is set to it for that transaction, so the thread ends on time by itself, with
        its commit or with SQLITE_BUSY. The only unbounded wait left is a stalled disk.
        """
        deadline = anyio.current_time() + self.timeout_s
        lock = self._write_lock if write else None
        with anyio.fail_after(self.timeout_s):
            if lock is not None:
                await lock.acquire()
        try:
            with anyio.fail_after(max(deadline - anyio.current_time(), 0.0)):
                await self._threads.acquire()
            try:
                wait_s = max(deadline - anyio.current_time(), 0.001)
                work = functools.partial(self._in_sqlite_thread, fn, write, wait_s)
                # Shielded: the caller waits for the outcome (at most wait_s of lock waits),
                # even when cancelled meanwhile (a client that hung up, say).
                with anyio.CancelScope(shield=True):
                    outcome = await anyio.to_thread.run_sync(work)
            finally:
                self._threads.release()
        finally:
            if lock is not None:
                lock.release()
        return outcome

    def _in_sqlite_thread(self, fn: Callable[[Connection], R], write: bool, wait_s: float) -> R:
        engine = self._writer if write else self._engine
        assert engine is not None
        with engine.connect() as conn:
            # Outside any transaction, on the driver's connection: BEGIN IMMEDIATE itself
            # must wait no longer than the caller's deadline allows. An int of milliseconds,
            # which SQLite would wrap to "never wait" past 2**31 - 1.
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(f"PRAGMA busy_timeout = {min(max(int(wait_s * 1000), 1), 2**31 - 1)}")
            with conn.begin():
                return fn(conn)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """Return the StoreUnavailable for ``exc`` (raise it ``from exc``); no password shown."""
        cause = _driver_error(exc)
        detail = _first_line(cause)
        if isinstance(exc, TimeoutError) and not detail:  # the backstop's deadline
            detail = f"no answer within {self.timeout_s:g}s"
        else:
            detail = f"{type(cause).__name__}: {detail or 'failed'}"
        detail = hide_url_secrets(detail, self.url.render_as_string(hide_password=False))
        return StoreUnavailable(f"conversation store {self.safe_url} unavailable ({detail})")


def _migrate(conn: Connection, schema: str | None) -> None:
    lock_for_migration(conn, schema)
    migrate(conn, schema)


def _on_sqlite_begin(conn: Any) -> None:
    # Writes take the write lock up front: a deferred transaction that reads, then writes,
    # fails with SQLITE_BUSY when another connection wrote in between (busy_timeout can't help).
    write = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
