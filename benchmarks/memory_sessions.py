"""Resident memory of an engine holding many live sessions, measured with psutil.

Usage::

    .venv/bin/python benchmarks/memory_sessions.py                 # 1,000,000 idle sessions
    .venv/bin/python benchmarks/memory_sessions.py --window full   # each has admitted 10
    .venv/bin/python benchmarks/memory_sessions.py --clock system  # real clocks (see below)
    .venv/bin/python benchmarks/memory_sessions.py --json
    .venv/bin/python benchmarks/memory_sessions.py --baseline-src /work/base   # before/after

``--clock manual`` (the default, as the figures in docs/benchmarks.md have always been taken)
creates every session at one instant of a manual clock, so all of them share one
``created_at`` float; ``--clock system`` creates them on the real clocks, so each has its own
``created_at`` and deadline and they spread over the seconds creation takes, as in a
deployment (about 32 bytes a session more, for any engine).

``--baseline-src PATH`` runs each configuration in fresh subprocesses, the code at ``PATH``
(via ``PYTHONPATH``) and this checkout alternately, ``--rounds`` times, and prints a table.

Run it as its own process (``test_engine_bench.py`` does): RSS only means something in a
process that held nothing else. The figure is the growth of RSS from just before the first
session to just after the last, divided by the number of sessions, after a full collection;
it therefore counts everything a session costs: its record, its entries in the two
dictionaries and in the expiry index, its id, user and digest, and its window list when used.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def measure(sessions: int, window: str, limit: int, clock_kind: str = "manual") -> dict[str, float]:
    """Create ``sessions`` live sessions and return RSS figures (bytes) and timings (s)."""
    from ratekeeper import Engine, ManualClock, SystemClock

    process = psutil.Process(os.getpid())
    clock = ManualClock() if clock_kind == "manual" else SystemClock()
    engine = Engine(clock, max_sessions=sessions)
    gc.collect()
    before = process.memory_info().rss
    start = time.perf_counter()
    secrets = []
    for i in range(sessions):
        # A distinct user string per session, as when each arrives in its own request body.
        session = engine.create_session(
            f"user_{i:012d}", expires_after_s=600, max_requests_per_1_minute=limit
        )
        if window == "full":
            assert session.client_secret is not None
            secrets.append(session.client_secret)
    created = time.perf_counter() - start
    if window == "full":
        admit = engine.admit
        for secret in secrets:
            for _ in range(limit):
                admit(secret)
        # The secrets live in the caller, not the engine: don't count them.
        del secrets
    gc.collect()
    after = process.memory_info().rss
    assert engine.statistics().active == sessions
    return {
        "sessions": sessions,
        "limit": limit,
        "rss_before_mb": round(before / 2**20, 1),
        "rss_after_mb": round(after / 2**20, 1),
        "rss_growth_mb": round((after - before) / 2**20, 1),
        "bytes_per_session": round((after - before) / sessions, 1),
        "create_s": round(created, 2),
    }


def compare(args: argparse.Namespace) -> None:
    """Alternate the baseline and this checkout in fresh subprocesses; print a table."""
    contenders = {"baseline": args.baseline_src.resolve(), "this checkout": ROOT}
    configs = [(w, c) for w in args.windows for c in args.clocks]
    results: dict[tuple[str, str, str], list[float]] = {}
    for n in range(args.rounds):
        for window, clock_kind in configs:
            for name, src in contenders.items():
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--json",
                        "--sessions",
                        str(args.sessions),
                        "--window",
                        window,
                        "--clock",
                        clock_kind,
                    ],
                    env=dict(os.environ, PYTHONPATH=str(src)),
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd="/",
                )
                per = json.loads(out.stdout)["bytes_per_session"]
                results.setdefault((window, clock_kind, name), []).append(per)
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    print(f"RSS bytes per session, {args.sessions:,} sessions, median of {args.rounds} rounds")
    print("| window | clock | baseline | this checkout | change |")
    print("|---|---|---:|---:|---:|")
    for window, clock_kind in configs:
        before = results[(window, clock_kind, "baseline")]
        after = results[(window, clock_kind, "this checkout")]
        b, a = statistics.median(before), statistics.median(after)
        print(
            f"| {window} | {clock_kind} | {b:,.0f} ({min(before):,.0f}-{max(before):,.0f}) "
            f"| {a:,.0f} ({min(after):,.0f}-{max(after):,.0f}) | {(a - b) / b:+.0%} |"
        )


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--window", choices=["idle", "full"], default="idle")
    parser.add_argument("--clock", choices=["manual", "system"], default="manual")
    parser.add_argument("--limit", type=int, default=10, help="max_requests_per_1_minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--baseline-src", type=Path, help="compare with the code at PATH")
    parser.add_argument("--rounds", type=int, default=2, help="with --baseline-src")
    args = parser.parse_args()
    if args.baseline_src is not None:
        args.windows = [args.window]
        args.clocks = ["manual", "system"]
        compare(args)
        return
    result = measure(args.sessions, args.window, args.limit, args.clock)
    result["window_full"] = args.window == "full"
    if args.json:
        print(json.dumps(result))
        return
    print(f"python {sys.version.split()[0]}, window {args.window}")
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
