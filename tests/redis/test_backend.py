"""What only the Redis backend has: Redis TIME, one round trip, keys and slots, TTLs, script
reloads, wrapped errors and the shared sweep. The semantics themselves are the contract suite's
(tests/contract, parametrized with "redis" and "redis-cluster")."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import anyio
import pytest
import redis.asyncio
from redis.crc import key_slot

from ratekeeper import (
    BackendError,
    CapacityExceeded,
    FileUploadLimits,
    Gate,
    InvalidParameter,
    ManualClock,
    Reason,
    SessionNotFound,
)
from ratekeeper._secrets import secret_digest
from ratekeeper.redis import RedisBackend, session_id_for
from ratekeeper.redis._scripts import load_scripts

from .servers import RedisProcess, ScratchRedisBackend, free_port, scratch_prefix

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def _keys(backend: RedisBackend) -> list[str]:
    return sorted(
        [key.decode() async for key in backend.client.scan_iter(match=f"{backend.keys.prefix}:*")]
    )


class CountingConnection(redis.asyncio.Connection):
    """A real connection that counts what it writes: one write is one round trip."""

    writes = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).writes += 1
        await super().send_packed_command(command, check_health)


async def test_time_comes_from_redis(timed_backend: RedisBackend) -> None:
    """Without an injected clock, creation reads Redis TIME, not the gateway's clock."""
    before = await timed_backend.client.time()
    session = await timed_backend.create_session("u", expires_after_s=30)
    after = await timed_backend.client.time()
    assert before[0] + before[1] / 1e6 <= session.created_at <= after[0] + after[1] / 1e6
    assert session.expires_at == math.floor(session.created_at) + 30
    decision = await timed_backend.admit(session.client_secret or "")
    assert decision.allowed
    assert decision.reset_after == 60.0


async def test_one_round_trip_per_admission(private_redis: RedisProcess) -> None:
    """An admission, allowed or rejected, is exactly one command on the wire."""
    pool = redis.asyncio.ConnectionPool.from_url(
        private_redis.url, connection_class=CountingConnection
    )
    backend = RedisBackend(redis.asyncio.Redis.from_pool(pool), owns_client=True)
    try:
        session = await backend.create_session("u", max_requests_per_1_minute=3)
        secret = session.client_secret or ""
        await backend.admit(secret)  # warm: the connection is open, the script cached
        CountingConnection.writes = 0
        decisions = [await backend.admit(secret) for _ in range(5)]
        assert [d.allowed for d in decisions] == [True, True, False, False, False]
        assert CountingConnection.writes == 5
    finally:
        await backend.aclose()


async def test_scripts_reload_after_script_flush(
    private_redis: RedisProcess, clock: ManualClock
) -> None:
    """SCRIPT FLUSH between calls costs nothing but a reload: decisions and sweeps go on."""
    backend = RedisBackend.from_url(private_redis.url, clock=clock, expiry_shards=2)
    try:
        session = await backend.create_session("u", expires_after_s=10, max_requests_per_1_minute=2)
        secret = session.client_secret or ""
        assert (await backend.admit(secret)).allowed
        await backend.client.script_flush()
        assert (await backend.admit(secret)).allowed
        await backend.client.script_flush()
        assert (await backend.admit(secret)).reason is Reason.RATE_LIMITED
        clock.advance(10)
        await backend.client.script_flush()  # the sweep runs its scripts in pipelines
        flipped = await backend.sweep(10)
        assert [item.session.id for item in flipped] == [session.id]
        scripts = load_scripts()
        cached = await backend.client.script_exists(scripts["peek"].sha, scripts["flip"].sha)
        assert cached == [True, True]
    finally:
        await backend.aclose()


