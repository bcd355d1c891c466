"""Conversation-store benchmark: add an item, list a page of threads, list a page of items.

The three stores side by side in one run: ``memory`` (the baseline: no I/O at all), ``sqlite``
(a file in a temporary directory, WAL) and ``postgresql`` (a scratch database on the server
given by ``--postgres``, or ``RATEKEEPER_TEST_POSTGRES_URL``, or the local one; skipped with a
note if none answers). Each round runs every store once, in alternating order, with
``--concurrency`` tasks on one event loop; the report gives per-store medians over rounds of
throughput and of p50/p99 latency, with the spread (min-max of the round medians).

Operations (what the REST surface and the ChatKit endpoint do most):

* ``add_item``: append a user message to one of 50 threads (ChatKit's ``add_thread_item``);
* ``list_threads``: ``list_threads(user=…, limit=20)`` over 500 threads of 10 users (REST list);
* ``list_items``: ``list_items(thread, limit=20, order="asc", after=…)`` paging a 200-item
  thread (REST list items and ChatKit ``items.list``).

Bounded: ``--ops`` operations per store, operation and round. Run:
``.venv/bin/python benchmarks/store_bench.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ratekeeper.store import ConversationStore, store_from_url, user_message

_LOCAL = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")


@dataclass
class Samples:
    """Round results of one (store, operation)."""

    rates: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)


def _psql(url: str, sql: str) -> bool:
    result = subprocess.run(
        ["psql", url, "-XAtqc", sql],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


def _postgres(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else []
    configured = os.environ.get("RATEKEEPER_TEST_POSTGRES_URL")
    candidates += [configured] if configured else list(_LOCAL)
    return next((url for url in candidates if url and _psql(url, "select 1")), None)


async def _seed(store: ConversationStore) -> tuple[list[str], str]:
    threads = []
    for number in range(500):
        thread = await store.create_thread(f"user{number % 10}", title=f"thread {number}")
        threads.append(thread.id)
    long_thread = threads[0]
    for number in range(200):
        await store.add_item(long_thread, user_message(f"message {number}"))
    return threads[:50], long_thread


async def _run(
    operation: Callable[[int], Awaitable[object]], ops: int, concurrency: int
) -> tuple[float, float, float]:
    """Run ``ops`` calls with ``concurrency`` tasks; return (ops/s, p50 ms, p99 ms)."""
    latencies: list[float] = []
    next_op = 0

    async def worker() -> None:
        nonlocal next_op
        while next_op < ops:
            number = next_op
            next_op += 1
            started = time.perf_counter()
            await operation(number)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return ops / elapsed, p50, p99


async def _round(
    store: ConversationStore,
    hot: list[str],
    long_thread: str,
    pages: list[str | None],
    ops: int,
    concurrency: int,
) -> dict[str, tuple[float, float, float]]:
    rng = random.Random(7)

    async def add_item(number: int) -> object:
        return await store.add_item(rng.choice(hot), user_message(f"bench {number}"))

    async def list_threads(number: int) -> object:
        return await store.list_threads(user=f"user{number % 10}", limit=20)

    async def list_items(number: int) -> object:
        after = pages[number % len(pages)]
        return await store.list_items(long_thread, limit=20, order="asc", after=after)

    return {
        "add_item": await _run(add_item, ops, concurrency),
        "list_threads": await _run(list_threads, ops, concurrency),
        "list_items": await _run(list_items, ops, concurrency),
    }


async def main() -> None:
    """Parse options, seed each store, alternate rounds, print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=2000, help="operations per op and round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--postgres", help="a postgresql:// URL that may create databases")
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="rk-store-bench-")
    urls = {"memory": "memory", "sqlite": f"sqlite:///{directory}/bench.sqlite3"}
    server = _postgres(args.postgres)
    database = f"rk_bench_{secrets.token_hex(4)}"
    if server is not None and _psql(server, f"create database {database}"):
        urls["postgresql"] = f"{server.rpartition('/')[0]}/{database}"
    else:
        print("postgresql: no server answered; skipped")
    stores: dict[str, ConversationStore] = {}
    seeded: dict[str, tuple[list[str], str, list[str | None]]] = {}
    try:
        for name, url in urls.items():
            store = store_from_url(url)
            await store.open()
            stores[name] = store
            hot, long_thread = await _seed(store)
            listing = await store.list_items(long_thread, limit=200, order="asc")
            pages: list[str | None] = [None, *(i.id for i in listing.data[19::20][:9])]
            seeded[name] = (hot, long_thread, pages)
        samples: dict[tuple[str, str], Samples] = {}
        order = list(stores)
        for number in range(args.rounds):
            for name in order if number % 2 == 0 else reversed(order):
                hot, long_thread, pages = seeded[name]
                results = await _round(
                    stores[name], hot, long_thread, pages, args.ops, args.concurrency
                )
                for operation, (rate, p50, p99) in results.items():
                    entry = samples.setdefault((name, operation), Samples())
                    entry.rates.append(rate)
                    entry.p50s.append(p50)
                    entry.p99s.append(p99)
        print(
            f"\n{args.rounds} rounds x {args.ops} ops, concurrency {args.concurrency}; "
            "median of rounds [min-max]\n"
        )
        print(f"{'store':<11} {'operation':<13} {'ops/s':>22} {'p50 ms':>18} {'p99 ms':>20}")
        for (name, operation), entry in samples.items():
            print(
                f"{name:<11} {operation:<13} "
                f"{_cell(entry.rates, '.0f'):>22} {_cell(entry.p50s, '.2f'):>18} "
                f"{_cell(entry.p99s, '.2f'):>20}"
            )
    finally:
        for store in stores.values():
            await store.aclose()
        if "postgresql" in urls and server is not None:
            _psql(server, f"drop database if exists {database} with (force)")


def _cell(values: list[float], spec: str) -> str:
    return (
        f"{format(statistics.median(values), spec)} "
        f"[{format(min(values), spec)}-{format(max(values), spec)}]"
    )


if __name__ == "__main__":
    asyncio.run(main())
