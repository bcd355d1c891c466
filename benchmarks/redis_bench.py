"""Redis backend benchmark: ratekeeper's RedisBackend beside limits' Redis moving window.

Run against a local Redis (default ``redis://127.0.0.1:6379/0``, or ``--url`` / ``REDIS_URL``)::

    .venv/bin/python benchmarks/redis_bench.py                 # everything, ~3 minutes
    .venv/bin/python benchmarks/redis_bench.py --seconds 2 --processes 1,2

Measured, in one run, for each contender and two workloads (``admit``: every request is
admitted and recorded; ``over``: limit 10 per minute, hammered, so almost all are refused):

* commands per decision, counted on the server with ``MONITOR`` (top-level commands only;
  a script's own calls are marked ``lua`` and not counted), one request at a time, so each
  command is also one round trip;
* decisions/s in one process, one request at a time (so 1/throughput is the round-trip time)
  and with ``--concurrency`` requests in flight, with per-call latency p50/p99;
* decisions/s summed over 1..N worker processes, each with ``--concurrency`` in flight.

Contenders, each through its public API:

* ``ratekeeper``: ``RedisBackend.admit(secret)``: secret -> session lookup, status, expiry and
  the exact sliding window, all in one ``EVALSHA`` on Redis ``TIME``;
* ``ratekeeper+gate``: the same through ``Gate.admit`` (adds the Prometheus counters);
* ``ratekeeper-unpipelined``: ``RedisBackend(pipeline_admissions=False)``: every admission
  is its own write, even when many are in flight (by default concurrent admissions share
  writes; each is still one ``EVALSHA``);
* ``limits-async``: limits 5.x ``limits.aio.strategies.MovingWindowRateLimiter`` over
  ``limits.aio.storage.RedisStorage("async+redis://…", implementation="redispy")``,
  ``hit(RateLimitItemPerMinute(limit), key)``: a rate limit only, no session;
* ``limits-sync``: the same with ``limits.strategies`` / ``limits.storage.RedisStorage``.

Keys live under private prefixes and are deleted at the end.

``--against-base PATH`` runs a different, shorter comparison (under 3 minutes): this checkout's
``RedisBackend.admit`` against an older checkout's (``PATH``, e.g. ``/work/base``) and against
limits-async, each in its own fresh process (``PYTHONPATH=PATH`` for the older one), with
``--concurrency`` requests in flight, alternating the three contenders round after round;
it prints each one's median decisions/s with the spread (min-max) over ``--repeat`` rounds and
the median of the per-round ratios::

    .venv/bin/python benchmarks/redis_bench.py --against-base /work/base --repeat 5 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis

SESSIONS = 1_000
WORKLOADS = {"admit": 1_000_000_000, "over": 10}
_OURS_PREFIX = f"rkbench{os.getpid()}"
_LIMITS_PREFIX = f"LIMITSBENCH{os.getpid()}"


@dataclass
class Result:
    """One measurement."""

    rate: float
    p50_ms: float
    p99_ms: float


def _percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# -- contenders ----------------------------------------------------------------------------


async def _make_ratekeeper(
    url: str, limit: int, gate: bool, pipeline: bool = True
) -> tuple[Any, list[str], Any]:
    from ratekeeper import Gate
    from ratekeeper.redis import RedisBackend

    backend = RedisBackend.from_url(url, key_prefix=_OURS_PREFIX, pipeline_admissions=pipeline)
    secrets = []
    for _ in range(SESSIONS):
        session = await backend.create_session(
            "bench", expires_after_s=600, max_requests_per_1_minute=limit
        )
        assert session.client_secret is not None
        secrets.append(session.client_secret)
    admit = Gate(backend).admit if gate else backend.admit
    return admit, secrets, backend.aclose


async def _make_limits_async(url: str, limit: int) -> tuple[Any, list[str], Any]:
    from limits import RateLimitItemPerMinute
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = RedisStorage(
        "async+" + url, implementation="redispy", key_prefix=_LIMITS_PREFIX + str(limit)
    )
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(limit)

    async def admit(key: str) -> bool:
        return await limiter.hit(item, key)

    async def close() -> None:
        await storage.reset()

    return admit, [f"k{i}" for i in range(SESSIONS)], close


def _make_limits_sync(url: str, limit: int) -> tuple[Any, list[str], Any]:
    from limits import RateLimitItemPerMinute
    from limits.storage import RedisStorage
    from limits.strategies import MovingWindowRateLimiter

    storage = RedisStorage(url, key_prefix=_LIMITS_PREFIX + "s" + str(limit))
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(limit)

    def admit(key: str) -> bool:
        return limiter.hit(item, key)

    return admit, [f"k{i}" for i in range(SESSIONS)], storage.reset


ASYNC_CONTENDERS: dict[str, Callable[[str, int], Awaitable[tuple[Any, list[str], Any]]]] = {
    "ratekeeper": lambda url, limit: _make_ratekeeper(url, limit, gate=False),
    "ratekeeper+gate": lambda url, limit: _make_ratekeeper(url, limit, gate=True),
    "ratekeeper-unpipelined": lambda url, limit: _make_ratekeeper(
        url, limit, gate=False, pipeline=False
    ),
    "limits-async": _make_limits_async,
}


# -- loops ---------------------------------------------------------------------------------


async def _run_async(
    admit: Callable[[str], Awaitable[Any]], keys: list[str], concurrency: int, seconds: float
) -> tuple[int, list[float]]:
    latencies: list[float] = []
    n = len(keys)
    clock = time.perf_counter
    stop = clock() + seconds

    async def worker(start: int) -> None:
        i = start
        record = latencies.append
        while clock() < stop:
            t0 = clock()
            await admit(keys[i % n])
            record(clock() - t0)
            i += concurrency

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return len(latencies), latencies


def _run_sync(
    admit: Callable[[str], Any], keys: list[str], seconds: float
) -> tuple[int, list[float]]:
    latencies: list[float] = []
    n = len(keys)
    clock = time.perf_counter
    stop = clock() + seconds
    i = 0
    while clock() < stop:
        t0 = clock()
        admit(keys[i % n])
        latencies.append(clock() - t0)
        i += 1
    return len(latencies), latencies


def _result(count: int, latencies: list[float], seconds: float) -> Result:
    return Result(count / seconds, _percentile(latencies, 0.5), _percentile(latencies, 0.99))


# -- round trips ---------------------------------------------------------------------------


def _count_round_trips(url: str, run: Callable[[], None]) -> int:
    """Run ``run`` while MONITOR counts top-level commands from other clients."""
    monitor_client = redis.Redis.from_url(url)
    commands: list[str] = []
    ready = threading.Event()
    done = threading.Event()

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            while not done.is_set():
                try:
                    entry = monitor.next_command()
                except (redis.TimeoutError, redis.ConnectionError):
                    return
                if entry["client_type"] != "lua" and entry["command"] != "PING":
                    commands.append(entry["command"])
                if entry["command"].startswith("ECHO rk-bench-end"):
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.2)  # let MONITOR attach before the measured calls
    run()
    redis.Redis.from_url(url).echo("rk-bench-end")
    done.set()
    thread.join(10)
    monitor_client.close()
    return len([c for c in commands if not c.startswith("ECHO rk-bench-end")])


# -- sections ------------------------------------------------------------------------------


def round_trips(url: str, calls: int = 200) -> None:
    print(f"\n## Commands per decision ({calls} sequential decisions, warm, MONITOR)\n")
    print("| contender | workload | commands / decision |")
    print("|---|---|---|")
    for workload, limit in WORKLOADS.items():
        for name, make in ASYNC_CONTENDERS.items():
            if name not in ("ratekeeper", "limits-async"):
                continue

            async def prepare(
                make: Callable[[str, int], Awaitable[tuple[Any, list[str], Any]]] = make,
                limit: int = limit,
            ) -> tuple[Any, list[str], Any]:
                return await make(url, limit)

            loop = asyncio.new_event_loop()
            admit, keys, close = loop.run_until_complete(prepare())
            loop.run_until_complete(_run_async(admit, keys, 1, 0.2))  # warm

            def run(admit: Any = admit, keys: list[str] = keys, loop: Any = loop) -> None:
                async def go() -> None:
                    for i in range(calls):
                        await admit(keys[i % len(keys)])

                loop.run_until_complete(go())

            count = _count_round_trips(url, run)
            loop.run_until_complete(close())
            loop.close()
            print(f"| {name} | {workload} | {count / calls:.2f} |")


def single_process(url: str, seconds: float, concurrency: int, repeat: int) -> None:
    print(f"\n## One process (best of {repeat} interleaved runs of {seconds:g} s per cell)\n")
    print(
        "| contender | workload | in flight | decisions/s | p50 ms | p99 ms |\n"
        "|---|---|---|---|---|---|"
    )
    for workload, limit in WORKLOADS.items():
        rows = asyncio.run(_single_workload(url, limit, seconds, concurrency, repeat))
        for (name, flight), result in rows.items():
            print(
                f"| {name} | {workload} | {flight} | {result.rate:,.0f} | "
                f"{result.p50_ms:.3f} | {result.p99_ms:.3f} |"
            )
        sys.stdout.flush()


async def _single_workload(
    url: str, limit: int, seconds: float, concurrency: int, repeat: int
) -> dict[tuple[str, int], Result]:
    """Measure every contender on one workload, interleaved, keeping each cell's best run."""
    built = {name: await make(url, limit) for name, make in ASYNC_CONTENDERS.items()}
    sync_admit, sync_keys, sync_close = _make_limits_sync(url, limit)
    best: dict[tuple[str, int], Result] = {}

    def keep(cell: tuple[str, int], result: Result) -> None:
        if cell not in best or result.rate > best[cell].rate:
            best[cell] = result

    try:
        for admit, keys, _ in built.values():  # warm: connections, scripts
            await _run_async(admit, keys, concurrency, min(0.5, seconds))
        _run_sync(sync_admit, sync_keys, min(0.5, seconds))
        for _ in range(repeat):
            for flight in (1, concurrency):
                for name, (admit, keys, _) in built.items():
                    count, latencies = await _run_async(admit, keys, flight, seconds)
                    keep((name, flight), _result(count, latencies, seconds))
            # Blocks this loop on purpose: nothing else runs while it is measured.
            count, latencies = _run_sync(sync_admit, sync_keys, seconds)
            keep(("limits-sync", 1), _result(count, latencies, seconds))
    finally:
        for _, _, close in built.values():
            await close()
        sync_close()
    return dict(sorted(best.items(), key=lambda item: (item[0][1], item[0][0])))