async def test_session_keys_share_one_slot_and_hold_no_secret(backend: RedisBackend) -> None:
    """Every key of a session hashes to its id's slot; only digests are stored."""
    session = await backend.create_session(
        "u", file_upload=FileUploadLimits(True, 1, 2), attributes={"k": "v"}
    )
    secret = session.client_secret or ""
    assert session.id == session_id_for(secret)
    await backend.admit(secret)
    await backend.reserve_upload(session.id, 10)
    keys = await _keys(backend)
    own = [key for key in keys if session.id in key]
    assert len(own) == 2
    assert {key_slot(key.encode()) for key in own} == {key_slot(session.id.encode())}
    stored = await backend.client.hgetall(own[0] if own[0].endswith(":s") else own[1])
    assert stored[b"d"] == secret_digest(secret)
    dump = repr(stored) + repr(
        await backend.client.lrange(backend.keys.session(session.id)[1], 0, -1)
    )
    assert secret not in dump
    assert secret.encode() not in dump.encode()


async def test_every_key_carries_a_ttl(backend: RedisBackend, clock: ManualClock) -> None:
    """Sessions, windows and index shards all expire on their own, sweeper or not."""
    kept = await backend.create_session("u", expires_after_s=600)
    ended = await backend.create_session("u", expires_after_s=5)
    cancelled = await backend.create_session("u")
    await backend.admit(kept.client_secret or "")
    await backend.admit(ended.client_secret or "")
    await backend.cancel(cancelled.id)
    clock.advance(5)
    assert len(await backend.sweep(10)) == 1
    keys = await _keys(backend)
    assert keys
    for key in keys:
        ttl_ms = await backend.client.pttl(key)
        # Injected clocks get a wide real-time margin; never more than lifetime + retention.
        assert 0 < ttl_ms <= (600 + backend.retention_s) * 1000 + 600_000, key


async def test_ttls_follow_retention_on_redis_time(timed_backend: RedisBackend) -> None:
    """On Redis TIME, a session's TTL is its lifetime plus retention (plus a second)."""
    session = await timed_backend.create_session("u", expires_after_s=20)
    key = timed_backend.keys.session(session.id)[0]
    ttl_ms = await timed_backend.client.pttl(key)
    assert 0 < ttl_ms <= (20 + timed_backend.retention_s) * 1000 + 1_000
    await timed_backend.cancel(session.id)
    assert 0 < await timed_backend.client.pttl(key) <= timed_backend.retention_s * 1000 + 1_000


async def test_retention_purges_keys(redis_url: str, clock: ManualClock) -> None:
    """After retention, the sweep deletes an ended session's keys: it becomes unknown."""
    backend = ScratchRedisBackend.from_url(
        redis_url, clock=clock, key_prefix=scratch_prefix(), retention_s=30, expiry_shards=1
    )
    try:
        session = await backend.create_session("u", expires_after_s=1)
        await backend.admit(session.client_secret or "")
        clock.advance(1)
        assert len(await backend.sweep(10)) == 1
        assert await backend.time_to_next_deadline() == 30.0
        clock.advance(30)
        assert await backend.sweep(10) == []
        with pytest.raises(SessionNotFound):
            await backend.get(session.id)
        assert (await backend.admit(session.client_secret or "")).reason is Reason.UNKNOWN_SESSION
        assert not [key for key in await _keys(backend) if session.id in key]
        assert (await backend.statistics()).expired == 0
    finally:
        await backend.aclose()


async def test_index_stays_bounded_without_any_sweeper(redis_url: str, clock: ManualClock) -> None:
    """Entries older than deadline + retention + TTL margin are dropped by later creations."""
    backend = ScratchRedisBackend.from_url(
        redis_url, clock=clock, key_prefix=scratch_prefix(), retention_s=10, expiry_shards=1
    )
    try:
        for _ in range(3):
            await backend.create_session("u", expires_after_s=1)
        clock.advance(1 + 10 + 600 + 1)  # an injected clock's TTL margin is 600 s
        await backend.create_session("u", expires_after_s=1)
        assert (await backend.statistics()).active == 1
    finally:
        await backend.aclose()


