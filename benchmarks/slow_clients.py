"""What the limits on slow and oversized clients cost, and what they buy.

1. **Cost.** Two uvicorn servers of the same app (``app_from_env``, memory store, no access
   log): uvicorn's stock httptools protocol and ratekeeper's ``LimitedHTTPProtocol``, driven in
   alternating rounds with ``GET /healthz`` (the cheapest route, so the protocol's share is the
   largest it can be) carrying the dozen headers the openai SDK sends: on kept-alive
   connections, and with a new connection per request.
   Then the same two protocols in process, without sockets: a transport that drops what is
   written, a request fed to ``data_received`` and answered by a trivial ASGI app: the
   protocol's own cost per request, far less noisy than the loopback rates.
2. **Flood.** The limited server (``--max-connections`` 200) while 1,000 connections hold
   unfinished request heads: a well-behaved client opening a new connection per request; every
   status and the latency percentiles are reported. Against the stock protocol the same flood
   holds 1,000 connections forever.

Run: ``.venv/bin/python benchmarks/slow_clients.py`` (``--help`` for options). Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_load import Result, _run, http_request, run_scenario

API_KEY = "rk-benchmark-key"
_ROOT = Path(__file__).resolve().parents[1]
# What the openai SDK sends on every request (values of the usual length).
_SDK_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": "OpenAI/Python 2.8.0",
    "X-Stainless-Lang": "python",
    "X-Stainless-Package-Version": "2.8.0",
    "X-Stainless-OS": "Linux",
    "X-Stainless-Arch": "x64",
    "X-Stainless-Runtime": "CPython",
    "X-Stainless-Runtime-Version": "3.11.7",
    "X-Stainless-Async": "false",
    "X-Stainless-Retry-Count": "0",
    "Authorization": f"Bearer {API_KEY}",
    "OpenAI-Beta": "chatkit_beta=v1",
}
PROTOCOLS = {
    "stock httptools": "httptools",
    "LimitedHTTPProtocol": "ratekeeper.server._protocol:LimitedHTTPProtocol",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(http: str, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEKEEPER_")}
    env |= {"RATEKEEPER_API_KEYS": API_KEY, "RATEKEEPER_STORE": "memory", **env_extra}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "ratekeeper.server._app:app_from_env",
            "--http",
            http,
            "--no-access-log",
            "--log-level",
            "critical",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process, port
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server with --http {http} did not start")
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _new_connection_each(port: int, request: bytes, total: int) -> Result:
    """``total`` requests, one at a time, each on a new connection (Connection: close)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    for _ in range(total):
        began = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        response = await reader.read()
        writer.close()
        latencies.append(time.perf_counter() - began)
        statuses[int(response[9:12]) if response else 0] += 1
    return Result("new connections", total, time.perf_counter() - started, statuses, latencies)


def _spread(rates: list[float]) -> str:
    return f"{statistics.median(rates):8.0f} ({min(rates):.0f}-{max(rates):.0f})"


