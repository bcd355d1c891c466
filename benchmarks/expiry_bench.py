"""The sweeper under load: expiry lag, and the longest event-loop stall while sessions expire.

Two measurements, on asyncio, on this machine's real clocks:

* ``lag``: ``--sessions`` (100,000) sessions whose lifetimes spread over a few seconds
  (``expires_after`` of 3..``2 + --spread`` s, created as fast as the gate allows). Because
  ``expires_at`` is a whole Unix second, every session created within the same wall second
  with the same lifetime shares one deadline: they fall due in clumps at second boundaries,
  and the report gives the clump sizes, since they decide the tail. The lag is measured two
  ways (``--mode``):

  - ``callback``: an expiry callback records each session's ``lag_s`` (deadline to flip) and
    also when it was itself called (``delivery``: deadline to the callback running);
  - ``statistics``: no callback; a task watches ``Engine.statistics().active`` at every turn
    of the event loop, and each session's lag is from its deadline to the turn at which the
    count dropped past it (sessions taken earliest deadline first).

* ``stall``: ``--stall-sessions`` (1,000,000) sessions on a manual clock, all made due at
  once by advancing it, then swept by the running sweeper while a heartbeat task measures the
  gaps between its turns on the event loop: the longest gap is the longest stall. Gaps are
  reported in wall time and in process CPU time (which leaves out time the OS gave to other
  processes, the noise on a shared machine).

``--baseline-src PATH`` runs every measurement in fresh subprocesses, the code at ``PATH``
(``PYTHONPATH``) and this checkout alternately, ``--rounds`` times, and prints medians with
the spread (min-max) of the rounds.

Run: ``.venv/bin/python benchmarks/expiry_bench.py --only lag --baseline-src /work/base``
(``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(ms, 0.50),
        "p90": percentile(ms, 0.90),
        "p99": percentile(ms, 0.99),
        "max": max(ms),
    }


async def measure_lag(sessions: int, spread: int, batch: int, mode: str) -> dict[str, Any]:
    from ratekeeper import Engine, Gate

    engine = Engine(max_sessions=max(sessions, 1))
    gate = Gate(engine, sweep_batch=batch, poll_interval_s=1.0)
    monotonic = engine.clock.monotonic
    deadline_of: dict[str, float] = {}
    lags: list[float] = []
    delivery: list[float] = []
    done = anyio.Event()

    def record(item: Any) -> None:  # the "no-op" callback: it only writes down what it got
        lags.append(item.lag_s)
        delivery.append(monotonic() - deadline_of[item.session.id])
        if len(lags) == sessions:
            done.set()

    if mode == "callback":
        gate.on_expire(record)
    async with gate:
        started = time.perf_counter()
        for n in range(sessions):
            # Lifetimes from 3 s: creation (about a second) is over before the first deadline.
            session = await gate.create_session(f"u{n}", expires_after_s=3 + n % spread)
            # The engine's own deadline, read from its record (every version benchmarked
            # keeps one under _by_id). Estimating it from a monotonic() read before the call
            # came out early by whatever ran in between (a GC pass: ~17 ms, once in 100,000).
            deadline_of[session.id] = engine._by_id[session.id].deadline
            if n % 1000 == 0:
                await anyio.lowlevel.checkpoint()  # let the sweeper run, as real traffic would
        create_s = time.perf_counter() - started
        first_due = min(deadline_of.values()) - monotonic()
        clumps = Counter(round(d) for d in deadline_of.values())
        gc.collect()
        gc.freeze()
        if mode == "callback":
            await done.wait()
            ms = [lag * 1000 for lag in lags]
        else:
            drops: list[tuple[float, int]] = []
            active = engine.statistics().active
            seen = sessions - active  # flipped before the watch began (late creation)
            drops.append((monotonic(), seen))
            while seen < sessions:
                await anyio.lowlevel.checkpoint()
                now_active = engine.statistics().active
                if now_active < active:
                    drops.append((monotonic(), active - now_active))
                    seen += active - now_active
                    active = now_active
            deadlines = iter(sorted(deadline_of.values()))
            ms = [(at - next(deadlines)) * 1000 for at, count in drops for _ in range(count)]
    result: dict[str, Any] = {
        "mode": mode,
        "create_s": round(create_s, 2),
        "first_due_after_create_s": round(first_due, 2),
        "clumps": sorted(clumps.values(), reverse=True),
        **summary(ms),
    }
    if mode == "callback":
        result["delivery"] = summary([d * 1000 for d in delivery])
    return result


async def measure_stall(sessions: int, batch: int) -> dict[str, Any]:
    from ratekeeper import Engine, Gate, ManualClock

    clock = ManualClock()
    engine = Engine(clock, max_sessions=sessions)
    gate = Gate(engine, sweep_batch=batch, poll_interval_s=0.01)
    flipped = 0

    def count(item: Any) -> None:
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
    return {
        "swept_s": round(elapsed, 2),
        "gaps": len(ms),
        "median": statistics.median(ms),
        "p99": percentile(ms, 0.99),
        "longest": max(ms),
        # CPU time excludes moments the OS ran other processes: on a shared machine it shows
        # the work one step of the sweeper really holds the loop for.
        "cpu_median": statistics.median(cpu_ms),
        "cpu_p99": percentile(cpu_ms, 0.99),
        "cpu_longest": max(cpu_ms),
    }


def print_lag(result: dict[str, Any], sessions: int, spread: int, batch: int) -> None:
    print(
        f"lag ({result['mode']}): {sessions} sessions, lifetimes 3..{2 + spread} s, "
        f"sweep_batch={batch}; created in {result['create_s']} s, first deadline "
        f"{result['first_due_after_create_s']} s after"
    )
    print(f"  clumps (sessions sharing a deadline second): {result['clumps']}")
    print(
        f"  lag p50 {result['p50']:.2f} ms, p90 {result['p90']:.2f} ms, "
        f"p99 {result['p99']:.2f} ms, max {result['max']:.2f} ms"
    )
    if "delivery" in result:
        d = result["delivery"]
        print(
            f"  callback called (deadline to call): p50 {d['p50']:.2f} ms, "
            f"p99 {d['p99']:.2f} ms, max {d['max']:.2f} ms"
        )


def print_stall(result: dict[str, Any], sessions: int, batch: int) -> None:
    print(f"stall: {sessions} sessions due at once, sweep_batch={batch}")
    print(
        f"  swept in {result['swept_s']:.2f} s; heartbeat gaps: {result['gaps']}, median "
        f"{result['median']:.3f} ms, p99 {result['p99']:.3f} ms, longest "
        f"{result['longest']:.3f} ms"
    )
    print(
        f"  same gaps in process CPU time: median {result['cpu_median']:.3f} ms, "
        f"p99 {result['cpu_p99']:.3f} ms, longest {result['cpu_longest']:.3f} ms"
    )


def compare(args: argparse.Namespace) -> None:
    """Alternate the baseline and this checkout in fresh subprocesses; print tables."""
    contenders = {"baseline": args.baseline_src.resolve(), "this checkout": ROOT}
    jobs: list[tuple[str, list[str]]] = []
    if args.only != "stall":
        jobs += [(f"lag {mode}", ["--only", "lag", "--mode", mode]) for mode in args.modes]
    if args.only != "lag":
        jobs.append(("stall", ["--only", "stall"]))
    common = [
        "--sessions",
        str(args.sessions),
        "--spread",
        str(args.spread),
        "--stall-sessions",
        str(args.stall_sessions),
        "--batch",
        str(args.batch),
        "--json",
    ]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for n in range(args.rounds):
        for job, flags in jobs:
            for name, src in contenders.items():
                out = subprocess.run(
                    [sys.executable, __file__, *flags, *common],
                    env=dict(os.environ, PYTHONPATH=str(src)),
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd="/",
                )
                results.setdefault((job, name), []).append(json.loads(out.stdout))
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)

    def cell(rows: list[dict[str, Any]], *path: str) -> str:
        values = []
        for row in rows:
            for key in path:
                row = row[key]
            values.append(float(row))  # type: ignore[arg-type]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    print(f"medians of {args.rounds} alternated rounds (min-max), ms; sweep_batch={args.batch}")
    print("| measure | baseline | this checkout |")
    print("|---|---:|---:|")
    for job, _ in jobs:
        before, after = results[(job, "baseline")], results[(job, "this checkout")]
        if job.startswith("lag"):
            for key in ("p50", "p99", "max"):
                print(f"| {job}, lag {key} | {cell(before, key)} | {cell(after, key)} |")
            if job == "lag callback":
                for key in ("p50", "p99"):
                    print(
                        f"| {job}, callback called {key} | {cell(before, 'delivery', key)} "
                        f"| {cell(after, 'delivery', key)} |"
                    )
        else:
            for key in ("longest", "cpu_longest", "swept_s"):
                print(f"| stall, {key} | {cell(before, key)} | {cell(after, key)} |")
    for job, _ in jobs:
        if job.startswith("lag"):
            row = results[(job, "this checkout")][0]
            print(f"{job}: clumps {row['clumps']}; created in {row['create_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--spread", type=int, default=4, help="lifetimes 3..2+SPREAD seconds")
    parser.add_argument("--stall-sessions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=500, help="the gate's sweep_batch")
    parser.add_argument("--only", choices=["lag", "stall"])
    parser.add_argument("--mode", choices=["callback", "statistics", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="print one JSON object (one mode)")
    parser.add_argument("--baseline-src", type=Path, help="compare with the code at PATH")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline-src")
    args = parser.parse_args()
    args.modes = ["callback", "statistics"] if args.mode == "both" else [args.mode]
    if args.baseline_src is not None:
        compare(args)
        return
    if args.only != "stall":
        for mode in args.modes:
            lag = asyncio.run(measure_lag(args.sessions, args.spread, args.batch, mode))
            if args.json:
                print(json.dumps(lag))
                return
            print_lag(lag, args.sessions, args.spread, args.batch)
    if args.only != "lag":
        stall = asyncio.run(measure_stall(args.stall_sessions, args.batch))
        if args.json:
            print(json.dumps(stall))
            return
        print_stall(stall, args.stall_sessions, args.batch)


if __name__ == "__main__":
    main()