async def test_a_creation_keeps_due_entries_the_sweep_still_owes(
    redis_url: str, clock: ManualClock
) -> None:
    """With retention 0, a creation right after a deadline leaves that expiry to the sweep."""
    backend = ScratchRedisBackend.from_url(
        redis_url, clock=clock, key_prefix=scratch_prefix(), retention_s=0, expiry_shards=1
    )
    try:
        due = await backend.create_session("u", expires_after_s=1)
        clock.advance(1.5)  # due, its keys still alive: the sweeper has yet to run
        await backend.create_session("u")
        assert [item.session.id for item in await backend.sweep(10)] == [due.id]
    finally:
        await backend.aclose()


async def test_foreign_session_ids_are_unknown_without_io() -> None:
    """Ids this backend never issues (braces included) raise before any round trip."""
    backend = RedisBackend.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        for bad in ("nope", "cksess_{x}", "cksess_" + "0" * 31 + "}"):
            with pytest.raises(SessionNotFound):
                await backend.get(bad)
            with pytest.raises(SessionNotFound):
                await backend.cancel(bad)
            with pytest.raises(SessionNotFound):
                await backend.reserve_upload(bad, 1)
    finally:
        await backend.aclose()


async def test_driver_errors_are_wrapped_and_never_show_the_secret() -> None:
    """An unreachable Redis raises BackendError from the driver's error, secret-free."""
    backend = RedisBackend.from_url(
        f"redis://:hunter2@127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5
    )
    secret = "ek_this-is-a-secret-value"
    try:
        for call in (
            backend.admit(secret),
            backend.lookup(secret),
            backend.create_session("u"),
            backend.sweep(10),
            backend.time_to_next_deadline(),
            backend.statistics(),
        ):
            with pytest.raises(BackendError) as raised:
                await call
            assert isinstance(raised.value.__cause__, redis.RedisError)
            assert secret not in str(raised.value)
            assert "hunter2" not in str(raised.value)
        assert "hunter2" not in repr(backend)
    finally:
        await backend.aclose()


async def test_attributes_must_be_json(backend: RedisBackend) -> None:
    """Attributes are stored as JSON: anything else is an InvalidParameter, nothing stored."""
    with pytest.raises(InvalidParameter) as raised:
        await backend.create_session("u", attributes={"when": object()})
    assert raised.value.param == "attributes"
    assert (await backend.statistics()).active == 0


async def test_capacity_counts_active_sessions(redis_url: str, clock: ManualClock) -> None:
    """max_sessions refuses one more active session; due ones free their place."""
    backend = ScratchRedisBackend.from_url(
        redis_url, clock=clock, key_prefix=scratch_prefix(), max_sessions=2
    )
    try:
        due = await backend.create_session("u", expires_after_s=5)
        cancelled = await backend.create_session("u", expires_after_s=100)
        with pytest.raises(CapacityExceeded):
            await backend.create_session("u")
        await backend.cancel(cancelled.id)
        await backend.create_session("u")
        with pytest.raises(CapacityExceeded):
            await backend.create_session("u")
        clock.advance(5)
        await backend.create_session("u")
        # The due session made room without being flipped behind the sweep's back.
        assert [item.session.id for item in await backend.sweep(10)] == [due.id]
    finally:
        await backend.aclose()


async def test_concurrent_sweepers_report_each_session_once(
    redis_url: str, clock: ManualClock
) -> None:
    """Several sweepers over one index (own clients, same prefix) flip each session once."""
    prefix = scratch_prefix()
    sweepers = [
        ScratchRedisBackend.from_url(redis_url, clock=clock, key_prefix=prefix, expiry_shards=4)
        for _ in range(4)
    ]
    try:
        ids = {(await sweepers[0].create_session("u", expires_after_s=1)).id for _ in range(120)}
        clock.advance(1)
        reported: list[str] = []

        async def sweep_until_empty(backend: RedisBackend) -> None:
            while flipped := await backend.sweep(7):
                reported.extend(item.session.id for item in flipped)

        async with anyio.create_task_group() as tg:
            for backend in sweepers:
                for _ in range(3):
                    tg.start_soon(sweep_until_empty, backend)
        assert sorted(reported) == sorted(ids)
        stats = await sweepers[1].statistics()
        assert (stats.active, stats.expired) == (0, 120)
    finally:
        for backend in sweepers:
            await backend.aclose()