def cost(rounds: int, requests: int, concurrency: int) -> None:
    kept = http_request("GET", "/healthz", headers=_SDK_HEADERS)
    closing = http_request("GET", "/healthz", headers={**_SDK_HEADERS, "Connection": "close"})
    servers = {name: _start(http, {}) for name, http in PROTOCOLS.items()}
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(rounds):
            for name, (_, port) in servers.items():  # alternate the contenders in each round
                keep = _run(run_scenario("kept", port, kept, requests, concurrency, 30.0))
                fresh = _run(_new_connection_each(port, closing, requests // 10))
                assert set(keep.statuses) == {200}, keep.statuses
                assert set(fresh.statuses) == {200}, fresh.statuses
                rates.setdefault((name, "kept-alive"), []).append(keep.rate)
                rates.setdefault((name, "new connection"), []).append(fresh.rate)
    finally:
        for process, _ in servers.values():
            _stop(process)
    print(f"\nCost: GET /healthz with 14 SDK headers, {rounds} alternating rounds")
    print(f"{'protocol':22} {'scenario':15} {'req/s median (min-max)':>26} {'vs stock':>9}")
    for (name, scenario), values in rates.items():
        stock = statistics.median(rates[("stock httptools", scenario)])
        ratio = statistics.median(values) / stock
        print(f"{name:22} {scenario:15} {_spread(values):>26} {ratio:9.3f}")


class _NullTransport(asyncio.Transport):
    """A transport that accepts every write and drops it."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def pause_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _tiny_app(scope: dict[str, object], receive: object, send: object) -> None:
    assert callable(send)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def _per_request_us(protocol: str, request: bytes, calls: int) -> float:
    """Microseconds per request through one protocol object (kept-alive connection)."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from ratekeeper.server._protocol import ConnectionLimits, LimitedHTTPProtocol

    config = Config(app=_tiny_app, lifespan="off", access_log=False, log_level="critical")
    config.load()
    state = ServerState()
    if protocol == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        proto: asyncio.Protocol = HttpToolsProtocol(config, state, {})
    else:
        proto = LimitedHTTPProtocol(config, state, {}, limits=ConnectionLimits())
    proto.connection_made(_NullTransport())
    # CPU time of this process: on a busy machine, time waiting for a core is not counted.
    started = time.process_time()
    for _ in range(calls):
        proto.data_received(request)
        await asyncio.sleep(0)  # the ASGI task answers; the response completes
    elapsed = time.process_time() - started
    proto.connection_lost(None)
    return elapsed / calls * 1e6


def in_process(rounds: int, calls: int) -> None:
    request = http_request("GET", "/healthz", headers=_SDK_HEADERS)
    samples: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    for _ in range(rounds):
        for name, http in PROTOCOLS.items():
            samples[name].append(_run(_per_request_us(http, request, calls)))
    stock = statistics.median(samples["stock httptools"])
    print(f"\nIn process: one kept-alive connection, {calls} requests x {rounds} rounds")
    print(f"{'protocol':22} {'CPU us/request median (min-max)':>32} {'extra us':>9}")
    for name, values in samples.items():
        median = statistics.median(values)
        shown = f"{median:8.2f} ({min(values):.2f}-{max(values):.2f})"
        print(f"{name:22} {shown:>32} {median - stock:9.2f}")


def flood(slow: int, cap: int, requests: int) -> None:
    process, port = _start(
        PROTOCOLS["LimitedHTTPProtocol"], {"RATEKEEPER_MAX_CONNECTIONS": str(cap)}
    )
    held: list[socket.socket] = []
    try:
        request = http_request("GET", "/healthz", headers={**_SDK_HEADERS, "Connection": "close"})
        quiet = _run(_new_connection_each(port, request, requests))
        for _ in range(slow):
            sock = socket.create_connection(("127.0.0.1", port))
            with contextlib.suppress(OSError):  # unless displaced already
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            held.append(sock)
        flooded = _run(_new_connection_each(port, request, requests))
    finally:
        for sock in held:
            sock.close()
        _stop(process)
    print(f"\nFlood: {slow} unfinished heads held against --max-connections {cap}")
    print(f"{'':16} {'statuses':18} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, result in (("no flood", quiet), ("during the flood", flooded)):
        print(
            f"{label:16} {dict(result.statuses)!s:18} {result.percentile(0.5):8.2f} "
            f"{result.percentile(0.99):8.2f} {max(result.latencies) * 1000:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    parser.add_argument("--requests", type=int, default=5000, help="kept-alive requests a round")
    parser.add_argument("--concurrency", type=int, default=16, help="kept-alive connections")
    parser.add_argument("--slow", type=int, default=1000, help="slow heads in the flood")
    parser.add_argument("--cap", type=int, default=200, help="--max-connections in the flood")
    args = parser.parse_args()
    cost(args.rounds, args.requests, args.concurrency)
    in_process(max(args.rounds, 7), 20_000)
    flood(args.slow, args.cap, 300)


if __name__ == "__main__":
    main()
