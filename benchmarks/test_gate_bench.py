"""Gate overhead per call, in process: the same handler called directly and through the gate.

Each benchmark round awaits ``CALLS`` calls inside one asyncio event loop, so pytest-benchmark's
figures are per batch of 1000: read microseconds per batch as nanoseconds per call. The session's
limit is large enough that every call is admitted: this measures the admitted path, the common
one. The ASGI pair calls the app in process (no server, no sockets): the middleware's own cost.

Run: ``.venv/bin/pytest benchmarks/test_gate_bench.py --benchmark-only``
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from ratekeeper import Engine, Gate, RatekeeperMiddleware

CALLS = 1000


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def gate_and_secret(loop: asyncio.AbstractEventLoop) -> tuple[Gate, str]:
    gate = Gate(Engine())
    session = loop.run_until_complete(gate.create_session("bench", max_requests_per_1_minute=10**9))
    assert session.client_secret is not None
    return gate, session.client_secret


async def handler(payload: int, client_secret: str) -> int:
    return payload + 1


def run_batch(
    benchmark: Any, loop: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[Any]]
) -> None:
    async def batch() -> None:
        for _ in range(CALLS):
            await call()

    benchmark(lambda: loop.run_until_complete(batch()))


def test_handler_called_directly(benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
    run_batch(benchmark, loop, lambda: handler(1, "ek_unused"))


def test_handler_through_guard(
    benchmark: Any, loop: asyncio.AbstractEventLoop, gate_and_secret: tuple[Gate, str]
) -> None:
    gate, secret = gate_and_secret
    guarded = gate.guard("client_secret")(handler)
    run_batch(benchmark, loop, lambda: guarded(1, client_secret=secret))


def test_handler_inside_enter(
    benchmark: Any, loop: asyncio.AbstractEventLoop, gate_and_secret: tuple[Gate, str]
) -> None:
    gate, secret = gate_and_secret

    async def call() -> int:
        async with gate.enter(secret):
            return await handler(1, secret)

    run_batch(benchmark, loop, call)


def test_gate_admit(
    benchmark: Any, loop: asyncio.AbstractEventLoop, gate_and_secret: tuple[Gate, str]
) -> None:
    gate, secret = gate_and_secret
    run_batch(benchmark, loop, lambda: gate.admit(secret))


def test_gate_check(
    benchmark: Any, loop: asyncio.AbstractEventLoop, gate_and_secret: tuple[Gate, str]
) -> None:
    gate, secret = gate_and_secret
    run_batch(benchmark, loop, lambda: gate.check(secret))


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"y")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


def _scope(secret: str) -> dict[str, Any]:
    return {
        "type": "http",
        "path": "/v1/x",
        "method": "POST",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {secret}".encode())],
    }


def test_asgi_app_bare(
    benchmark: Any, loop: asyncio.AbstractEventLoop, gate_and_secret: tuple[Gate, str]
) -> None:
    scope = _scope(gate_and_secret[1])
    run_batch(benchmark, loop, lambda: _app(scope, _receive, _send))


def test_asgi_app_behind_middleware(
    benchmark: Any, loop: asyncio.AbstractEventLoop, gate_and_secret: tuple[Gate, str]
) -> None:
    gate, secret = gate_and_secret
    app = RatekeeperMiddleware(_app, gate=gate, paths=["/v1"])
    scope = _scope(secret)
    run_batch(benchmark, loop, lambda: app(scope, _receive, _send))
