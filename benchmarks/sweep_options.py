"""How fast can the expiry index give up its due sessions? The options, measured.

Usage::

    .venv/bin/python benchmarks/sweep_options.py            # 1,000,000 entries, ~2 minutes
    .venv/bin/python benchmarks/sweep_options.py --size 200000

The engine keeps active sessions in a ``sortedcontainers.SortedKeyList`` keyed by monotonic
deadline, and a sweep takes the first ``k`` due ones off its front. This script times the ways
of doing that with the public API, on an index of ``--size`` entries, removing the first
``--drain`` of them (10 % by default) in batches of each size; it prints the cost per entry and
the longest single batch (the time a sweep would hold the event loop). A ``heapq`` of
``(deadline, seq, record)`` tuples is shown for reference only: the engine also needs
O(log n) removal of any entry on cancel, which a heap can only fake with tombstones.

Only the index work is timed here; flipping each session (status, snapshot, retention queue)
costs the same whichever way the records come off the index, and ``test_engine_bench.py``
times the whole sweep.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import random
import time
from collections.abc import Callable
from itertools import count

from sortedcontainers import SortedKeyList


class _Rec:
    __slots__ = ("deadline",)

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline


def _key(rec: _Rec) -> float:
    return rec.deadline


def _islice_del(sl: SortedKeyList, k: int) -> list[_Rec]:
    items = list(sl.islice(0, k))
    del sl[:k]
    return items


def _slice_del(sl: SortedKeyList, k: int) -> list[_Rec]:
    items: list[_Rec] = sl[:k]
    del sl[:k]
    return items


def _pop_front(sl: SortedKeyList, k: int) -> list[_Rec]:
    pop = sl.pop
    return [pop(0) for _ in range(k)]


def _islice_rebuild(sl: SortedKeyList, k: int) -> list[_Rec]:
    items = list(sl.islice(0, k))
    rest = list(sl.islice(k))
    sl.clear()
    sl.update(rest)
    return items


def _reversed_pop(sl: SortedKeyList, k: int) -> list[_Rec]:
    # Delete from the back of the due run first, as del sl[:k] does internally, but with
    # the index positions computed once per item by pop().
    pop = sl.pop
    items = [pop(i) for i in range(k - 1, -1, -1)]
    items.reverse()
    return items


STRATEGIES: dict[str, Callable[[SortedKeyList, int], list[_Rec]]] = {
    "islice + del sl[:k]": _islice_del,
    "sl[:k] + del sl[:k]": _slice_del,
    "k x sl.pop(0)": _pop_front,
    "k x sl.pop(i), back to front": _reversed_pop,
    "islice + rebuild rest": _islice_rebuild,
}


def _deadlines(size: int) -> list[float]:
    rng = random.Random(3)
    # Spread over 600 s, as sessions of every allowed lifetime would be.
    return [rng.uniform(0.0, 600.0) for _ in range(size)]


def run_sorted(sl: SortedKeyList, name: str, drain: int, batch: int) -> tuple[float, float, int]:
    """Drain the first ``drain`` entries of ``sl`` with one strategy, then put them back.

    Returns (ns per entry, worst batch ms, entries timed).
    """
    take = STRATEGIES[name]
    gc.collect()
    worst = 0.0
    done = 0
    total = 0.0
    drained: list[_Rec] = []
    # islice + rebuild costs O(size) per batch: cap its time so the script stays bounded.
    budget_s = 5.0
    while done < drain:
        k = min(batch, drain - done)
        start = time.perf_counter()
        items = take(sl, k)
        elapsed = time.perf_counter() - start
        assert len(items) == k
        drained.extend(items)
        worst = max(worst, elapsed)
        total += elapsed
        done += k
        if total > budget_s:
            break
    sl.update(drained)  # untimed: the next run starts from a full index again
    return total / done * 1e9, worst * 1e3, done


def run_heap(deadlines: list[float], drain: int, batch: int) -> tuple[float, float, int]:
    """The same drain from a binary heap of (deadline, seq, record), for reference."""
    seq = count()
    heap = [(d, next(seq), _Rec(d)) for d in deadlines]
    heapq.heapify(heap)
    pop = heapq.heappop
    gc.collect()
    worst = 0.0
    done = 0
    total = 0.0
    while done < drain:
        k = min(batch, drain - done)
        start = time.perf_counter()
        items = [pop(heap)[2] for _ in range(k)]
        elapsed = time.perf_counter() - start
        assert len(items) == k
        worst = max(worst, elapsed)
        total += elapsed
        done += k
    return total / done * 1e9, worst * 1e3, done


def main() -> None:
    """Parse arguments and print one table row per (strategy, batch size)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="entries in the index")
    parser.add_argument("--drain", type=int, default=0, help="entries removed (default 10 %%)")
    parser.add_argument(
        "--batches", type=int, nargs="*", default=[100, 500, 1_000, 10_000, 100_000]
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the best is kept")
    args = parser.parse_args()
    drain = args.drain or args.size // 10
    deadlines = _deadlines(args.size)
    sl = SortedKeyList((_Rec(d) for d in deadlines), key=_key)
    print(f"index of {args.size:,} entries, draining the first {drain:,}, best of {args.repeat}\n")
    print("| strategy | batch | ns per entry | worst batch (ms) | entries timed |")
    print("|---|---:|---:|---:|---:|")
    for batch in args.batches:
        rows = {name: [run_sorted(sl, name, drain, batch)] for name in STRATEGIES}
        rows["(heapq, reference)"] = [run_heap(deadlines, drain, batch)]
        # Interleave the repeats so a burst of load elsewhere hits every strategy alike.
        for _ in range(args.repeat - 1):
            for name in STRATEGIES:
                if name != "islice + rebuild rest":
                    rows[name].append(run_sorted(sl, name, drain, batch))
            rows["(heapq, reference)"].append(run_heap(deadlines, drain, batch))
        for name, runs in rows.items():
            ns, worst, done = min(runs)
            print(f"| {name} | {batch:,} | {ns:,.0f} | {worst:,.2f} | {done:,} |", flush=True)


if __name__ == "__main__":
    main()
