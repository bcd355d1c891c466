"""Fixtures for the Redis backend's own tests: real Redis servers, scratch backends.

redis-py's asyncio client runs on asyncio only, so these async tests run on asyncio (the
contract suite drives the same backend from its own asyncio portal).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from ratekeeper import ManualClock
from ratekeeper.redis import RedisBackend

from .servers import RedisProcess, ScratchRedisBackend, scratch_prefix, shared_redis_url


@pytest.fixture
def anyio_backend() -> str:
    """redis-py's asyncio client: asyncio only."""
    return "asyncio"


@pytest.fixture
def redis_url() -> str:
    """The shared test Redis (``REDIS_URL``, or a private server of this test run)."""
    return shared_redis_url()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_700_000_000.0)


@pytest.fixture
async def backend(redis_url: str, clock: ManualClock) -> AsyncIterator[RedisBackend]:
    """A scratch backend on the shared Redis, on the manual clock."""
    made = ScratchRedisBackend.from_url(
        redis_url, clock=clock, key_prefix=scratch_prefix(), expiry_shards=4
    )
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
async def timed_backend(redis_url: str) -> AsyncIterator[RedisBackend]:
    """A scratch backend on the shared Redis, on Redis ``TIME`` (the production clock)."""
    made = ScratchRedisBackend.from_url(redis_url, key_prefix=scratch_prefix())
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test's own, for what would disturb others (kill, flush)."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()