async def test_a_dead_sweepers_claim_is_taken_over_after_its_lease(
    backend: RedisBackend, clock: ManualClock
) -> None:
    """A sweeper that claims and dies delays the flip by one lease; it still happens once."""
    session = await backend.create_session("u", expires_after_s=1)
    clock.advance(1)
    index = backend.keys.shard(backend.keys.shard_of(session.id))[0]
    claim = load_scripts()["claim"]
    now = str(round(clock.monotonic() * 1_000_000))
    # What a sweeper does before it dies: claim the entry under a 30 s lease.
    claimed = await backend.client.eval(claim.source, 1, index, now, 30_000_000, session.id)
    assert claimed == [session.id.encode()]
    assert await backend.sweep(10) == []
    assert (await backend.get(session.id)).status == "expired"  # enforcement never waits
    clock.advance(30)
    flipped = await backend.sweep(10)
    assert [item.session.id for item in flipped] == [session.id]
    assert flipped[0].lag_s == 30.0
    assert await backend.sweep(10) == []


async def test_admissions_from_many_tasks_never_exceed_the_limit(backend: RedisBackend) -> None:
    """Concurrent admissions on one session are serialized by Redis: exactly the limit."""
    session = await backend.create_session("u", max_requests_per_1_minute=25)
    secret = session.client_secret or ""
    allowed = 0

    async def hammer() -> None:
        nonlocal allowed
        for _ in range(10):
            decision = await backend.admit(secret)
            allowed += decision.allowed

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(hammer)
    assert allowed == 25


def test_key_prefix_must_not_hold_braces() -> None:
    """A brace in the prefix would move keys to another slot: refused."""
    client = redis.asyncio.Redis(port=free_port())
    for bad in ("", "a{b", "a}b"):
        with pytest.raises(ValueError, match="prefix"):
            RedisBackend(client, key_prefix=bad)


async def test_concurrent_admissions_share_writes(private_redis: RedisProcess) -> None:
    """Admissions of concurrent tasks travel in pipelines: fewer writes than decisions."""
    pool = redis.asyncio.ConnectionPool.from_url(
        private_redis.url, connection_class=CountingConnection
    )
    backend = RedisBackend(redis.asyncio.Redis.from_pool(pool), owns_client=True)
    try:
        session = await backend.create_session("u", max_requests_per_1_minute=30)
        secret = session.client_secret or ""
        await backend.admit(secret)  # warm
        CountingConnection.writes = 0
        decisions = []

        async def one() -> None:
            decisions.append(await backend.admit(secret))

        async with anyio.create_task_group() as tg:
            for _ in range(60):
                tg.start_soon(one)
        assert sum(d.allowed for d in decisions) == 29
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(29))
        assert CountingConnection.writes < 60
    finally:
        await backend.aclose()


async def test_pipelined_admissions_reload_scripts(private_redis: RedisProcess) -> None:
    """A SCRIPT FLUSH before a burst: every pipelined admission still gets its decision."""
    backend = RedisBackend.from_url(private_redis.url)
    try:
        session = await backend.create_session("u", max_requests_per_1_minute=20)
        secret = session.client_secret or ""
        await backend.client.script_flush()
        decisions = []

        async def one() -> None:
            decisions.append(await backend.admit(secret))

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(one)
        assert sum(d.allowed for d in decisions) == 20
        assert {d.reason for d in decisions} == {Reason.ALLOWED, Reason.RATE_LIMITED}
    finally:
        await backend.aclose()


async def test_pipelined_admissions_all_fail_as_backend_errors(
    private_redis: RedisProcess,
) -> None:
    """Redis gone under a burst: every waiting admission raises BackendError, none hangs."""
    backend = RedisBackend.from_url(private_redis.url, socket_connect_timeout=0.5)
    try:
        session = await backend.create_session("u")
        secret = session.client_secret or ""
        private_redis.kill()
        errors = []

        async def one() -> None:
            try:
                await backend.admit(secret)
            except BackendError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(one)
        assert len(errors) == 30
        assert all(isinstance(e.__cause__, redis.RedisError) for e in errors)
    finally:
        await backend.aclose()


