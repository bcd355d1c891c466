"""``ratekeeper_gate`` (a :class:`~ratekeeper.testing.ManualGate`), ``Gate.sweep_now`` (which
lets a clock that jumps expire sessions at once) and faults behind the ASGI middleware."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from trio.testing import MockClock

from ratekeeper import (
    Decision,
    Engine,
    Gate,
    LoopClock,
    ManualClock,
    RatekeeperMiddleware,
    RateLimited,
    Reason,
    SessionExpired,
)
from ratekeeper._ratelimit_headers import verdict_for
from ratekeeper._types import Expired
from ratekeeper.server._dev import OffsetClock
from ratekeeper.server._dev_faults import DevGate, Fault, FaultTable
from ratekeeper.testing import ManualGate
from tests.gate._server import serving

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def count(gate: Gate, name: str, **labels: str) -> float:
    value = gate.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_advance_expires_flips_and_counts_before_it_returns(
    ratekeeper_gate: ManualGate,
) -> None:
    """Admission sees the new time at once; the flip, its metric and callbacks are done when
    ``advance`` returns, without a sweeper running."""
    flipped: list[Expired] = []
    ratekeeper_gate.on_expire(flipped.append)
    session = await ratekeeper_gate.create_session("u", expires_after_s=600)
    assert await ratekeeper_gate.advance(300) == 0
    await ratekeeper_gate.create_session("v", expires_after_s=600)
    assert await ratekeeper_gate.advance(299) == 0
    await ratekeeper_gate.admit_or_raise(session.client_secret)
    assert await ratekeeper_gate.advance(1) == 1
    assert [item.session.id for item in flipped] == [session.id]
    assert count(ratekeeper_gate, "ratekeeper_sessions_expired_total") == 1
    with pytest.raises(SessionExpired):
        await ratekeeper_gate.admit_or_raise(session.client_secret)


async def test_advance_beside_a_running_sweeper_counts_each_session_once(
    ratekeeper_gate: ManualGate,
) -> None:
    """With the sweeper running too, every session is flipped and counted exactly once."""
    flipped: list[Expired] = []
    ratekeeper_gate.on_expire(flipped.append)
    async with ratekeeper_gate:
        for user in ("a", "b", "c"):
            await ratekeeper_gate.create_session(user, expires_after_s=60)
        assert await ratekeeper_gate.advance(60) == 3
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
    assert sorted(item.session.user for item in flipped) == ["a", "b", "c"]
    assert count(ratekeeper_gate, "ratekeeper_sessions_expired_total") == 3


async def test_advance_slides_the_window(ratekeeper_gate: ManualGate) -> None:
    """The window slides with the manual clock, to the exact instant."""
    session = await ratekeeper_gate.create_session("u", max_requests_per_1_minute=1)
    await ratekeeper_gate.admit_or_raise(session.client_secret)
    await ratekeeper_gate.advance(59.999)
    with pytest.raises(RateLimited) as caught:
        await ratekeeper_gate.admit_or_raise(session.client_secret)
    assert caught.value.retry_after == pytest.approx(0.001)
    await ratekeeper_gate.advance(0.001)
    await ratekeeper_gate.admit_or_raise(session.client_secret)


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_sweep_now_wakes_the_sleeping_sweeper_to_read_the_next_deadline(
    anyio_backend: Any,
) -> None:
    """After a jump the sweeper sleeps until the next deadline as it now stands, not until the
    one it read before (virtual time: a clock of loop time plus a jump, as ``--dev`` runs)."""
    clock = OffsetClock(LoopClock(wall_start=1_700_000_000.0))
    gate = Gate(Engine(clock), poll_interval_s=3600)
    flips: dict[str, float] = {}
    gate.on_expire(lambda item: flips.__setitem__(item.session.user, anyio.current_time()))
    async with gate:
        start = anyio.current_time()
        await gate.create_session("first", expires_after_s=300)
        await gate.create_session("second", expires_after_s=500)
        await anyio.sleep(1)  # the sweeper now sleeps until the 300 s deadline
        clock.advance(300)
        assert await gate.sweep_now() == 1
        await anyio.sleep(1000)
    assert flips["first"] - start == pytest.approx(1.0)
    # Due 200 s after the jump: flipped then, not when the sweeper's old sleep (300 s) ended.
    assert flips["second"] - start == pytest.approx(200.0)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_faults_reach_routes_guarded_by_the_asgi_middleware(anyio_backend: str) -> None:
    """A ``DevGate`` behind ``RatekeeperMiddleware`` (an app's own REST routes on a real
    uvicorn) answers a pending fault with the real refusal, then admits."""
    gate = DevGate(Engine(ManualClock()), faults=FaultTable())

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = RatekeeperMiddleware(Starlette(routes=[Route("/v1/hello", hello)]), gate=gate)
    session = await gate.create_session("u", max_requests_per_1_minute=5)
    gate.faults.add(Fault("rate_limited", session.id, retry_after_s=30))
    expected = verdict_for(Decision(False, Reason.RATE_LIMITED, 5, 0, 30.0, 30.0, session.id))
    headers = {"Authorization": f"Bearer {session.client_secret}"}
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        refused = await client.get("/v1/hello", headers=headers)
        admitted = await client.get("/v1/hello", headers=headers)
    assert refused.status_code == 429
    assert refused.json() == expected.error
    for name, value in expected.headers:
        assert refused.headers[name] == value
    assert (admitted.status_code, admitted.text) == (200, "hello")
    assert admitted.headers["x-ratelimit-remaining-requests"] == "4"
    assert count(gate, "ratekeeper_decisions_total", outcome="injected_rate_limited") == 1
