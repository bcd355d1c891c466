"""Middleware overhead on a real server under load: requests/s guarded vs unguarded, one run.

Starts two uvicorn processes serving the same Starlette app, one bare and one behind
:class:`~ratekeeper.RatekeeperMiddleware` (memory engine, sweeper running, metrics
counted), both pinned to CPU 0, and drives them in alternation from CPU 1 with ``wrk`` when it
is installed (``apt-get install wrk``), else with a small bounded asyncio load generator (which
may saturate before the server does: the report says which one ran). Every request carries the
session's ``Authorization: Bearer`` header; the session's limit is high enough that all are
admitted, so this measures the admitted path.

With ``--baseline-src PATH`` (a checkout of older code), two more servers run that code
(``PYTHONPATH=PATH``) and all four are driven in alternation, so the old and new ratios come
from the same run; ``--in-process`` also times both apps called straight through ASGI (no
sockets), old and new alternating in child processes. ``--floor`` adds a server of the bare
app whose responses carry the same five rate-limit headers with no gate at all: what the
headers alone cost (uvicorn validates and writes each), the best ratio any guard that sends
them can reach.

Run: ``.venv/bin/python benchmarks/middleware_load.py`` (``--help`` for options), e.g.
``--baseline-src /work/base --in-process``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

PATH = "/v1/ping"


# -- the servers (child processes) ---------------------------------------------------------


def build_app(guarded: bool, sessions: int = 1, limit: int = 10**9) -> Any:
    """Return the benchmark app: one JSON route, optionally behind the middleware.

    At start it creates ``sessions`` sessions of ``limit`` requests per minute and prints
    their secrets on one line.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from ratekeeper import Engine, Gate, RatekeeperMiddleware

    async def ping(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    gate = Gate(Engine())

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        secrets = [
            (
                await gate.create_session(
                    "bench", expires_after_s=600, max_requests_per_1_minute=limit
                )
            ).client_secret
            for _ in range(sessions)
        ]
        # The parent reads the (benchmark-only) secrets from the first line of stdout.
        print("SECRET", *secrets, flush=True)
        async with gate:
            yield

    app = Starlette(routes=[Route(PATH, ping)], lifespan=lifespan)
    return RatekeeperMiddleware(app, gate=gate, paths=["/v1"]) if guarded else app


def with_static_headers(app: Any, limit: int) -> Any:
    """Return ``app`` whose responses carry the five admitted rate-limit headers, no gate.

    The ``--floor`` contender: what the headers alone cost on the wire (uvicorn checks and
    writes each one), with the values of a session of ``limit`` near the start of its window
    and the cheapest way of adding them (a plain function around ``send``).
    """
    from ratekeeper._ratelimit_headers import rate_limit_headers

    extra = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in rate_limit_headers(limit, limit - 1, 60.0)
    ]

    async def headers_app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        def send_with_headers(message: Any) -> Any:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            return send(message)

        await app(scope, receive, send_with_headers)

    return headers_app


