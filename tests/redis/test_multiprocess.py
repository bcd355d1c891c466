"""Several processes, one Redis: the limit holds across workers, and expiry is counted once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import psutil
import pytest
import redis

from ratekeeper import ManualClock
from ratekeeper.redis import RedisBackend

from .servers import RedisProcess, scratch_prefix
from .service import ServiceProcess

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

_ROOT = Path(__file__).resolve().parents[2]
_START = 1_700_000_000.0


def _serving_workers(service: ServiceProcess) -> set[int]:
    """Pids of the service's processes holding accepted HTTP connections."""
    assert service.process is not None
    pids = set()
    for proc in psutil.Process(service.process.pid).children(recursive=True):
        try:
            connections = proc.net_connections(kind="tcp")
        except psutil.Error:
            continue
        if any(c.laddr.port == service.port and c.status == "ESTABLISHED" for c in connections):
            pids.add(proc.pid)
    return pids


async def test_two_workers_never_admit_more_than_the_limit(private_redis: RedisProcess) -> None:
    """`serve --workers 2`: concurrent requests on one session, across both workers."""
    with ServiceProcess(private_redis.url, workers=2) as service:
        session = service.create_session(limit=30)
        headers = {"Authorization": f"Bearer {session['client_secret']}"}
        clients: list[httpx.AsyncClient] = []
        try:
            # Open keep-alive connections until both workers hold some (the kernel picks
            # which worker accepts each one), so the load below really spans the workers.
            while len(clients) < 16 or len(_serving_workers(service)) < 2:
                assert len(clients) < 200, "the second worker never accepted a connection"
                client = httpx.AsyncClient(base_url=service.url, headers=headers, timeout=15.0)
                clients.append(client)
                assert (await client.get("/healthz")).status_code == 200
            statuses: list[int] = []

            async def hammer(client: httpx.AsyncClient) -> None:
                for _ in range(8):
                    statuses.append((await client.post("/ratekeeper/admit")).status_code)

            async with anyio.create_task_group() as tg:
                for client in clients:
                    tg.start_soon(hammer, client)
            assert len(_serving_workers(service)) == 2
        finally:
            for client in clients:
                await client.aclose()
        # Every request fell within one minute of the first: one window, so exactly the limit.
        assert statuses.count(200) == 30
        assert statuses.count(429) == len(statuses) - 30


def test_expired_sessions_are_flipped_and_counted_once_across_processes(redis_url: str) -> None:
    """Three processes run a gate's sweeper on one index: each session is counted once."""
    prefix = scratch_prefix()
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.redis.sweeper_process",
                redis_url,
                prefix,
                str(_START),
                "5",
            ],
            cwd=_ROOT,
            stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    client = redis.Redis.from_url(redis_url)
    try:

        async def create() -> set[str]:
            # Sessions of 1 s on the same manual time line: due for the sweepers at once.
            backend = RedisBackend.from_url(
                redis_url, clock=ManualClock(_START), key_prefix=prefix, expiry_shards=4
            )
            try:
                return {
                    (await backend.create_session("u", expires_after_s=1)).id for _ in range(300)
                }
            finally:
                await backend.aclose()

        created = anyio.run(create)
        client.set(f"{prefix}:done", 1, ex=600)
        reports = []
        for process in processes:
            out, _ = process.communicate(timeout=60)
            assert process.returncode == 0
            reports.append(json.loads(out))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
    flipped = [sid for report in reports for sid in report["ids"]]
    assert sorted(flipped) == sorted(created)
    assert sum(report["counted"] for report in reports) == 300
    for report in reports:
        assert report["counted"] == len(report["ids"])
