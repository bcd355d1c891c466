"""pytest-benchmark cases for the in-process engine: admission, creation, sweeping, memory.

Run with ``.venv/bin/pytest benchmarks -q --benchmark-only`` (``make bench``). These are
measurements, not tests: nothing here asserts on a duration. ``make test`` never collects this
directory (``testpaths = ["tests"]``).

Admission runs on :class:`~ratekeeper.SystemClock`, the clock a deployment uses, so the
figures include reading the monotonic clock. Creation and sweeping run on a
:class:`~ratekeeper.ManualClock`, which lets a million sessions fall due at once without
waiting ten minutes.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from ratekeeper import Engine, ManualClock
from ratekeeper._types import Decision, Reason

HERE = Path(__file__).resolve().parent

#: Sessions in the many-sessions admission case, and their limit (the issue's workload).
MANY_SESSIONS = 100_000
MANY_LIMIT = 10
#: Decisions per round in the many-sessions case: about 10 per session, so the mix of
#: admissions and rejections is realistic (roughly 4 in 5 admitted).
MANY_CALLS = 1_000_000
#: Sessions due at once in the sweep case.
SWEEP_SESSIONS = 1_000_000


def _secret(engine: Engine, limit: int) -> str:
    secret = engine.create_session("bench", max_requests_per_1_minute=limit).client_secret
    assert secret is not None
    return secret


# -- admission on one hot session -------------------------------------------------------------


def test_admit_hot_session_admitted(benchmark: BenchmarkFixture) -> None:
    """One session whose limit is never reached: every decision admits and records a time."""
    engine = Engine()
    secret = _secret(engine, 10**9)
    decision: Decision = benchmark(engine.admit, secret)
    assert decision.allowed


def test_admit_hot_session_rejected(benchmark: BenchmarkFixture) -> None:
    """One session at its limit (100/min): every decision rejects, as for a hammering client."""
    engine = Engine()
    secret = _secret(engine, 100)
    for _ in range(100):
        engine.admit(secret)
    decision: Decision = benchmark(engine.admit, secret)
    assert decision.reason is Reason.RATE_LIMITED


def test_admit_unknown_secret(benchmark: BenchmarkFixture) -> None:
    """A secret that matches no session: the cost of hashing and one failed lookup."""
    engine = Engine()
    _secret(engine, 10)
    decision: Decision = benchmark(engine.admit, "ek_" + "x" * 43)
    assert decision.reason is Reason.UNKNOWN_SESSION


# -- the decision value ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FrozenDecision:
    """What ``Decision`` would be as a frozen dataclass (the house default for values)."""

    allowed: bool
    reason: Reason
    limit: int
    remaining: int
    retry_after: float
    reset_after: float
    session_id: str | None = None


@pytest.mark.parametrize("kind", ["namedtuple", "namedtuple-fast-path", "frozen-dataclass"])
def test_build_decision(benchmark: BenchmarkFixture, kind: str) -> None:
    """Why ``Decision`` is a NamedTuple: the cost of building one, three ways.

    ``namedtuple-fast-path`` is how :mod:`ratekeeper.window` builds it (``tuple.__new__``,
    skipping NamedTuple's Python-level ``__new__``).
    """
    args = (True, Reason.ALLOWED, 10, 9, 0.0, 60.0, "cksess_123")
    if kind == "namedtuple":
        benchmark(Decision, *args)
    elif kind == "namedtuple-fast-path":
        benchmark(tuple.__new__, Decision, args)
    else:
        benchmark(_FrozenDecision, *args)


# -- admission over many sessions ----------------------------------------------------------------


def test_admit_100k_sessions_random(benchmark: BenchmarkFixture) -> None:
    """1,000,000 decisions on 100,000 sessions at 10/min, keys drawn at random (seed 7).

    One round is the whole sequence on a fresh engine whose sessions have each been admitted
    once; divide the time by 1,000,000 for the cost of one decision.
    """
    rng = random.Random(7)

    def setup() -> tuple[tuple[Callable[[str], Decision], list[str]], dict[str, object]]:
        engine = Engine(max_sessions=MANY_SESSIONS)
        secrets = [_secret(engine, MANY_LIMIT) for _ in range(MANY_SESSIONS)]
        for secret in secrets:
            engine.admit(secret)
        sequence = [secrets[rng.randrange(MANY_SESSIONS)] for _ in range(MANY_CALLS)]
        return (engine.admit, sequence), {}

    def run(admit: Callable[[str], Decision], sequence: list[str]) -> None:
        for secret in sequence:
            admit(secret)

    benchmark.extra_info["decisions_per_round"] = MANY_CALLS
    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)


# -- creation ------------------------------------------------------------------------------------


def test_create_session(benchmark: BenchmarkFixture) -> None:
    """Create one session: validate, mint a secret, hash it to its id, bucket its deadline.

    ``benchmarks/create_bench.py --baseline-src PATH`` measures the same against older code.
    """
    engine = Engine(ManualClock(), max_sessions=10_000_000)
    create = engine.create_session
    session = benchmark(create, "bench")
    assert session.client_secret is not None


# -- sweeping ------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1_000, 10_000])
def test_sweep_1m_due_sessions(benchmark: BenchmarkFixture, batch: int) -> None:
    """Flip 1,000,000 due sessions to expired, ``batch`` at a time, as the gate's sweeper does.

    Deadlines are spread over 600 s; the clock then jumps past all of them. One round is the
    whole sweep; divide by 1,000,000 for the cost per session. ``worst_batch_ms`` is the longest
    single ``sweep()`` call, which is how long the sweeper holds the event loop.
    """
    worst: list[float] = []

    def setup() -> tuple[tuple[Engine], dict[str, object]]:
        clock = ManualClock()
        engine = Engine(clock, max_sessions=SWEEP_SESSIONS)
        for i in range(SWEEP_SESSIONS):
            engine.create_session("bench", expires_after_s=1 + i % 600)
        clock.advance(601)
        return (engine,), {}

    def run(engine: Engine) -> None:
        import time

        longest = 0.0
        while True:
            start = time.perf_counter()
            flipped = engine.sweep(batch)
            longest = max(longest, time.perf_counter() - start)
            if not flipped:
                break
        worst.append(longest * 1e3)

    benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    benchmark.extra_info["sessions"] = SWEEP_SESSIONS
    benchmark.extra_info["worst_batch_ms"] = round(max(worst), 2)


# -- memory --------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["idle", "full"])
def test_memory_1m_live_sessions(benchmark: BenchmarkFixture, window: str) -> None:
    """RSS per session with 1,000,000 live sessions, measured by psutil in a fresh subprocess.

    ``idle``: sessions never used. ``full``: each session has admitted its 10 requests, so its
    window holds 10 times. The timing is the subprocess's whole run (creating them).
    """
    result: dict[str, float] = {}

    def run() -> None:
        out = subprocess.run(
            [sys.executable, str(HERE / "memory_sessions.py"), "--json", "--window", window],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        result.update(json.loads(out.stdout))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["sessions"] == 1_000_000
