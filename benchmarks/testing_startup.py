"""How long ``ratekeeper.testing.serve()`` takes to start and to stop (docs/testing.md).

Two figures, each the median (and min..max) of several runs:

* **first start in a new process**: ``python -c "with serve(): ..."`` from nothing, imports
  included: what the first test using ``ratekeeper_server`` pays once per run (most of it is
  importing openai-chatkit, which the app's ``/chatkit`` needs);
* **start** and **stop** of each later ``serve()`` in one process: what every further test
  using the function-scoped fixture pays.

Run: ``.venv/bin/python benchmarks/testing_startup.py [--runs 15] [--processes 5]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

_FIRST = """
import time
started = time.perf_counter()
from ratekeeper.testing import serve
with serve() as server:
    ready = time.perf_counter()
    server.create_session()
print(ready - started)
"""


def _summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{statistics.median(ms):8.1f} ms   ({ms[0]:.1f} .. {ms[-1]:.1f}, n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="serve() cycles in one process")
    parser.add_argument("--processes", type=int, default=5, help="new processes for the first")
    args = parser.parse_args()

    firsts = []
    for _ in range(args.processes):
        out = subprocess.run(
            [sys.executable, "-c", _FIRST], check=True, capture_output=True, text=True
        ).stdout
        firsts.append(float(out.split()[-1]))

    from ratekeeper.testing import serve

    with serve():  # warm: imports and the first app build are the row above
        pass
    starts, stops = [], []
    for _ in range(args.runs):
        begin = time.perf_counter()
        with serve() as server:
            ready = time.perf_counter()
            server.create_session()
            end_of_body = time.perf_counter()
        stops.append(time.perf_counter() - end_of_body)
        starts.append(ready - begin)
    print("ratekeeper.testing.serve()            median      (min .. max)")
    print(f"first start, new process, imports    {_summary(firsts)}")
    print(f"start (later serve() in the process) {_summary(starts)}")
    print(f"stop                                 {_summary(stops)}")


if __name__ == "__main__":
    main()
