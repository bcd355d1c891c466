"""The standalone batcher after a failed batch: queued calls fail at once and are never sent.

Redis is replaced by a stand-in round trip, so the order of events is exact.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from ratekeeper import BackendError
from ratekeeper.redis._batch import ScriptBatcher
from ratekeeper.redis._circuit import Circuit
from ratekeeper.redis._scripts import Script

pytestmark = pytest.mark.anyio


class _Trips(ScriptBatcher):
    """Each round trip takes 10 ms; the second one fails on the connection."""

    __slots__ = ("sizes",)

    def __init__(self) -> None:
        client = Redis()  # never connected: the round trip is the stand-in below
        script = Script("admit_many", "return 1", "0" * 40)
        super().__init__(client, script, lambda: b"", Circuit(client, 3, 0.5), max_batch=2)
        self.sizes: list[int] = []

    async def _round_trip(self, keys: bytes, args: bytes, count: int) -> bytes:
        self.sizes.append(count)
        await asyncio.sleep(0.01)
        if len(self.sizes) == 2:
            try:
                raise RedisConnectionError("gone")
            except RedisConnectionError as exc:
                raise BackendError("Redis is unreachable") from exc
        return b"\n".join([b"ok"] * count)


async def _call(batcher: ScriptBatcher) -> bytes | str:
    try:
        return await batcher.call(b"k", b"a")
    except BackendError:
        return "error"


async def test_after_a_failed_batch_the_queue_is_failed_and_later_calls_are_sent() -> None:
    batcher = _Trips()
    first = asyncio.ensure_future(_call(batcher))
    await asyncio.sleep(0)
    queued = [asyncio.ensure_future(_call(batcher)) for _ in range(6)]  # three batches of two
    await asyncio.sleep(0.025)  # the first batch failed meanwhile
    late = asyncio.ensure_future(_call(batcher))
    await asyncio.wait_for(asyncio.gather(first, *queued, late), 1)
    assert first.result() == b"ok"
    assert [call.result() for call in queued] == ["error"] * 6
    assert late.result() == b"ok"
    # The alone call, the failed batch, the late call: the failed callers' batches never left.
    assert batcher.sizes == [1, 2, 1]