def serve(kind: str, port: int, sessions: int, limit: int) -> None:
    """Child process: serve the bare, guarded or headers-only app on 127.0.0.1:port."""
    import uvicorn

    app = build_app(kind == "guarded", sessions, limit)
    uvicorn.run(
        with_static_headers(app, limit) if kind == "headers" else app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


# -- the parent: start, load, report --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(pid: int, cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(pid, {cpu})


def child_env(src: str | None) -> dict[str, str] | None:
    """The environment of a child running the code at ``src`` (``None``: this checkout)."""
    if src is None:
        return None
    return {**os.environ, "PYTHONPATH": os.path.abspath(src)}


@contextlib.contextmanager
def server(
    kind: str, src: str | None = None, sessions: int = 1, limit: int = 10**9
) -> Iterator[tuple[int, list[str], int]]:
    """Start one server process; yield (port, secrets, pid); stop it."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            *("--serve", kind, "--port", str(port)),
            *("--sessions", str(sessions), "--limit", str(limit)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(src),
    )
    try:
        pin(proc.pid, 0)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("SECRET "):
            raise RuntimeError(f"{kind} server did not start: {line!r}")
        secrets = line.split()[1:]
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            time.sleep(0.05)
        yield port, secrets, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_wrk(port: int, secrets: list[str], seconds: float, connections: int) -> tuple[float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        # Several sessions: each request carries the next secret (built by wrk, on its core).
        listed = ", ".join(f'"{secret}"' for secret in secrets)
        script.write(
            f"local secrets = {{{listed}}}\nlocal i = 0\n"
            "request = function()\n  i = i + 1\n  return wrk.format(nil, nil, "
            '{["Authorization"] = "Bearer " .. secrets[(i % #secrets) + 1]})\nend\n'
        )
        script.flush()
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                *(("-H", f"Authorization: Bearer {secrets[0]}") if len(secrets) == 1 else ()),
                *(("-s", script.name) if len(secrets) > 1 else ()),
                f"http://127.0.0.1:{port}{PATH}",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 30,
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rate, int(non2xx.group(1)) if non2xx else 0


async def _py_load(
    port: int, secrets: list[str], seconds: float, connections: int
) -> tuple[float, int]:
    requests = [
        f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {secret}\r\n\r\n".encode()
        for secret in secrets
    ]
    done = 0
    bad = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done, bad
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                writer.write(requests[done % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                done += 1
                bad += not head.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return done / (time.monotonic() - start), bad


def load(port: int, secrets: list[str], seconds: float, connections: int) -> tuple[float, int]:
    if shutil.which("wrk"):
        return run_wrk(port, secrets, seconds, connections)
    return asyncio.run(_py_load(port, secrets, seconds, connections))


def in_process_worker(calls: int, rounds: int) -> None:
    """Child process: print CPU µs per request of each app, called in process (no server).

    ``guarded`` is the session of the load test (limit 10**9: its rate-limit headers are new
    on every request); ``guarded, limit 1000`` spreads the calls over 100 sessions of a
    realistic limit, whose headers repeat (the middleware's cached path).
    """
    import json

    async def measure() -> dict[str, list[float]]:
        bare = build_app(False)
        guarded = build_app(True)
        secrets = [
            (
                await guarded.gate.create_session("bench", max_requests_per_1_minute=limit)
            ).client_secret
            for limit in (10**9, *[1000] * 100)
        ]
        header_lists = [
            [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {secret}".encode())]
            for secret in secrets
        ]

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            return None

        def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
            return {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": PATH,
                "raw_path": PATH.encode(),
                "query_string": b"",
                "root_path": "",
                "headers": headers,
                "client": ("127.0.0.1", 1),
                "server": ("127.0.0.1", 80),
                "state": {},
            }

        cases = {
            "bare": (bare, header_lists[:1]),
            "guarded": (guarded, header_lists[:1]),
            "guarded, limit 1000": (guarded, header_lists[1:]),
        }
        samples: dict[str, list[float]] = {kind: [] for kind in cases}
        for _ in range(rounds + 1):  # the first round warms up
            for kind, (app, lists) in cases.items():
                batch = [lists[i % len(lists)] for i in range(calls)]
                # CPU time of this thread: other processes on the machine disturb it less.
                started = time.thread_time()
                for headers in batch:
                    await app(scope(headers), receive, send)
                samples[kind].append((time.thread_time() - started) / calls * 1e6)
        return {kind: values[1:] for kind, values in samples.items()}

    print(json.dumps(asyncio.run(measure())))


def in_process(contenders: dict[str, str | None], rounds: int, calls: int) -> None:
    """Alternate the contenders' in-process timings (child processes); print a table."""
    import json

    kinds = ("bare", "guarded", "guarded, limit 1000")
    samples: dict[str, dict[str, list[float]]] = {
        name: {kind: [] for kind in (*kinds, "added")} for name in contenders
    }
    for _ in range(rounds):
        for name, src in contenders.items():
            out = subprocess.run(
                [sys.executable, __file__, "--in-process-worker", "--calls", str(calls)],
                capture_output=True,
                text=True,
                check=True,
                env=child_env(src),
            ).stdout
            result = json.loads(out)
            for kind in kinds:
                samples[name][kind].extend(result[kind])
            samples[name]["added"].extend(
                g - b for g, b in zip(result["guarded"], result["bare"], strict=True)
            )
    print(
        f"\nin process, straight through ASGI: CPU µs per request, median (min-max) of "
        f"{rounds} x 3 rounds of {calls} calls"
    )
    print("| code | bare app | guarded | added by the guard | guarded, limit 1000 |")
    print("|---|---:|---:|---:|---:|")
    for name, by_kind in samples.items():
        cells = [
            f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
            for v in (by_kind[kind] for kind in ("bare", "guarded", "added", kinds[2]))
        ]
        print(f"| {name} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", choices=["bare", "guarded", "headers"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sessions", type=int, default=1, help="sessions the load spreads over (default 1)"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=10**9,
        help="their max_requests_per_1_minute (default 10**9: headers never repeat; with "
        "--limit 1000 --sessions 2000 they repeat, the middleware's cached path)",
    )
    parser.add_argument("--in-process-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=5000, help="in-process calls per round")
    parser.add_argument("--seconds", type=int, default=5, help="length of one run (s)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per app")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--baseline-src",
        metavar="PATH",
        help="also run the code at PATH (a checkout: PYTHONPATH=PATH) as the baseline",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="also time the apps in process (no server)"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also serve the bare app with the five rate-limit headers added and no gate "
        "(this checkout): the ratio no guard that sends those headers can beat",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.sessions, args.limit)
        return
    if args.in_process_worker:
        in_process_worker(args.calls, 3)
        return
    pin(os.getpid(), 1)
    tool = "wrk" if shutil.which("wrk") else "asyncio load generator (wrk not installed)"
    contenders: dict[str, str | None] = {"this checkout": None}
    if args.baseline_src:
        contenders = {"baseline": args.baseline_src, **contenders}
    rates: dict[tuple[str, str], list[float]] = {}
    cpu_us: dict[tuple[str, str], list[float]] = {}
    with contextlib.ExitStack() as stack:
        servers = {
            (name, kind): stack.enter_context(server(kind, src, args.sessions, args.limit))
            for name, src in contenders.items()
            for kind in ("bare", "guarded")
        }
        if args.floor:
            servers["this checkout", "headers"] = stack.enter_context(
                server("headers", None, args.sessions, args.limit)
            )
        for port, secrets, _ in servers.values():
            load(port, secrets, 1.0, args.connections)  # warm-up, not recorded
        for _ in range(args.rounds):
            for key, (port, secrets, pid) in servers.items():
                used = cpu_seconds(pid)
                rate, bad = load(port, secrets, args.seconds, args.connections)
                used = cpu_seconds(pid) - used
                if bad:
                    raise RuntimeError(f"{key}: {bad} responses were not 200")
                rates.setdefault(key, []).append(rate)
                # Server CPU (user + system) per request: less disturbed than req/s by other
                # work on a shared machine, which takes CPU 0 away from the server.
                cpu_us.setdefault(key, []).append(used / (rate * args.seconds) * 1e6)
                print(
                    f"  {key[0]:14s} {key[1]:8s} {rate:10.0f} req/s "
                    f"{cpu_us[key][-1]:6.1f} CPU µs/request",
                    flush=True,
                )
    print(
        f"\nload: {tool}, {args.connections} connections, {args.rounds} x {args.seconds:g} s, "
        f"{args.sessions} session(s) of limit {args.limit}"
    )
    print("req/s: median (min-max); ratio: median of the rounds' guarded / unguarded\n")
    print("| code | unguarded req/s | guarded req/s | guarded / unguarded |")
    print("|---|---:|---:|---:|")
    for name in contenders:
        bare, guarded = rates[(name, "bare")], rates[(name, "guarded")]
        ratios = [g / b for g, b in zip(guarded, bare, strict=True)]
        print(
            f"| {name} | {statistics.median(bare):,.0f} ({min(bare):,.0f}-{max(bare):,.0f}) "
            f"| {statistics.median(guarded):,.0f} ({min(guarded):,.0f}-{max(guarded):,.0f}) "
            f"| {statistics.median(ratios):.1%} ({min(ratios):.1%}-{max(ratios):.1%}) |"
        )
    if args.floor:
        bare, headers = rates[("this checkout", "bare")], rates[("this checkout", "headers")]
        ratios = [h / b for h, b in zip(headers, bare, strict=True)]
        print(
            f"| headers only, no gate (floor) | | {statistics.median(headers):,.0f} "
            f"({min(headers):,.0f}-{max(headers):,.0f}) "
            f"| {statistics.median(ratios):.1%} ({min(ratios):.1%}-{max(ratios):.1%}) |"
        )
    print(
        "\nserver CPU (user + system) per request, µs: median (min-max); the guard's cost is "
        "the difference from unguarded\n"
    )
    print("| code | unguarded | guarded | added by the guard |")
    print("|---|---:|---:|---:|")
    rows = [(name, (name, "guarded")) for name in contenders]
    if args.floor:
        rows.append(("headers only, no gate (floor)", ("this checkout", "headers")))
    for label, key in rows:
        bare, other = cpu_us[(key[0], "bare")], cpu_us[key]
        added = [o - b for o, b in zip(other, bare, strict=True)]
        print(
            f"| {label} | {_spread(bare, '.1f')} | {_spread(other, '.1f')} "
            f"| {_spread(added, '+.1f')} |"
        )
    if args.in_process:
        in_process(contenders, args.rounds, args.calls)


def _spread(values: list[float], spec: str) -> str:
    return (
        f"{format(statistics.median(values), spec)} "
        f"({format(min(values), spec)}-{format(max(values), spec)})"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (0.0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
