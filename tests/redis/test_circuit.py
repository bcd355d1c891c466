"""The Redis backend's circuit breaker, against a real private redis-server paused with SIGSTOP.

No timing is asserted. While the circuit is open, calls must not reach Redis: a counting
connection records every command the client writes, and none but the probe's ``PING`` may be
written. Recovery is awaited with a liveness bound only.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import anyio
import pytest
import redis.asyncio
from prometheus_client import generate_latest

from ratekeeper import BackendError, Gate
from ratekeeper._gate import FAIL_OPEN_DECISION
from ratekeeper.redis import RedisBackend

from .servers import RedisProcess

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

# Short, so that opening the circuit costs the test little, yet far above a loopback reply
# on a loaded machine; generous liveness bounds below.
_SOCKET_TIMEOUT_S = 1.0
_LIVENESS_S = 30.0


class RecordingConnection(redis.asyncio.Connection):
    """A real connection that records the name of the first command of every write."""

    written: ClassVar[list[bytes]] = []

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        data = command if isinstance(command, bytes) else b"".join(command)
        # "*N\r\n$len\r\nNAME\r\n...": the first bulk string of each command is its name.
        for frame in data.split(b"\r\n*")[:1]:
            type(self).written.append(frame.split(b"\r\n")[2].upper())
        await super().send_packed_command(command, check_health)


def _scripts_written() -> int:
    return sum(name in (b"EVALSHA", b"EVAL") for name in RecordingConnection.written)


def _sample(gate: Gate, line_start: str) -> float:
    for line in generate_latest(gate.registry).decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {line_start}")


@pytest.fixture
async def backend(private_redis: RedisProcess) -> AsyncIterator[RedisBackend]:
    pool = redis.asyncio.ConnectionPool.from_url(
        private_redis.url,
        connection_class=RecordingConnection,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_SOCKET_TIMEOUT_S,
    )
    made = RedisBackend(
        redis.asyncio.Redis.from_pool(pool),
        circuit_failures=2,
        circuit_probe_interval_s=0.05,
        owns_client=True,
    )
    try:
        yield made
    finally:
        await made.aclose()


async def _until_admitted(gate: Gate, secret: str) -> None:
    """Retry until the gate admits again: the liveness bound is the only time limit."""
    with anyio.fail_after(_LIVENESS_S):
        while True:
            try:
                if (await gate.admit(secret)).allowed:
                    return
            except BackendError:
                pass
            await anyio.sleep(0.02)


async def test_a_hung_redis_opens_the_circuit_then_calls_fail_at_once(
    backend: RedisBackend, private_redis: RedisProcess
) -> None:
    """SIGSTOP: two timeouts open the circuit; later calls never reach Redis; SIGCONT closes it."""
    assert private_redis.process is not None
    pid = private_redis.process.pid
    closed = Gate(backend)
    opened = Gate(backend, fail_open=True)
    session = await backend.create_session("u", max_requests_per_1_minute=1_000)
    secret = session.client_secret or ""
    assert (await closed.admit(secret)).allowed
    assert _sample(closed, "ratekeeper_backend_circuit_open") == 0
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(2):  # each waits one socket timeout
            with pytest.raises(BackendError):
                await closed.admit(secret)
        assert backend.circuit_statistics().open
        scripts = _scripts_written()
        with anyio.fail_after(_LIVENESS_S):  # liveness only: these never wait for Redis
            for _ in range(50):
                with pytest.raises(BackendError):
                    await closed.admit(secret)
                assert await opened.admit(secret) is FAIL_OPEN_DECISION
                verdict = await closed.check(secret)
                assert verdict.status_code == 503
                with pytest.raises(BackendError):
                    await backend.create_session("v")
                with pytest.raises(BackendError):
                    await backend.sweep(10)
        assert _scripts_written() == scripts  # nothing but probes reached the socket
        assert _sample(closed, "ratekeeper_backend_circuit_open") == 1
        assert _sample(closed, 'ratekeeper_backend_circuit_transitions_total{to="open"}') == 1
        assert _sample(closed, "ratekeeper_backend_circuit_rejected_total") == 250
        assert _sample(opened, 'ratekeeper_decisions_total{outcome="fail_open"}') == 50
    finally:
        os.kill(pid, signal.SIGCONT)
    await _until_admitted(closed, secret)
    stats = backend.circuit_statistics()
    assert (stats.open, stats.opened, stats.closed) == (False, 1, 1)
    assert _sample(closed, 'ratekeeper_backend_circuit_transitions_total{to="closed"}') == 1
    assert (await opened.admit(secret)).allowed


async def test_refused_connections_do_not_open_the_circuit(
    backend: RedisBackend, private_redis: RedisProcess
) -> None:
    """A killed Redis fails at once anyway: the next request after a restart is served."""
    session = await backend.create_session("u")
    await anyio.to_thread.run_sync(private_redis.kill)
    for _ in range(10):
        with pytest.raises(BackendError):
            await backend.admit(session.client_secret or "")
    assert not backend.circuit_statistics().open
    await anyio.to_thread.run_sync(private_redis.start)
    fresh = await backend.create_session("u")  # the restarted server lost the first one
    assert (await backend.admit(fresh.client_secret or "")).allowed


async def test_a_breaker_set_to_zero_never_opens(private_redis: RedisProcess) -> None:
    """circuit_failures=0: every call on a hung Redis waits its timeout, as without a breaker."""
    assert private_redis.process is not None
    pid = private_redis.process.pid
    backend = RedisBackend.from_url(
        private_redis.url, socket_timeout=_SOCKET_TIMEOUT_S, circuit_failures=0
    )
    try:
        session = await backend.create_session("u")
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                with pytest.raises(BackendError, match="Timeout"):
                    await backend.admit(session.client_secret or "")
        finally:
            os.kill(pid, signal.SIGCONT)
        assert backend.circuit_statistics().opened == 0
    finally:
        await backend.aclose()
