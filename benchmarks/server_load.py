"""Load benchmark of the ChatKit session service on loopback.

Starts ``ratekeeper serve`` as a subprocess pinned to one CPU core and drives it from this
process, pinned to another, with a small asyncio HTTP/1.1 load generator (keep-alive
connections, one request in flight per connection). Bounded in requests and in time.

Scenarios:

* ``healthz``: ``GET /healthz``, the cheapest route: the floor of the HTTP stack.
* ``admit``: ``POST /ratekeeper/admit`` with a session's client secret: a guarded request (the
  gate's full decision: lookup, expiry, exact sliding window, headers, metrics).
* ``create``: ``POST /v1/chatkit/sessions`` with the minimal body: session creation (auth,
  beta header, JSON parsing and validation, the gate, the full response).
* ``list``: ``GET /v1/chatkit/threads?user=…&limit=20`` for a user with no threads: routing,
  auth, one query of the conversation store (``--store``: a fresh SQLite file by default, the
  kind ``ratekeeper serve`` uses; ``--store memory`` for the in-process store) and the list
  envelope.

Then the same four requests go straight into the ASGI app in this process (no sockets, no
uvicorn): the service's own cost per request, Starlette included.

With ``--baseline-src PATH`` (a checkout of older code) a second server runs that code
(``PYTHONPATH=PATH``) and every round drives both, alternating, so each scenario's new/old
ratio comes from the same run; the in-process timings then alternate child processes of both
and are CPU time (``time.thread_time``), which other load on the machine disturbs less.

Run: ``.venv/bin/python benchmarks/server_load.py`` (``--help`` for options; ``--backend
redis://127.0.0.1:6379/0`` to measure on Redis; ``--baseline-src /work/base`` to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
API_KEY = "rk-benchmark-key"
BETA = "chatkit_beta=v1"


@dataclass
class Result:
    """One scenario's outcome."""

    name: str
    requests: int
    seconds: float
    statuses: Counter[int]
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """Return one raw HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method == "POST":
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _worker(
    port: int,
    request: bytes,
    budget: list[int],
    deadline: float,
    latencies: list[float],
    statuses: Counter[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[int(status_line[9:12])] += 1
    finally:
        writer.close()


async def run_scenario(
    name: str, port: int, request: bytes, total: int, concurrency: int, max_s: float
) -> Result:
    """Send ``total`` requests (or as many as fit in ``max_s``) over ``concurrency`` connections."""
    warmup: list[float] = []
    await asyncio.gather(
        *(
            _worker(port, request, [50], time.perf_counter() + 5, warmup, Counter())
            for _ in range(concurrency)
        )
    )
    budget = [total]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    await asyncio.gather(
        *(
            _worker(port, request, budget, started + max_s, latencies, statuses)
            for _ in range(concurrency)
        )
    )
    return Result(name, len(latencies), time.perf_counter() - started, statuses, latencies)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when installed: the load generator must not be the bottleneck."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _median(runs: list[Result]) -> Result:
    """The median round by throughput, with every round's latencies and statuses pooled."""
    middle = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    for run in runs:
        statuses.update(run.statuses)
        latencies.extend(run.latencies)
    return Result(middle.name, middle.requests, middle.seconds, statuses, latencies)


async def in_process(
    rounds: int, calls: int, store: str, timer: Any = time.perf_counter
) -> dict[str, list[float]]:
    """Microseconds per request through the full Starlette app, called directly (each round)."""
    from ratekeeper.server import ServerSettings, create_app

    app = create_app(ServerSettings(api_keys=(API_KEY,), store=store))
    await app.state.ratekeeper.store.open()  # no lifespan here: open what it would open
    gate = app.state.ratekeeper.gate
    session = await gate.create_session("bench", max_requests_per_1_minute=1_000_000_000)
    auth = [(b"authorization", f"Bearer {API_KEY}".encode()), (b"openai-beta", BETA.encode())]
    create_body = b'{"user": "bench", "workflow": {"id": "wf_bench"}}'
    cases = {
        "healthz": ("GET", "/healthz", [], b""),
        "admit": (
            "POST",
            "/ratekeeper/admit",
            [(b"authorization", f"Bearer {session.client_secret}".encode())],
            b"",
        ),
        "create": (
            "POST",
            "/v1/chatkit/sessions",
            [*auth, (b"content-type", b"application/json")],
            create_body,
        ),
        "list threads": ("GET", "/v1/chatkit/threads", auth, b""),
    }

    async def send(message: Any) -> None:
        return None

    samples: dict[str, list[float]] = {}
    for name, (method, path, headers, body) in cases.items():

        async def receive(body: bytes = body) -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        samples[name] = []
        for _ in range(rounds):
            started = timer()
            for _ in range(calls):
                scope = {
                    "type": "http",
                    "method": method,
                    "path": path,
                    "raw_path": path.encode(),
                    "query_string": b"",
                    "headers": headers,
                    "http_version": "1.1",
                    "scheme": "http",
                    "server": ("127.0.0.1", 80),
                    "client": ("127.0.0.1", 1),
                    "root_path": "",
                }
                await app(scope, receive, send)
            samples[name].append((timer() - started) / calls * 1e6)
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(src: str | None) -> dict[str, str] | None:
    """The environment of a child running the code at ``src`` (``None``: this checkout)."""
    if src is None:
        return None
    return {**os.environ, "PYTHONPATH": os.path.abspath(src)}