async def test_concurrent_cancels_in_two_gates_are_counted_once(redis_url: str) -> None:
    """Two processes' gates cancelling one session at the same moment: one counts it."""
    prefix = scratch_prefix()
    first = ScratchRedisBackend.from_url(redis_url, key_prefix=prefix, expiry_shards=2)
    second = RedisBackend.from_url(redis_url, key_prefix=prefix, expiry_shards=2)
    gates = [Gate(first), Gate(second)]
    try:
        for _ in range(5):
            session = await gates[0].create_session("u")
            results = await asyncio.gather(*(gate.cancel(session.id) for gate in gates))
            assert [s.status for s in results] == ["cancelled", "cancelled"]
        counted = [gate.metrics.sessions_cancelled._value.get() for gate in gates]
        assert sum(counted) == 5, counted
        # The backend itself says which call changed the session.
        session = await first.create_session("u")
        assert (await first.cancel(session.id)).changed
        again = await second.cancel(session.id)
        assert not again.changed
        assert again.session.status == "cancelled"
    finally:
        await second.aclose()
        await first.aclose()


async def test_admit_session_returns_the_admitted_session_in_one_write(
    private_redis: RedisProcess,
) -> None:
    """admit_session: the decision and the session's limits and attributes, one round trip."""
    pool = redis.asyncio.ConnectionPool.from_url(
        private_redis.url, connection_class=CountingConnection
    )
    backend = RedisBackend(redis.asyncio.Redis.from_pool(pool), owns_client=True)
    try:
        created = await backend.create_session(
            "alice",
            max_requests_per_1_minute=1,
            file_upload=FileUploadLimits(enabled=True, max_files=3),
            attributes={"workflow": {"id": "wf_1"}, "note": "a b\nc"},
        )
        secret = created.client_secret or ""
        await backend.admit_session("ek_unknown")  # warm
        CountingConnection.writes = 0
        decision, session = await backend.admit_session(secret)
        assert CountingConnection.writes == 1
        assert decision.allowed
        assert decision.remaining == 0
        assert session is not None
        assert session == (await backend.get(created.id))
        assert session.user == "alice"
        assert session.status == "active"
        assert session.file_upload == FileUploadLimits(enabled=True, max_files=3)
        assert session.attributes == {"workflow": {"id": "wf_1"}, "note": "a b\nc"}
        assert session.client_secret is None
        refused, none = await backend.admit_session(secret)
        assert refused.reason is Reason.RATE_LIMITED
        assert none is None
        unknown, none = await backend.admit_session("ek_unknown")
        assert unknown.reason is Reason.UNKNOWN_SESSION
        assert none is None
    finally:
        await backend.aclose()


@pytest.mark.parametrize("pipeline", [True, False])
async def test_every_admission_path_decides_alike(redis_url: str, pipeline: bool) -> None:
    """Batched (admit_many) and one-by-one (admit.lua) admissions give the same decisions."""
    backend = ScratchRedisBackend.from_url(
        redis_url, key_prefix=scratch_prefix(), expiry_shards=2, pipeline_admissions=pipeline
    )
    try:
        session = await backend.create_session("u", max_requests_per_1_minute=3)
        secret = session.client_secret or ""
        decisions = await asyncio.gather(*(backend.admit(secret) for _ in range(5)))
        assert sorted((d.allowed, d.remaining) for d in decisions) == [
            (False, 0),
            (False, 0),
            (True, 0),
            (True, 1),
            (True, 2),
        ]
        refused = next(d for d in decisions if not d.allowed)
        assert refused.reason is Reason.RATE_LIMITED
        assert 59 < refused.retry_after <= 60
        assert refused.retry_after <= refused.reset_after <= 60
        _, none = await backend.admit_session(secret)
        assert none is None
        await backend.cancel(session.id)
        assert (await backend.admit(secret)).reason is Reason.CANCELLED
        assert (await backend.admit("ek_unknown")).reason is Reason.UNKNOWN_SESSION
    finally:
        await backend.aclose()
