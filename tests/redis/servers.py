"""Real Redis servers for the tests: private ``redis-server`` processes, started and owned here.

Where Redis comes from, in order:

1. ``REDIS_URL`` (and ``REDIS_CLUSTER_URL`` for the cluster cases), when set;
2. a private ``redis-server`` on a free loopback port (``--save "" --appendonly no``), and for
   the cluster three of them with ``--cluster-enabled yes``, joined by ``redis-cli --cluster
   create``;
3. otherwise the test is skipped with the reason, except when ``CI`` is set: then a missing
   Redis fails the run, so a CI job can never pass by skipping every Redis case.

Shared servers are started on first use and stopped when the test process exits. Every backend
a test makes gets its own key prefix and deletes its keys when closed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from ratekeeper._clock import ManualClock
from ratekeeper.redis import RedisBackend
from tests.requirements import find_program
from tests.service import free_port

__all__ = (
    "RedisCluster",
    "RedisProcess",
    "ScratchRedisBackend",
    "free_port",
    "make_redis",
    "make_redis_cluster",
    "require_binary",
    "scratch_prefix",
    "shared_cluster_url",
    "shared_redis_url",
)

# Startup is polled against real processes; the bound only turns a broken server into an error.
_READY_TIMEOUT_S = 10.0


def require_binary(name: str) -> str:
    """Return the path of ``name``, or skip (fail when ``CI`` is set) if it is not installed."""
    return find_program(
        name, hint="and REDIS_URL is not set: cannot run Redis tests", places=(f"/usr/bin/{name}",)
    )


class RedisProcess:
    """One private ``redis-server`` on loopback that a test owns: start, kill, restart, stop.

    Not thread-safe; a test fixture drives it.
    """

    def __init__(self, *, port: int | None = None, cluster: bool = False) -> None:
        self.binary = require_binary("redis-server")
        self.port = port if port is not None else free_port()
        self.cluster = cluster
        self.dir = Path(tempfile.mkdtemp(prefix="rk-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's ``redis://`` URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        """Start the server and return once it answers ``PING``."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
        ]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{self.port}.conf",
                "--cluster-node-timeout",
                "2000",
                # The bus port defaults to port + 10000, which may be taken or out of range.
                "--cluster-port",
                str(free_port()),
            ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _READY_TIMEOUT_S
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                try:
                    client.ping()
                    return self
                except redis.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"redis-server on port {self.port} did not start"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """Kill the server abruptly (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCluster:
    """Three private cluster-mode ``redis-server`` processes joined into one cluster.

    Not thread-safe; a test fixture drives it.
    """

    def __init__(self, size: int = 3) -> None:
        self.cli = require_binary("redis-cli")
        self.nodes = [RedisProcess(cluster=True) for _ in range(size)]

    @property
    def url(self) -> str:
        """A ``redis://`` URL of one node (the client discovers the rest)."""
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        """Start every node, create the cluster, and return once every slot is served."""
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{node.port}" for node in self.nodes),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=_READY_TIMEOUT_S,
            )
            deadline = time.monotonic() + _READY_TIMEOUT_S
            for node in self.nodes:
                client = redis.Redis(port=node.port)
                try:
                    while client.cluster("INFO").get("cluster_state") != "ok":
                        if time.monotonic() > deadline:
                            raise RuntimeError("the test cluster did not reach cluster_state:ok")
                        time.sleep(0.05)
                finally:
                    client.close()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


_shared: dict[str, Any] = {}


def _stop_shared() -> None:
    for server in _shared.values():
        if isinstance(server, RedisProcess | RedisCluster):
            server.stop()
    _shared.clear()


def shared_redis_url() -> str:
    """Return ``REDIS_URL``, or the URL of this test process's private ``redis-server``."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url
    if "standalone" not in _shared:
        if not _shared:
            atexit.register(_stop_shared)
        _shared["standalone"] = RedisProcess().start()
    return str(_shared["standalone"].url)


def shared_cluster_url() -> str:
    """Return ``REDIS_CLUSTER_URL``, or a node URL of this test process's private cluster."""
    url = os.environ.get("REDIS_CLUSTER_URL")
    if url:
        return url
    if "cluster" not in _shared:
        if not _shared:
            atexit.register(_stop_shared)
        _shared["cluster"] = RedisCluster().start()
    return str(_shared["cluster"].url)


class ScratchRedisBackend(RedisBackend):
    """A :class:`RedisBackend` under a fresh key prefix that deletes its keys when closed."""

    async def aclose(self) -> None:
        """Delete every key under this backend's prefix, then close."""
        client = self.client
        with contextlib.suppress(redis.RedisError):
            keys = [key async for key in client.scan_iter(match=f"{self.keys.prefix}:*")]
            for key in keys:
                await client.delete(key)
        await super().aclose()


def scratch_prefix() -> str:
    """Return a key prefix no other test uses."""
    return f"rktest-{secrets.token_hex(6)}"


async def make_redis(clock: ManualClock | None, options: dict[str, Any]) -> RedisBackend:
    """Contract-suite maker: a scratch backend on the shared standalone Redis."""
    return ScratchRedisBackend.from_url(
        shared_redis_url(),
        clock=clock,
        key_prefix=scratch_prefix(),
        **{"expiry_shards": 4, **options},
    )


async def make_redis_cluster(clock: ManualClock | None, options: dict[str, Any]) -> RedisBackend:
    """Contract-suite maker: a scratch backend on the shared three-node cluster."""
    return ScratchRedisBackend.from_url(
        shared_cluster_url(),
        cluster=True,
        clock=clock,
        key_prefix=scratch_prefix(),
        **{"expiry_shards": 4, **options},
    )