def start_server(
    port: int, backend: str, store: str, core: int | None, src: str | None = None
) -> subprocess.Popen[bytes]:
    exe = os.path.join(os.path.dirname(sys.executable), "ratekeeper")
    command = [
        exe,
        "serve",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--backend",
        backend,
        "--store",
        store,
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    if core is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(core), *command]
    process = subprocess.Popen(command, env=child_env(src))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


def make_session(port: int) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/chatkit/sessions",
        headers={"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": BETA},
        json={
            "user": "bench",
            "workflow": {"id": "wf_bench"},
            "rate_limits": {"max_requests_per_1_minute": 1_000_000_000},
        },
    )
    response.raise_for_status()
    secret: str = response.json()["client_secret"]
    return secret


def compare(args: argparse.Namespace) -> None:
    """``--baseline-src``: the baseline and this checkout, alternating in one run."""
    contenders: dict[str, str | None] = {"baseline": args.baseline_src, "this checkout": None}
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_core = cores[0] if len(cores) >= 2 else None
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[1]})
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for name, src in contenders.items():
            port = free_port()
            store = f"sqlite:///{tempfile.mkdtemp(prefix='rk-bench-')}/ratekeeper.sqlite3"
            servers[name] = (
                start_server(port, args.backend, args.store or store, server_core, src),
                port,
            )
        requests = {name: scenarios(make_session(port)) for name, (_, port) in servers.items()}
        for _ in range(args.rounds):
            for scenario in [name for name, _ in requests["baseline"]]:
                for name, (_, port) in servers.items():
                    request = dict(requests[name])[scenario]
                    result = _run(
                        run_scenario(
                            scenario,
                            port,
                            request,
                            args.requests,
                            args.concurrency,
                            args.max_seconds,
                        )
                    )
                    if set(result.statuses) != {200}:
                        raise SystemExit(f"{name} {scenario}: statuses {dict(result.statuses)}")
                    rates.setdefault((scenario, name), []).append(result.rate)
                    print(f"  {scenario:13s} {name:14s} {result.rate:8,.0f} req/s", flush=True)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
    print(
        f"\nratekeeper serve, backend={args.backend}, {args.concurrency} connections, "
        f"{args.rounds} alternating rounds of {args.requests} requests per scenario and code "
        f"(Python {sys.version.split()[0]})\n"
    )
    print("| scenario | baseline req/s | this checkout req/s | ratio (median of rounds) |")
    print("|---|---:|---:|---:|")
    for scenario in dict.fromkeys(key[0] for key in rates):
        old, new = rates[(scenario, "baseline")], rates[(scenario, "this checkout")]
        ratios = [n / o for n, o in zip(new, old, strict=True)]
        print(
            f"| {scenario} | {statistics.median(old):,.0f} ({min(old):,.0f}-{max(old):,.0f}) "
            f"| {statistics.median(new):,.0f} ({min(new):,.0f}-{max(new):,.0f}) "
            f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    cpu: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
    for _ in range(args.rounds):
        for name, src in contenders.items():
            out = subprocess.run(
                [sys.executable, __file__, "--in-process-worker"],
                capture_output=True,
                text=True,
                check=True,
                env=child_env(src),
            ).stdout
            for scenario, values in json.loads(out).items():
                cpu[name].setdefault(scenario, []).extend(values)
    print(
        f"\nin process, straight into the ASGI app: CPU µs per request, median (min-max) "
        f"of {args.rounds} x 3 rounds\n"
    )
    print("| request | baseline | this checkout | ratio |")
    print("|---|---:|---:|---:|")
    for scenario, old in cpu["baseline"].items():
        new = cpu["this checkout"][scenario]
        print(
            f"| {scenario} | {statistics.median(old):.1f} ({min(old):.1f}-{max(old):.1f}) "
            f"| {statistics.median(new):.1f} ({min(new):.1f}-{max(new):.1f}) "
            f"| {statistics.median(old) / statistics.median(new):.2f}x |"
        )


def scenarios(secret: str) -> list[tuple[str, bytes]]:
    """The four scenarios' raw requests, for a session whose client secret is ``secret``."""
    auth = {"Authorization": f"Bearer {API_KEY}", "OpenAI-Beta": BETA}
    create_body = b'{"user": "bench", "workflow": {"id": "wf_bench"}}'
    return [
        ("healthz", http_request("GET", "/healthz")),
        (
            "admit",
            http_request(
                "POST", "/ratekeeper/admit", headers={"Authorization": f"Bearer {secret}"}
            ),
        ),
        ("create", http_request("POST", "/v1/chatkit/sessions", create_body, auth)),
        (
            "list threads",
            http_request("GET", "/v1/chatkit/threads?user=nobody&limit=20", headers=auth),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="cap per scenario")
    parser.add_argument("--backend", default="memory", help="'memory' or a Redis URL")
    parser.add_argument(
        "--store",
        help="conversation store URL (default: a fresh SQLite file, the service's default kind)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON too")
    parser.add_argument(
        "--baseline-src",
        metavar="PATH",
        help="also run the code at PATH (a checkout: PYTHONPATH=PATH) and compare, alternating",
    )
    parser.add_argument("--in-process-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_worker:
        store = f"sqlite:///{tempfile.mkdtemp(prefix='rk-bench-')}/ratekeeper.sqlite3"
        print(json.dumps(_run(in_process(3, 3000, store, time.thread_time))))
        return
    if args.baseline_src:
        compare(args)
        return
    if args.store is None:
        args.store = f"sqlite:///{tempfile.mkdtemp(prefix='rk-bench-')}/ratekeeper.sqlite3"

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_core = cores[0] if len(cores) >= 2 else None
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[1]})
    port = free_port()
    server = start_server(port, args.backend, args.store, server_core)
    try:
        requests = scenarios(make_session(port))
        # Rounds interleave the scenarios, so a burst of noise from elsewhere on the machine
        # hits them alike; each scenario reports its median round.
        rounds: dict[str, list[Result]] = {name: [] for name, _ in requests}
        for _ in range(args.rounds):
            for name, request in requests:
                rounds[name].append(
                    _run(
                        run_scenario(
                            name, port, request, args.requests, args.concurrency, args.max_seconds
                        )
                    )
                )
        results = [_median(runs) for runs in rounds.values()]
    finally:
        server.terminate()
        server.wait(timeout=30)

    print(
        f"\nratekeeper serve, backend={args.backend}, store={args.store}, "
        f"{args.concurrency} connections, "
        f"server on core {server_core}, load generator on core "
        f"{cores[1] if len(cores) >= 2 else 'shared'} (Python {sys.version.split()[0]})\n"
    )
    print(f"median of {args.rounds} interleaved rounds of {args.requests} requests each\n")
    print("| scenario | requests | req/s | p50 ms | p99 ms | statuses |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        shown = ", ".join(f"{code}: {count}" for code, count in sorted(r.statuses.items()))
        print(
            f"| {r.name} | {sum(r.statuses.values())} | {r.rate:,.0f} | {r.percentile(0.5):.2f} | "
            f"{r.percentile(0.99):.2f} | {shown} |"
        )
    base = results[0].rate
    print(f"\nadmit / healthz throughput: {results[1].rate / base:.2f}")
    costs = _run(in_process(args.rounds, 5_000, args.store))
    print("\nin process, straight into the ASGI app (median of rounds):\n")
    print("| request | µs per request |")
    print("|---|---:|")
    for name, micros in costs.items():
        print(f"| {name} | {statistics.median(micros):.1f} |")
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "scenario": r.name,
                        "requests": r.requests,
                        "rps": r.rate,
                        "p50_ms": r.percentile(0.5),
                        "p99_ms": r.percentile(0.99),
                        "mean_ms": statistics.fmean(r.latencies) * 1000,
                        "statuses": dict(r.statuses),
                    }
                    for r in results
                ]
            )
        )
    bad = [r.name for r in results if set(r.statuses) != {200}]
    if bad:
        raise SystemExit(f"non-200 answers in: {', '.join(bad)}")


if __name__ == "__main__":
    main()