def _child(
    name: str, url: str, limit: int, keys: list[str], flight: int, seconds: float, start_at: float
) -> int:
    async def go() -> int:
        if name == "ratekeeper":
            from ratekeeper.redis import RedisBackend

            backend = RedisBackend.from_url(url, key_prefix=_OURS_PREFIX)
            admit: Any = backend.admit
            close: Any = backend.aclose
        else:
            admit, _, close = await _make_limits_async(url, limit)
            close = _noop
        await _run_async(admit, keys, flight, 0.3)  # warm: connections and scripts
        await asyncio.sleep(max(0.0, start_at - time.time()))
        count, _ = await _run_async(admit, keys, flight, seconds)
        await close()
        return count

    return asyncio.run(go())


async def _sessions(url: str, limit: int) -> list[str]:
    _, secrets, close = await _make_ratekeeper(url, limit, gate=False)
    await close()
    return secrets


async def _noop() -> None:
    return None


def scaling(url: str, seconds: float, concurrency: int, processes: list[int]) -> None:
    print(
        f"\n## Worker processes (workload 'admit', {concurrency} in flight each, {seconds:g} s)\n"
    )
    print("| contender | processes | decisions/s (sum) |\n|---|---|---|")
    limit = WORKLOADS["admit"]
    ctx = multiprocessing.get_context("spawn")
    for name in ("ratekeeper", "limits-async"):
        keys: list[str]
        if name == "ratekeeper":
            keys = asyncio.run(_sessions(url, limit))
        else:
            keys = [f"k{i}" for i in range(SESSIONS)]
        for count in processes:
            with ctx.Pool(count) as pool:
                start_at = time.time() + 1.5 + 0.3 * count
                totals = pool.starmap(
                    _child,
                    [(name, url, limit, keys, concurrency, seconds, start_at)] * count,
                )
            print(f"| {name} | {count} | {sum(totals) / seconds:,.0f} |")
            sys.stdout.flush()
    _cleanup(url)


