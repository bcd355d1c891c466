"""Redis Cluster specifics. The contract suite itself runs on a private three-node cluster too
(tests/contract, parameter "redis-cluster"); these check how the keys land on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from ratekeeper import BackendError, ManualClock, Reason
from ratekeeper.redis import RedisBackend

from .servers import ScratchRedisBackend, scratch_prefix, shared_cluster_url

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
async def cluster_backend(clock: ManualClock) -> AsyncIterator[RedisBackend]:
    made = ScratchRedisBackend.from_url(
        shared_cluster_url(), cluster=True, clock=clock, key_prefix=scratch_prefix()
    )
    try:
        yield made
    finally:
        await made.aclose()


def _node_of(client: RedisCluster, key: str) -> str:
    node = client.get_node_from_key(key)
    assert node is not None
    return str(node.name)


async def test_sessions_and_index_shards_spread_over_the_nodes(
    cluster_backend: RedisBackend,
) -> None:
    """Sessions land on every node; each session's keys share one; so do the index shards'."""
    client = cluster_backend.client
    assert isinstance(client, RedisCluster)
    sessions = [await cluster_backend.create_session("u") for _ in range(30)]
    session_nodes = set()
    for session in sessions:
        keys: tuple[str, ...] = cluster_backend.keys.session(session.id)
        assert len({key_slot(key.encode()) for key in keys}) == 1
        session_nodes.add(_node_of(client, keys[0]))
        decision = await cluster_backend.admit(session.client_secret or "")
        assert decision.reason is Reason.ALLOWED
    assert len(session_nodes) == 3
    shard_nodes = set()
    for shard in range(cluster_backend.keys.shards):
        keys = cluster_backend.keys.shard(shard)
        assert len({key_slot(key.encode()) for key in keys}) == 1
        shard_nodes.add(_node_of(client, keys[0]))
    assert len(shard_nodes) >= 2
    assert (await cluster_backend.statistics()).active == 30


async def test_scripts_reload_on_every_node_after_script_flush(
    cluster_backend: RedisBackend, clock: ManualClock
) -> None:
    """SCRIPT FLUSH on all primaries: admissions and sweeps reload and carry on."""
    client = cluster_backend.client
    assert isinstance(client, RedisCluster)
    sessions = [
        await cluster_backend.create_session("u", expires_after_s=5, max_requests_per_1_minute=1)
        for _ in range(10)
    ]
    await client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    for session in sessions:
        assert (await cluster_backend.admit(session.client_secret or "")).allowed
    await client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    for session in sessions:
        decision = await cluster_backend.admit(session.client_secret or "")
        assert decision.reason is Reason.RATE_LIMITED
    clock.advance(5)
    await client.execute_command("SCRIPT FLUSH", target_nodes=RedisCluster.PRIMARIES)
    flipped = await cluster_backend.sweep(100)
    assert sorted(item.session.id for item in flipped) == sorted(s.id for s in sessions)


async def test_a_timed_out_command_is_not_retried() -> None:
    """A node that holds a command past socket_timeout fails it once, as on a single server.

    redis-py's cluster client would retry it after re-reading the topology: the admission
    may already have been counted, and the caller would wait twice the timeout.
    """
    backend = ScratchRedisBackend.from_url(
        shared_cluster_url(), cluster=True, key_prefix=scratch_prefix(), socket_timeout=0.4
    )
    try:
        session = await backend.create_session("u")
        client = backend.client
        assert isinstance(client, RedisCluster)
        node = client.get_node_from_key(backend.keys.session(session.id)[0])
        assert node is not None
        pauser: redis.asyncio.Redis = redis.asyncio.Redis(host=node.host, port=int(node.port))
        try:
            # Writes wait 0.6 s on that node: past one timeout, within a retry's.
            await pauser.client_pause(600, all=False)
            with pytest.raises(BackendError):
                await backend.admit(session.client_secret or "")
        finally:
            await pauser.client_unpause()
            await pauser.aclose()
    finally:
        await backend.aclose()
