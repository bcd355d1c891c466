"""Fixtures of the conversation-store contract suite: every store, fresh for each test.

``store`` runs a test on :class:`~ratekeeper.store.MemoryStore`, on :class:`SQLStore` over a
SQLite file in ``tmp_path``, and on :class:`SQLStore` over a real PostgreSQL in a private
schema (``rk_test_<hex>``, dropped afterwards). PostgreSQL is found by :mod:`tests.postgres`
(``RATEKEEPER_TEST_POSTGRES_URL``, else the local server with trust auth); when none answers
the PostgreSQL cases are skipped with the reason, or fail when ``CI`` is set.

asyncpg is an asyncio library, so these tests run on asyncio only.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type hints
import pytest

from ratekeeper import ManualClock
from ratekeeper.store import ConversationStore, MemoryStore, SQLStore
from tests.postgres import server_url

__all__ = ("Backing", "postgres_dsn")

START = 1_700_000_000.0


def postgres_dsn(url: str) -> str:
    """Return ``url`` as asyncpg wants it (no ``+driver``)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass
class Backing:
    """What a store lives on; :meth:`make` opens any number of stores sharing it.

    Attributes:
        kind: ``memory``, ``sqlite`` or ``postgresql``.
        url: the SQL store's URL (``None`` for memory).
        schema: the private PostgreSQL schema (``None`` otherwise).
        path: the SQLite file (``None`` otherwise).
    """

    kind: str
    url: str | None = None
    schema: str | None = None
    path: Path | None = None
    made: list[ConversationStore] = field(default_factory=list)

    @property
    def sql(self) -> bool:
        """Whether the stores are SQL stores (and so share state between instances)."""
        return self.kind != "memory"

    def new(
        self, clock: ManualClock | None = None, *, url: str | None = None, **options: Any
    ) -> ConversationStore:
        """Return a store on this backing (or at ``url``), not opened; closed at teardown."""
        clock = clock if clock is not None else ManualClock(START)
        store: ConversationStore
        if self.url is None:
            store = MemoryStore(clock)
        else:
            store = SQLStore(url or self.url, clock=clock, schema=self.schema, **options)
        self.made.append(store)
        return store

    async def make(
        self, clock: ManualClock | None = None, *, url: str | None = None, **options: Any
    ) -> ConversationStore:
        """Return an opened store on this backing (or at ``url``); closed at teardown."""
        store = self.new(clock, url=url, **options)
        await store.open()
        return store

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Run raw SQL on the backing database behind the stores' backs; return its rows."""
        if self.path is not None:
            with closing(sqlite3.connect(self.path)) as connection, connection:
                return [tuple(row) for row in connection.execute(sql).fetchall()]
        assert self.url is not None
        connection = await asyncpg.connect(postgres_dsn(self.url), timeout=10)
        try:
            if self.schema is not None:
                await connection.execute(f'SET search_path TO "{self.schema}"')
            return [tuple(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()


@asynccontextmanager
async def _backing(kind: str, tmp_path: Path) -> AsyncIterator[Backing]:
    if kind == "memory":
        backing = Backing("memory")
    elif kind == "sqlite":
        path = tmp_path / "data" / "store.sqlite3"
        backing = Backing("sqlite", url=f"sqlite:///{path}", path=path)
    else:
        url = server_url()  # skips (fails under CI) when no PostgreSQL answers
        backing = Backing("postgresql", url=url, schema=f"rk_test_{secrets.token_hex(6)}")
    try:
        yield backing
    finally:
        for store in backing.made:
            await store.aclose()
        if backing.kind == "postgresql":
            assert backing.url is not None
            await backing.query(f'DROP SCHEMA IF EXISTS "{backing.schema}" CASCADE')


@pytest.fixture
def anyio_backend() -> str:
    """asyncpg: asyncio only."""
    return "asyncio"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def backing(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backing]:
    """Every store's backing, fresh for the test."""
    async with _backing(request.param, tmp_path) as made:
        yield made


@pytest.fixture(params=["sqlite", "postgresql"])
async def sql_backing(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backing]:
    """The SQL stores' backings, fresh for the test."""
    async with _backing(request.param, tmp_path) as made:
        yield made


@pytest.fixture
async def sqlite_backing(tmp_path: Path) -> AsyncIterator[Backing]:
    """A SQLite file's backing, fresh for the test."""
    async with _backing("sqlite", tmp_path) as made:
        yield made


@pytest.fixture
async def postgres_backing(tmp_path: Path) -> AsyncIterator[Backing]:
    """A PostgreSQL schema's backing, fresh for the test."""
    async with _backing("postgresql", tmp_path) as made:
        yield made


@pytest.fixture
async def store(backing: Backing, clock: ManualClock) -> ConversationStore:
    """An opened store on the parametrized backing, on the manual ``clock``."""
    return await backing.make(clock)
