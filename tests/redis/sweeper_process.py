"""A gate's expiry sweeper in a process of its own, for the multi-process test.

Run as ``python -m tests.redis.sweeper_process URL PREFIX START AHEAD_S``: sweeps the sessions
under ``PREFIX`` with a :class:`~ratekeeper.Gate` on a manual clock ``AHEAD_S`` seconds
past ``START`` (so every session is due), until the key ``PREFIX:done`` exists and no session
is active; then prints ``{"ids": [...flipped by this process], "counted": <metric>}``.
"""

from __future__ import annotations

import json
import sys

import anyio

from ratekeeper import Gate, ManualClock
from ratekeeper._types import Expired
from ratekeeper.redis import RedisBackend

# A bound, so a broken run ends (and fails) instead of hanging: 3000 polls of 10 ms.
_MAX_POLLS = 3000


async def main(url: str, prefix: str, start: float, ahead_s: float) -> None:
    clock = ManualClock(start)
    clock.advance(ahead_s)
    backend = RedisBackend.from_url(url, clock=clock, key_prefix=prefix, expiry_shards=4)
    flipped: list[str] = []

    def record(item: Expired) -> None:
        flipped.append(item.session.id)

    gate = Gate(backend, sweep_batch=5, poll_interval_s=0.01, on_expire=[record])
    try:
        async with gate:
            for _ in range(_MAX_POLLS):
                done = await backend.client.exists(f"{prefix}:done")
                if done and (await backend.statistics()).active == 0:
                    break
                await anyio.sleep(0.01)
        counted = gate.registry.get_sample_value("ratekeeper_sessions_expired_total") or 0.0
        print(json.dumps({"ids": flipped, "counted": counted}))
    finally:
        await backend.aclose()


if __name__ == "__main__":
    url, prefix, start, ahead = sys.argv[1:5]
    anyio.run(main, url, prefix, float(start), float(ahead))
