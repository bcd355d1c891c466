"""Round trips on the wire: commands the real service sends to Redis, counted by Redis itself.

``MONITOR`` on a private ``redis-server`` lists every command a client sends (a script's own
calls are marked ``lua`` and left out). Commands about one session all name its keys, which
carry its id, so the service's sweeper and gauges (shard keys only) do not disturb the count.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import redis

from .servers import RedisProcess
from .service import ServiceProcess

pytestmark = [pytest.mark.redis]

_END = "rk-round-trips-end"


@contextmanager
def _monitor(url: str) -> Iterator[list[str]]:
    """Collect the top-level commands other clients send while the block runs."""
    commands: list[str] = []
    ready = threading.Event()
    client = redis.Redis.from_url(url, socket_timeout=10)

    def watch() -> None:
        with client.monitor() as monitor:
            ready.set()
            while True:
                entry = monitor.next_command()
                if entry["command"] == f"ECHO {_END}":
                    return
                if entry["client_type"] != "lua":
                    commands.append(entry["command"])

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        # MONITOR is attached once it relays a command sent after it.
        with redis.Redis.from_url(url) as probe:
            while not any(c == "PING" for c in commands):
                probe.ping()
                threading.Event().wait(0.01)
        yield commands
    finally:
        with redis.Redis.from_url(url) as ender:
            ender.echo(_END)
        thread.join(10)
        client.close()


def test_a_guarded_chatkit_request_is_one_round_trip(private_redis: RedisProcess) -> None:
    """`POST /chatkit` on Redis: one command for the session (admission with its limits)."""
    with ServiceProcess(private_redis.url) as service:
        session = service.create_session(limit=100)
        headers = {"Authorization": f"Bearer {session['client_secret']}"}
        body = {"type": "threads.list", "params": {}}
        with httpx.Client(base_url=service.url, headers=headers, timeout=15.0) as client:
            assert client.post("/chatkit", json=body).status_code == 200  # warm: scripts
            with _monitor(private_redis.url) as commands:
                response = client.post("/chatkit", json=body)
                assert response.status_code == 200
                assert response.headers["x-ratelimit-remaining-requests"] == "98"
        mine = [c for c in commands if session["id"] in c]
        assert len(mine) == 1, mine