def _cleanup(url: str) -> None:
    client = redis.Redis.from_url(url)
    for pattern in (f"{_OURS_PREFIX}:*", f"{_LIMITS_PREFIX}*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    client.close()


# -- against an older checkout ----------------------------------------------------------------


async def _child_rate(name: str, url: str, limit: int, flight: int, seconds: float) -> float:
    """One contender in this (fresh) process: its decisions/s with ``flight`` in flight."""
    if name == "limits-async":
        admit, keys, close = await _make_limits_async(url, limit)
    else:  # this checkout's ratekeeper, or whichever PYTHONPATH put first
        admit, keys, close = await _make_ratekeeper(url, limit, gate=False)
    try:
        await _run_async(admit, keys, flight, min(0.5, seconds))  # warm: connections, scripts
        count, _ = await _run_async(admit, keys, flight, seconds)
    finally:
        await close()
    return count / seconds


def against_base(url: str, base: str, seconds: float, concurrency: int, repeat: int) -> None:
    import statistics
    import subprocess

    here = os.path.abspath(__file__)
    contenders = {
        "ratekeeper (this checkout)": ("ratekeeper", None),
        f"ratekeeper ({base})": ("ratekeeper", base),
        "limits-async": ("limits-async", None),
    }
    print(
        f"\n## Against {base}: decisions/s, one process, {concurrency} in flight, "
        f"{repeat} alternating rounds of {seconds:g} s (median, min-max)\n"
    )
    print("| workload | contender | decisions/s | spread | x limits-async (median of rounds) |")
    print("|---|---|---|---|---|")
    for workload, limit in WORKLOADS.items():
        rates: dict[str, list[float]] = {label: [] for label in contenders}
        for _ in range(repeat):
            for label, (name, path) in contenders.items():
                env = dict(os.environ)
                if path is not None:
                    env["PYTHONPATH"] = path
                else:
                    env.pop("PYTHONPATH", None)
                out = subprocess.run(
                    [
                        sys.executable,
                        here,
                        "--url",
                        url,
                        "--child",
                        name,
                        "--limit",
                        str(limit),
                        "--concurrency",
                        str(concurrency),
                        "--seconds",
                        str(seconds),
                    ],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                if path is not None:
                    assert out[1].startswith(path), f"the old checkout was not imported: {out}"
                rates[label].append(float(out[0]))
        limits = rates["limits-async"]
        for label, values in rates.items():
            ratios = [v / lim for v, lim in zip(values, limits, strict=True)]
            print(
                f"| {workload} | {label} | {statistics.median(values):,.0f} | "
                f"{min(values):,.0f}-{max(values):,.0f} | {statistics.median(ratios):.2f}x "
                f"({min(ratios):.2f}-{max(ratios):.2f}) |"
            )
        sys.stdout.flush()
    _cleanup(url)


def _child_main(args: argparse.Namespace) -> None:
    import ratekeeper

    rate = asyncio.run(
        _child_rate(args.child, args.url, args.limit, args.concurrency, args.seconds)
    )
    print(rate, os.path.dirname(os.path.dirname(os.path.abspath(ratekeeper.__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the best is kept")
    parser.add_argument("--skip", default="", help="comma-separated: trips,single,scaling")
    parser.add_argument("--against-base", metavar="PATH", help="compare with an old checkout")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=WORKLOADS["admit"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_main(args)
        return
    if args.against_base:
        against_base(args.url, args.against_base, args.seconds, args.concurrency, args.repeat)
        return
    skip = set(filter(None, args.skip.split(",")))
    info = redis.Redis.from_url(args.url).info("server")
    print(
        f"# Redis benchmark: redis-server {info['redis_version']}, Python "
        f"{sys.version.split()[0]}, redis-py {redis.__version__}, {os.cpu_count()} CPUs"
    )
    try:
        if "trips" not in skip:
            round_trips(args.url)
        if "single" not in skip:
            single_process(args.url, args.seconds, args.concurrency, args.repeat)
        if "scaling" not in skip:
            scaling(
                args.url,
                args.seconds,
                args.concurrency,
                [int(p) for p in args.processes.split(",")],
            )
    finally:
        _cleanup(args.url)


if __name__ == "__main__":
    main()
