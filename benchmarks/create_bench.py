"""Session creation and admission in process, this checkout against a baseline, alternated.

Times are process CPU time (``time.process_time_ns``), which leaves out moments the OS gave
the core to another process: on a shared machine that is most of the noise. Each round runs
one fresh subprocess per contender (the baseline with ``PYTHONPATH`` set to
``--baseline-src``, then this checkout), so both see the same machine load; the table gives
the median of the rounds and their spread (min-max). In each subprocess, on the system clock:

* ``create``: ``Engine.create_session("user_<n>")`` ``--creates`` times on a fresh engine,
  timed as one loop (the collector on, as in a deployment); ns per call;
* ``admit hot``: ``Engine.admit(secret)`` on one session that never reaches its limit;
* ``admit 100k``: 500,000 admissions over 100,000 sessions at 10/min, keys drawn at random
  (seed 7), as ``compare_peers.py``'s 100k-keys workload.

Run: ``.venv/bin/python benchmarks/create_bench.py --baseline-src /work/base``
(``--rounds``, ``--creates``; without ``--baseline-src`` only this checkout is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(creates: int) -> dict[str, float]:
    """Measure in this process; return ns per call for each case."""
    from ratekeeper import Engine

    engine = Engine(max_sessions=10_000_000)
    create = engine.create_session
    users = [f"user_{n:012d}" for n in range(creates)]
    start = time.process_time_ns()
    for user in users:
        create(user)
    create_ns = (time.process_time_ns() - start) / creates

    hot = Engine()
    secret = hot.create_session("hot", max_requests_per_1_minute=10**9).client_secret
    assert secret is not None
    admit = hot.admit
    calls = 200_000
    start = time.process_time_ns()
    for _ in range(calls):
        admit(secret)
    hot_ns = (time.process_time_ns() - start) / calls

    many = Engine(max_sessions=100_000)
    secrets: list[str] = []
    for _ in range(100_000):
        made = many.create_session("u").client_secret
        assert made is not None
        secrets.append(made)
    for s in secrets:
        many.admit(s)
    rng = random.Random(7)
    sequence = [secrets[rng.randrange(100_000)] for _ in range(500_000)]
    admit = many.admit
    start = time.process_time_ns()
    for s in sequence:
        admit(s)
    many_ns = (time.process_time_ns() - start) / len(sequence)
    return {"create": create_ns, "admit hot": hot_ns, "admit 100k": many_ns}


def run(src: Path, creates: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--creates", str(creates)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd="/",
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, help="checkout of the code to compare")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--creates", type=int, default=50_000)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.creates)))
        return
    contenders = {"this checkout": ROOT}
    if args.baseline_src is not None:
        contenders = {"baseline": args.baseline_src.resolve(), **contenders}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for n in range(args.rounds):
        for name, src in contenders.items():
            rounds[name].append(run(src, args.creates))
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    cases = list(next(iter(rounds.values()))[0])
    print(f"ns per call, median of {args.rounds} alternated rounds (min-max)")
    print(f"| case | {' | '.join(contenders)} |" + (" ratio |" if len(contenders) > 1 else ""))
    print("|---|" + "---:|" * (len(contenders) + (len(contenders) > 1)))
    for case in cases:
        cells = []
        medians = []
        for name in contenders:
            values = [r[case] for r in rounds[name]]
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:,.0f} ({min(values):,.0f}-{max(values):,.0f})")
        ratio = f" {medians[-1] / medians[0]:.2f}x |" if len(medians) > 1 else ""
        print(f"| {case} | {' | '.join(cells)} |{ratio}")


if __name__ == "__main__":
    main()
