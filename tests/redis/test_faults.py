"""Redis failures seen through the real service: kill, hang, restart and SCRIPT FLUSH.

Each test owns a private redis-server and runs ``python -m ratekeeper serve`` on it, then
drives ``/ratekeeper/admit`` over real HTTP. Every request must get the configured failure
mode (503 ``backend_unavailable`` failing closed, 200 failing open) — no other status, no
exception, no hang: the client's own timeout turns a hang into a failure — and the service
must recover once Redis is back, without a restart. The session store of a private server
does not persist (``--save "" --appendonly no``), so sessions made before a restart are gone
after it; recovery is shown on new sessions.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio

from .servers import RedisProcess
from .service import ServiceProcess

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def _admit_client(service: ServiceProcess, secret: str) -> httpx.AsyncClient:
    # Far above the backend's 2 s socket timeout: a hang fails the test instead of passing.
    return httpx.AsyncClient(
        base_url=service.url, headers={"Authorization": f"Bearer {secret}"}, timeout=15.0
    )


def _assert_unavailable_status(status: int) -> None:
    assert status == 503, status


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "backend_unavailable"
    assert set(error) == {"message", "type", "param", "code"}


async def test_killed_redis_fails_closed_then_recovers(private_redis: RedisProcess) -> None:
    """Kill Redis under load: every request is answered 200 or 503; restart: it recovers."""
    with ServiceProcess(private_redis.url) as service:
        session = service.create_session(limit=100_000)
        statuses: list[int] = []
        killed = False
        async with _admit_client(service, session["client_secret"]) as client:

            async def hammer() -> None:
                nonlocal killed
                for _ in range(30):
                    response = await client.post("/ratekeeper/admit")
                    statuses.append(response.status_code)
                    if response.status_code != 200:
                        _assert_unavailable(response)
                    if len(statuses) >= 40 and not killed:
                        killed = True
                        await anyio.to_thread.run_sync(private_redis.kill)

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(hammer)
            assert len(statuses) == 240
            assert set(statuses) == {200, 503}
            _assert_unavailable(await client.post("/ratekeeper/admit"))
            assert service.metric("ratekeeper_decisions_total", outcome="fail_closed") >= 1
            with service.rest() as rest:
                down = rest.post(
                    "/v1/chatkit/sessions", json={"user": "u", "workflow": {"id": "wf"}}
                )
            assert down.status_code == 503

            await anyio.to_thread.run_sync(private_redis.start)
            # The restarted server knows neither the old session nor any script.
            assert (await client.post("/ratekeeper/admit")).status_code == 401
        fresh = service.create_session(limit=2)
        async with _admit_client(service, fresh["client_secret"]) as client:
            codes = [(await client.post("/ratekeeper/admit")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]


async def test_killed_redis_fails_open_when_configured(private_redis: RedisProcess) -> None:
    """Failing open, requests are admitted while Redis is down, and counted as fail_open."""
    with ServiceProcess(private_redis.url, fail_open=True) as service:
        session = service.create_session(limit=2)
        async with _admit_client(service, session["client_secret"]) as client:
            codes = [(await client.post("/ratekeeper/admit")).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            await anyio.to_thread.run_sync(private_redis.kill)
            during = [(await client.post("/ratekeeper/admit")).status_code for _ in range(10)]
            assert during == [200] * 10
            assert service.metric("ratekeeper_decisions_total", outcome="fail_open") == 10
            await anyio.to_thread.run_sync(private_redis.start)
        fresh = service.create_session(limit=1)
        async with _admit_client(service, fresh["client_secret"]) as client:
            codes = [(await client.post("/ratekeeper/admit")).status_code for _ in range(2)]
        assert codes == [200, 429]


async def test_hung_redis_times_out_to_503_then_recovers(private_redis: RedisProcess) -> None:
    """A Redis that stops answering (SIGSTOP) costs a socket timeout, never a hang."""
    assert private_redis.process is not None
    pid = private_redis.process.pid
    with ServiceProcess(private_redis.url) as service:
        session = service.create_session(limit=1_000)
        async with _admit_client(service, session["client_secret"]) as client:
            assert (await client.post("/ratekeeper/admit")).status_code == 200
            os.kill(pid, signal.SIGSTOP)
            try:
                responses: list[httpx.Response] = []

                async def one() -> None:
                    responses.append(await client.post("/ratekeeper/admit"))

                async with anyio.create_task_group() as tg:
                    for _ in range(12):
                        tg.start_soon(one)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert len(responses) == 12
            for response in responses:
                _assert_unavailable(response)
            assert (await client.post("/ratekeeper/admit")).status_code == 200


async def test_script_flush_mid_run_changes_no_decision(private_redis: RedisProcess) -> None:
    """SCRIPT FLUSH during load: scripts reload, no 503, exactly the limit admitted."""
    flusher: Any = redis.asyncio.Redis.from_url(private_redis.url)
    try:
        with ServiceProcess(private_redis.url) as service:
            session = service.create_session(limit=50)
            statuses: list[int] = []
            async with _admit_client(service, session["client_secret"]) as client:

                async def hammer() -> None:
                    for _ in range(20):
                        statuses.append((await client.post("/ratekeeper/admit")).status_code)
                        if len(statuses) % 20 == 0:
                            await flusher.script_flush()

                async with anyio.create_task_group() as tg:
                    for _ in range(6):
                        tg.start_soon(hammer)
            # All 120 requests fall within one minute of each other: one window.
            assert statuses.count(200) == 50
            assert statuses.count(429) == 70
    finally:
        await flusher.aclose()


async def test_chatkit_while_redis_is_down_is_counted_as_what_the_client_got(
    private_redis: RedisProcess,
) -> None:
    """Failing open, `POST /chatkit` cannot be served without its session: 503, fail_closed."""
    with ServiceProcess(private_redis.url, fail_open=True) as service:
        session = service.create_session(limit=100)
        body = {"type": "threads.list", "params": {}}
        async with _admit_client(service, session["client_secret"]) as client:
            assert (await client.post("/chatkit", json=body)).status_code == 200
            await anyio.to_thread.run_sync(private_redis.kill)
            response = await client.post("/chatkit", json=body)
            _assert_unavailable(response)
            # The admission the client never got is not counted as one.
            assert service.metric("ratekeeper_decisions_total", outcome="fail_open") == 0
            assert service.metric("ratekeeper_decisions_total", outcome="fail_closed") == 1
            # /ratekeeper/admit, which needs no session to serve, still fails open.
            assert (await client.post("/ratekeeper/admit")).status_code == 200
            assert service.metric("ratekeeper_decisions_total", outcome="fail_open") == 1


async def test_hung_redis_opens_the_circuit_and_requests_are_answered_at_once(
    private_redis: RedisProcess,
) -> None:
    """SIGSTOP: after 2 timeouts the service answers 503 without asking Redis; SIGCONT heals."""
    assert private_redis.process is not None
    pid = private_redis.process.pid
    flags = ("--redis-circuit-failures", "2", "--redis-circuit-probe-interval", "0.1")
    with ServiceProcess(private_redis.url, extra=flags) as service:
        session = service.create_session(limit=1_000)
        async with _admit_client(service, session["client_secret"]) as client:
            assert (await client.post("/ratekeeper/admit")).status_code == 200
            os.kill(pid, signal.SIGSTOP)
            try:
                for _ in range(2):  # each waits the 2 s socket timeout
                    _assert_unavailable(await client.post("/ratekeeper/admit"))
                assert service.metric("ratekeeper_backend_circuit_open") == 1
                rejected = service.metric("ratekeeper_backend_circuit_rejected_total")
                # Answered while Redis is still stopped: none of these reached it.
                for _ in range(20):
                    _assert_unavailable(await client.post("/ratekeeper/admit"))
                after = service.metric("ratekeeper_backend_circuit_rejected_total")
                assert after - rejected >= 20
            finally:
                os.kill(pid, signal.SIGCONT)
            with anyio.fail_after(30):  # liveness only: the probe closes the circuit
                status = (await client.post("/ratekeeper/admit")).status_code
                while status != 200:
                    _assert_unavailable_status(status)
                    await anyio.sleep(0.05)
                    status = (await client.post("/ratekeeper/admit")).status_code
            assert service.metric("ratekeeper_backend_circuit_open") == 0
            assert service.metric("ratekeeper_backend_circuit_transitions_total", to="closed") == 1
