"""ratekeeper against the other Python rate limiters, same workloads, one run.

Usage::

    .venv/bin/python benchmarks/compare_peers.py            # full run, ~4 minutes on 2 cores
    .venv/bin/python benchmarks/compare_peers.py --quick    # smaller, for a smoke test
    .venv/bin/python benchmarks/compare_peers.py --json out.json

Every (workload, contender) pair runs in a fresh subprocess, one at a time, so no peer's
background threads (limits' expiry timer, pyrate-limiter's leaker) or leftover heap can slow
the next one down. Inside it, each round builds a fresh instance, pre-fills it untimed, then
times ``for key in sequence: admit(key)`` with :func:`time.perf_counter_ns`; the result is
discarded, exactly as a gateway that only branches on it would. The key sequence is built
before timing from a fixed seed, so every contender sees the same choices in the same order.
An extra, untimed round first collects the decisions and counts the admitted ones: the exact
limiters must agree, or the script says so.

The workloads (see docs/benchmarks.md for why these):

* ``hot-admit``: one key, 10,000/min, 12,000 calls: the first 10,000 admitted, then 2,000
  rejected (83 % admitted), from an empty window each round.
* ``hot-reject``: one key, 100/min, pre-filled with 100 admissions, then 100,000 calls, all
  rejected: a client hammering past its limit.
* ``100k-keys``: 100,000 keys at 10/min, each admitted once untimed, then 1,000,000 calls on
  keys drawn uniformly at random (seed 7): 82 % admitted.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contenders import CONTENDERS, EXACT, PEERS  # noqa: E402 - needs the path above


@dataclass(frozen=True)
class Workload:
    """One workload: how many keys, their limit, and the calls timed."""

    name: str
    keys: int
    limit: int
    prefill: int  # untimed admissions per key before timing, in key order
    calls: int  # timed decisions per round
    spread: bool  # keys drawn at random (seeded) rather than always the first
    rounds: int


WORKLOADS = {
    "hot-admit": Workload("hot-admit", 1, 10_000, 0, 12_000, False, 15),
    "hot-reject": Workload("hot-reject", 1, 100, 100, 100_000, False, 5),
    "100k-keys": Workload("100k-keys", 100_000, 10, 1, 1_000_000, True, 3),
}

QUICK = {
    "hot-admit": Workload("hot-admit", 1, 10_000, 0, 12_000, False, 3),
    "hot-reject": Workload("hot-reject", 1, 100, 100, 20_000, False, 2),
    "100k-keys": Workload("100k-keys", 10_000, 10, 1, 50_000, True, 1),
}


def _sequence(keys: list[str], work: Workload) -> list[str]:
    if not work.spread:
        return [keys[0]] * work.calls
    rng = random.Random(7)
    n = len(keys)
    return [keys[rng.randrange(n)] for _ in range(work.calls)]


def _round(name: str, work: Workload, check: bool) -> tuple[int, int]:
    """Build, pre-fill and run once; return (elapsed ns, admitted or -1 when not checked)."""
    inst = CONTENDERS[name](work.keys, work.limit)
    admit = inst.admit
    for key in inst.keys:
        for _ in range(work.prefill):
            admit(key)
    sequence = _sequence(inst.keys, work)
    gc.collect()
    admitted = -1
    start = time.perf_counter_ns()
    if check:
        results = [admit(key) for key in sequence]
    else:
        for key in sequence:
            admit(key)
    elapsed = time.perf_counter_ns() - start
    if check:
        allowed = inst.allowed
        admitted = sum(1 for r in results if allowed(r))
    inst.close()
    return elapsed, admitted


def worker(name: str, work: Workload) -> dict[str, Any]:
    """Run every round of one contender on one workload (in this process)."""
    _, admitted = _round(name, work, check=True)
    per_call = []
    for _ in range(work.rounds):
        elapsed, _ = _round(name, work, check=False)
        per_call.append(elapsed / work.calls)
    return {"contender": name, "workload": work.name, "ns": per_call, "admitted": admitted}


def _spawn(name: str, work: Workload) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec"]
    cmd.append(json.dumps(asdict(work)))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for dist in ("limits", "pyrate-limiter", "throttled-py", "sortedcontainers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "missing"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "os": platform.platform(),
        **versions,
    }


def _report(results: list[dict[str, Any]], workloads: dict[str, Workload]) -> list[str]:
    ns = {(r["workload"], r["contender"]): [float(x) for x in r["ns"]] for r in results}
    admitted = {(r["workload"], r["contender"]): int(r["admitted"]) for r in results}

    def median(work: str, name: str) -> float:
        return statistics.median(ns[(work, name)])

    lines = []
    summary = []
    for work in workloads.values():
        rk = median(work.name, "ratekeeper")
        lines.append(
            f"\n### {work.name}: {work.keys:,} key(s) at {work.limit:,}/min, "
            f"{work.calls:,} timed calls x {work.rounds} rounds\n"
        )
        lines.append(
            "| contender | ns/decision (median) | best | decisions/s | admitted | "
            "time vs ratekeeper |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|")
        for name in CONTENDERS:
            med = median(work.name, name)
            share = admitted[(work.name, name)] / work.calls
            lines.append(
                f"| {name} | {med:,.0f} | {min(ns[(work.name, name)]):,.0f} | {1e9 / med:,.0f} | "
                f"{share:.1%} | {med / rk:.2f}x |"
            )
        exact = {admitted[(work.name, name)] for name in EXACT}
        if len(exact) != 1:
            lines.append(f"\n**MISMATCH**: the exact limiters admitted {sorted(exact)}")
        fastest = min(PEERS, key=lambda name: median(work.name, name))
        peer = median(work.name, fastest)
        bare = median(work.name, "bare loop")
        bare_sha = median(work.name, "bare loop + sha256")
        summary.append(
            f"| {work.name} | {peer / rk:.2f}x ({fastest}) | {rk / bare:.2f}x | "
            f"{rk / bare_sha:.2f}x |"
        )
    lines.append("\n### Ratios (medians)\n")
    lines.append(
        "| workload | ratekeeper speed-up over the fastest peer | ratekeeper time / bare loop "
        "| ratekeeper time / bare loop + sha256 |"
    )
    lines.append("|---|---:|---:|---:|")
    lines.extend(summary)
    return lines


def main() -> None:
    """Parse arguments; run every pair in subprocesses, or one pair as a worker."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--only", nargs="*", help="workloads to run (default: all)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        work = Workload(**json.loads(args.spec))
        print(json.dumps(worker(args.worker, work)))
        return

    workloads = QUICK if args.quick else WORKLOADS
    if args.only:
        workloads = {k: v for k, v in workloads.items() if k in args.only}
    machine = _machine()
    print("## Peer comparison\n")
    for key, value in machine.items():
        print(f"- {key}: {value}")
    results = []
    started = time.perf_counter()
    for work in workloads.values():
        for name in CONTENDERS:
            t0 = time.perf_counter()
            results.append(_spawn(name, work))
            print(
                f"  ran {work.name} / {name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr
            )
    print("\n".join(_report(results, workloads)))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))


if __name__ == "__main__":
    main()
