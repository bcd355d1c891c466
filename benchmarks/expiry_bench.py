"""The sweeper under load: expiry lag, and the longest event-loop stall while sessions expire.

Two measurements, on asyncio, on this machine's real clocks:

* ``lag``: ``--sessions`` (100,000) sessions whose lifetimes spread over a few seconds
  (``expires_after`` of 1..``--spread`` s, created as fast as the engine allows). An expiry
  callback records each flip's ``lag_s`` (deadline to flip); the loop is otherwise idle.
  Because ``expires_at`` is a whole Unix second, every session created within the same wall
  second with the same lifetime shares one deadline: they fall due in clumps at second
  boundaries, and the report gives the clump sizes, since they decide the tail.
* ``stall``: ``--stall-sessions`` (1,000,000) sessions on a manual clock, all made due at
  once by advancing it, then swept by the running sweeper while a heartbeat task measures the
  gaps between its turns on the event loop: the longest gap is the longest stall. Gaps are
  reported in wall time and in process CPU time (which leaves out time the OS gave to other
  processes, the noise on a shared machine).

Run: ``.venv/bin/python benchmarks/expiry_bench.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections import Counter

import anyio

from ratekeeper import Engine, Gate, ManualClock
from ratekeeper.engine import Expired


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_lag(sessions: int, spread: int, batch: int) -> None:
    engine = Engine(max_sessions=max(sessions, 1))
    gate = Gate(engine, sweep_batch=batch, poll_interval_s=1.0)
    lags: list[float] = []
    done = anyio.Event()

    def record(item: Expired) -> None:
        lags.append(item.lag_s)
        if len(lags) == sessions:
            done.set()

    gate.on_expire(record)
    async with gate:
        for n in range(sessions):
            # Lifetimes from 3 s: creation (about a second) is over before the first deadline.
            await gate.create_session(f"u{n}", expires_after_s=3 + n % spread)
            if n % 1000 == 0:
                await anyio.lowlevel.checkpoint()  # let the sweeper run, as real traffic would
        clumps = Counter(engine.get(sid).expires_at for sid in list(engine._by_id))
        gc.collect()
        gc.freeze()
        await done.wait()
    ms = [lag * 1000 for lag in lags]
    print(f"lag: {sessions} sessions, lifetimes 3..{2 + spread} s, sweep_batch={batch}")
    print(f"  clumps (sessions sharing a deadline): {sorted(clumps.values(), reverse=True)}")
    print(
        f"  lag p50 {percentile(ms, 0.50):.2f} ms, p90 {percentile(ms, 0.90):.2f} ms, "
        f"p99 {percentile(ms, 0.99):.2f} ms, max {max(ms):.2f} ms; "
        f"first batch of a clump: p99 {percentile(ms[:batch], 0.99):.2f} ms"
    )


async def measure_stall(sessions: int, batch: int) -> None:
    clock = ManualClock()
    engine = Engine(clock, max_sessions=sessions)
    gate = Gate(engine, sweep_batch=batch, poll_interval_s=0.01)
    flipped = 0

    def count(item: Expired) -> None:
        nonlocal flipped
        flipped += 1

    for n in range(sessions):
        engine.create_session(f"u{n}", expires_after_s=600)
    gc.collect()
    gc.freeze()  # a million live records: keep the collector's full passes out of the figure
    gaps: list[float] = []
    cpu_gaps: list[float] = []
    async with gate:
        gate.on_expire(count)
        clock.advance(600)  # every session is due now
        start = time.perf_counter()
        last, last_cpu = start, time.process_time()
        while flipped < sessions:
            await anyio.lowlevel.checkpoint()
            now, now_cpu = time.perf_counter(), time.process_time()
            gaps.append(now - last)
            cpu_gaps.append(now_cpu - last_cpu)
            last, last_cpu = now, now_cpu
        elapsed = time.perf_counter() - start
    ms = [gap * 1000 for gap in gaps]
    cpu_ms = [gap * 1000 for gap in cpu_gaps]
    print(f"stall: {sessions} sessions due at once, sweep_batch={batch}")
    print(
        f"  swept in {elapsed:.2f} s ({sessions / elapsed:,.0f} sessions/s); "
        f"heartbeat gaps: {len(ms)}, median {statistics.median(ms):.3f} ms, "
        f"p99 {percentile(ms, 0.99):.3f} ms, longest {max(ms):.3f} ms"
    )
    # CPU time excludes moments the OS ran other processes: on a shared machine it shows the
    # work one step of the sweeper really holds the loop for.
    print(
        f"  same gaps in process CPU time: median {statistics.median(cpu_ms):.3f} ms, "
        f"p99 {percentile(cpu_ms, 0.99):.3f} ms, longest {max(cpu_ms):.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--spread", type=int, default=4, help="lifetimes 1..SPREAD seconds")
    parser.add_argument("--stall-sessions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500, help="the gate's sweep_batch")
    parser.add_argument("--only", choices=["lag", "stall"])
    args = parser.parse_args()
    if args.only != "stall":
        asyncio.run(measure_lag(args.sessions, args.spread, args.batch))
    if args.only != "lag":
        asyncio.run(measure_stall(args.stall_sessions, args.batch))


if __name__ == "__main__":
    main()
