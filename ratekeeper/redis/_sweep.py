"""The shared expiry sweep over the sharded index: any number of processes, each session once.

A sweep is four pipelined steps, each one script per shard or per session (one slot each):

1. *peek*: every shard purges ended sessions past retention and lists its due entries;
2. *claim*: the earliest ``max_items`` are claimed under a lease (their score moves to
   ``now + lease``), so concurrent sweepers skip them;
3. *flip*: on each session's own slot, ``active`` becomes ``expired`` — only that transition
   reports, so a session is reported once whoever reaches it;
4. *acknowledge*: each shard drops its settled entries and schedules their purge.

A sweeper that dies after claiming delays those flips by one lease, then another claims them.
"""

from __future__ import annotations

from typing import Any

from .._types import EngineStatistics, Expired
from ._keys import KeySpace
from ._replies import US, snapshot, text
from ._scripts import Call, ScriptRunner

#: Most sessions one sweep call flips: keeps every script short (Redis is single-threaded).
MAX_SWEEP_BATCH = 1_000
#: Most ended sessions one shard purges per sweep call.
MAX_PURGE_BATCH = 1_000


def _first(pair: tuple[int, Expired]) -> int:
    return pair[0]


class SharedSweep:
    """Sweeps, deadlines and counts over the expiry index shards of one key space.

    Args:
        runner: runs the scripts.
        keys: the key space.
        retention_us: how long ended sessions are kept, in microseconds (text).
        lease_us: how long a claim lasts, in microseconds (text).
        margin_ms: extra real-time TTL beyond each logical deadline, in milliseconds (text).

    No state of its own; use it from the runner's event loop.
    """

    __slots__ = ("_lease_us", "_margin_ms", "_retention_us", "keys", "runner")

    def __init__(
        self, runner: ScriptRunner, keys: KeySpace, retention_us: str, lease_us: str, margin_ms: str
    ) -> None:
        self.runner = runner
        self.keys = keys
        self._retention_us = retention_us
        self._lease_us = lease_us
        self._margin_ms = margin_ms

    async def sweep(self, now: str, max_items: int) -> list[Expired]:
        """Flip at most ``max_items`` due sessions as of ``now``; earliest deadline first."""
        keys = self.keys
        scripts = self.runner.scripts
        run = self.runner.eval_many
        batch = max(0, min(max_items, MAX_SWEEP_BATCH))
        peeks = await run(
            [
                (scripts["peek"], keys.shard(i), (now, batch, MAX_PURGE_BATCH))
                for i in range(keys.shards)
            ]
        )
        purged: list[Call] = []
        due: list[tuple[int, int, str]] = []
        for shard, (gone, pairs) in enumerate(peeks):
            purged.extend((None, ("DEL", *keys.session(text(sid))), ()) for sid in gone)
            due.extend(
                (int(float(pairs[i + 1])), shard, text(pairs[i])) for i in range(0, len(pairs), 2)
            )
        await run(purged)
        if not due or batch == 0:
            return []
        due.sort()
        by_shard: dict[int, list[str]] = {}
        for _, shard, sid in due[:batch]:
            by_shard.setdefault(shard, []).append(sid)
        shards = list(by_shard)
        claims = await run(
            [
                (scripts["claim"], keys.shard(s)[:1], (now, self._lease_us, *by_shard[s]))
                for s in shards
            ]
        )
        claimed = [(s, text(sid)) for s, ids in zip(shards, claims, strict=True) for sid in ids]
        flips = await run(
            [
                (scripts["flip"], keys.session(sid), (now, self._retention_us, self._margin_ms))
                for _, sid in claimed
            ]
        )
        flipped: list[tuple[int, Expired]] = []
        settle: dict[int, tuple[list[str], list[str], list[str]]] = {}
        for (shard, sid), reply in zip(claimed, flips, strict=True):
            done, dropped, restore = settle.setdefault(shard, ([], [], []))
            if reply[0] == 1:
                _, deadline_us, expires_at, created_us, meta, limit, flip_now = reply
                session = snapshot(sid, "expired", expires_at, created_us, meta, limit)
                flipped.append((deadline_us, Expired(session, (flip_now - deadline_us) / US)))
                done.append(sid)
            elif reply[0] == 2:
                # Not due on the session node's clock yet (cluster clocks differ): put back.
                restore.extend((sid, str(reply[1])))
            else:
                dropped.append(sid)  # cancelled, already expired, or gone
        await run([self._ack(now, s, *lists) for s, lists in settle.items()])
        flipped.sort(key=_first)
        return [expired for _, expired in flipped]

    def _ack(
        self, now: str, shard: int, done: list[str], dropped: list[str], restore: list[str]
    ) -> Call:
        args: list[Any] = [now, self._retention_us, self._margin_ms, len(done), len(dropped)]
        return (
            self.runner.scripts["ack"],
            self.keys.shard(shard)[:2],
            args + done + dropped + restore,
        )

    async def time_to_next_deadline(self, now: str) -> float | None:
        """Seconds until a sweep has work as of ``now`` (<= 0: now), ``None`` if never."""
        script = self.runner.scripts["next"]
        replies = await self.runner.eval_many(
            [(script, self.keys.shard(i), (now,)) for i in range(self.keys.shards)]
        )
        waits = [reply for reply in replies if reply is not None]
        return min(waits) / US if waits else None

    async def live_count(self, now: str) -> int:
        """Count active sessions whose deadline is still ahead of ``now``, over every shard."""
        script = self.runner.scripts["count"]
        counts = await self.runner.eval_many(
            [(script, self.keys.shard(i)[:1], (now,)) for i in range(self.keys.shards)]
        )
        return sum(counts)

    async def statistics(self) -> EngineStatistics:
        """Count active sessions, and ended ones still retained, across every shard."""
        calls: list[Call] = []
        for i in range(self.keys.shards):
            calls.extend((None, ("ZCARD", key), ()) for key in self.keys.shard(i))
        counts = await self.runner.eval_many(calls)
        return EngineStatistics(sum(counts[0::3]), sum(counts[1::3]), sum(counts[2::3]))
