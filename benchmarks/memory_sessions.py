"""Resident memory of an engine holding many live sessions, measured with psutil.

Usage::

    .venv/bin/python benchmarks/memory_sessions.py                 # 1,000,000 idle sessions
    .venv/bin/python benchmarks/memory_sessions.py --window full   # each has admitted 10
    .venv/bin/python benchmarks/memory_sessions.py --json

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
import sys
import time

import psutil

from ratekeeper import Engine, ManualClock


def measure(sessions: int, window: str, limit: int) -> dict[str, float]:
    """Create ``sessions`` live sessions and return RSS figures (bytes) and timings (s)."""
    process = psutil.Process(os.getpid())
    clock = ManualClock()
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


def main() -> None:
    """Parse arguments, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--window", choices=["idle", "full"], default="idle")
    parser.add_argument("--limit", type=int, default=10, help="max_requests_per_1_minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args.sessions, args.window, args.limit)
    result["window_full"] = args.window == "full"
    if args.json:
        print(json.dumps(result))
        return
    print(f"python {sys.version.split()[0]}, window {args.window}")
    for key, value in result.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
