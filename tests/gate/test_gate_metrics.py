"""Metrics: scrape the exposition text after a known sequence and check every number."""

from __future__ import annotations

from typing import Any

import httpx
import prometheus_client.metrics
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ratekeeper import Gate, ManualClock, metrics_app
from ratekeeper._metrics import DecisionCounter

from ._server import serving

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse exposition text into {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(gate: Gate) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return samples(generate_latest(gate.registry).decode())


async def run_known_sequence(gate: Gate, clock: ManualClock) -> list[str]:
    """3 sessions; 2 allowed + 1 limited; 1 cancelled twice; 1 expired; 1 unknown; 1 missing."""
    a = await gate.create_session("alice", max_requests_per_1_minute=2, expires_after_s=600)
    b = await gate.create_session("bob", expires_after_s=10)
    c = await gate.create_session("carol")
    for _ in range(3):
        await gate.check(a.client_secret)
    await gate.cancel(c.id)
    await gate.cancel(c.id)
    await gate.check(c.client_secret)
    await gate.check("ek_unknown")
    await gate.check(None)
    clock.advance(10.002)
    await gate.check(b.client_secret)
    await gate._sweeper.sweep_due()  # what the sweeper does when it wakes: one sweep, 1 ms late
    return [s.client_secret or "" for s in (a, b, c)] + [a.id, b.id, c.id, "alice", "bob"]


async def test_counters_and_gauges_after_a_known_sequence(gate: Gate, clock: ManualClock) -> None:
    await run_known_sequence(gate, clock)
    got = scrape(gate)
    outcome = "ratekeeper_decisions_total"
    assert got[(outcome, (("outcome", "allowed"),))] == 2
    assert got[(outcome, (("outcome", "rate_limited"),))] == 1
    assert got[(outcome, (("outcome", "cancelled"),))] == 1
    assert got[(outcome, (("outcome", "unknown_session"),))] == 1
    assert got[(outcome, (("outcome", "missing_secret"),))] == 1
    assert got[(outcome, (("outcome", "expired"),))] == 1
    assert got[(outcome, (("outcome", "fail_open"),))] == 0
    assert got[(outcome, (("outcome", "fail_closed"),))] == 0
    assert got[("ratekeeper_sessions_created_total", ())] == 3
    assert got[("ratekeeper_sessions_cancelled_total", ())] == 1
    assert got[("ratekeeper_sessions_expired_total", ())] == 1
    assert got[("ratekeeper_sessions", (("status", "active"),))] == 1
    assert got[("ratekeeper_sessions", (("status", "expired"),))] == 1
    assert got[("ratekeeper_sessions", (("status", "cancelled"),))] == 1
    assert got[("ratekeeper_sweep_batch_size_count", ())] == 1
    assert got[("ratekeeper_sweep_batch_size_sum", ())] == 1
    # The clock starts on a whole second, so the deadline was 10 s in; the sweep came 2 ms late.
    lag = "ratekeeper_expiry_lag_seconds"
    assert got[(lag + "_count", ())] == 1
    assert got[(lag + "_sum", ())] == pytest.approx(0.002)
    assert got[(lag + "_bucket", (("le", "0.001"),))] == 0
    assert got[(lag + "_bucket", (("le", "0.0025"),))] == 1
    assert got[("ratekeeper_backend_errors_total", (("operation", "admit"),))] == 0
    assert got[("ratekeeper_expiry_callback_errors_total", ())] == 0


async def test_no_label_or_value_carries_a_secret_id_or_user(
    gate: Gate, clock: ManualClock
) -> None:
    forbidden = await run_known_sequence(gate, clock)
    text = generate_latest(gate.registry).decode()
    for value in forbidden:
        assert value not in text
    labels = {
        name
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for name in sample.labels
    }
    assert labels <= {"outcome", "operation", "status", "le"}


async def test_fail_modes_and_backend_errors_are_counted(failing_backend: Any) -> None:
    closed = Gate(failing_backend)
    opened = Gate(failing_backend, fail_open=True)
    for _ in range(2):
        await closed.check("ek_x")
    for _ in range(3):
        await opened.check("ek_x")
    got_closed, got_open = scrape(closed), scrape(opened)
    outcome = "ratekeeper_decisions_total"
    errors = ("ratekeeper_backend_errors_total", (("operation", "admit"),))
    assert got_closed[(outcome, (("outcome", "fail_closed"),))] == 2
    assert got_closed[errors] == 2
    assert got_open[(outcome, (("outcome", "fail_open"),))] == 3
    assert got_open[errors] == 3
    # A backend that cannot report statistics reports no session counts rather than zeros.
    assert not any(name == "ratekeeper_sessions" for name, _ in got_open)


async def test_the_sessions_gauge_refreshes_from_other_backends_at_scrape(
    failing_backend: Any,
) -> None:
    gate = Gate(failing_backend)
    failing_backend.failing = False
    await gate.create_session("u1")
    await gate._refresh_statistics()
    assert scrape(gate)[("ratekeeper_sessions", (("status", "active"),))] == 1


async def test_two_gates_on_one_registry_collide_loudly(gate: Gate) -> None:
    registry = CollectorRegistry()
    Gate(gate.backend, registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gate(gate.backend, registry=registry)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_metrics_app_serves_prometheus_text_over_http(
    gate: Gate, clock: ManualClock
) -> None:
    await run_known_sequence(gate, clock)
    async with serving(gate.metrics_app()) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/metrics")
        head = await client.head("/metrics")
        post = await client.post("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = samples(response.text)
    assert got[("ratekeeper_sessions_created_total", ())] == 3
    assert head.status_code == 200
    assert head.content == b""
    assert post.status_code == 405
    assert post.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_metrics_app_works_on_any_registry() -> None:
    registry = CollectorRegistry()
    async with serving(metrics_app(registry)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.text == ""


async def test_check_session_fails_closed_and_says_so_even_on_a_fail_open_gate(
    failing_backend: Any,
) -> None:
    """A handler that needs the session cannot serve without it: 503, counted fail_closed."""
    opened = Gate(failing_backend, fail_open=True)
    verdict, session = await opened.check_session("ek_x")
    assert (verdict.status_code, session) == (503, None)
    got = scrape(opened)
    outcome = "ratekeeper_decisions_total"
    assert got[(outcome, (("outcome", "fail_closed"),))] == 1
    assert got[(outcome, (("outcome", "fail_open"),))] == 0
    assert got[("ratekeeper_backend_errors_total", (("operation", "admit"),))] == 1


async def test_check_session_admits_counts_and_returns_the_session(gate: Gate) -> None:
    created = await gate.create_session("alice", max_requests_per_1_minute=1)
    verdict, session = await gate.check_session(created.client_secret)
    assert verdict.allowed
    assert session is not None
    assert (session.id, session.user, session.status) == (created.id, "alice", "active")
    refused, none = await gate.check_session(created.client_secret)
    assert (refused.status_code, none) == (429, None)
    missing, none = await gate.check_session(None)
    assert (missing.status_code, none) == (401, None)
    got = scrape(gate)
    outcome = "ratekeeper_decisions_total"
    assert got[(outcome, (("outcome", "allowed"),))] == 1
    assert got[(outcome, (("outcome", "rate_limited"),))] == 1
    assert got[(outcome, (("outcome", "missing_secret"),))] == 1


# -- ratekeeper_decisions_total: plain counts, exported as a Counter exports them ------------


def _exposition_without_created_values(registry: CollectorRegistry) -> list[str]:
    lines = generate_latest(registry).decode().splitlines()
    return [line.rsplit(" ", 1)[0] if "_created{" in line else line for line in lines]


@pytest.mark.parametrize("created", [True, False])
def test_decision_counts_are_exported_exactly_as_a_prometheus_counter_exports_them(
    created: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus_client.metrics, "_use_created", created)
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    counter = DecisionCounter(ours)
    reference = Counter(
        "ratekeeper_decisions",
        "Admission decisions made by the gate, by outcome.",
        ["outcome"],
        registry=theirs,
    )
    for metric in (counter, reference):
        metric.labels(outcome="allowed").inc()
        metric.labels("allowed").inc(2.5)
        metric.labels(outcome="rate_limited")
        metric.labels(outcome="injected_expired").inc()
    assert _exposition_without_created_values(ours) == _exposition_without_created_values(theirs)
    assert counter.labels(outcome="allowed").get() == 3.5
    assert ("_created{" in generate_latest(ours).decode()) is created


def test_decision_counts_refuse_what_a_counter_refuses() -> None:
    counter = DecisionCounter(CollectorRegistry())
    with pytest.raises(ValueError, match="non-negative"):
        counter.labels(outcome="allowed").inc(-1)
    with pytest.raises(ValueError, match="label names"):
        counter.labels(reason="allowed")
    with pytest.raises(ValueError, match="label count"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="both"):
        counter.labels("a", outcome="b")
    registry = CollectorRegistry()
    DecisionCounter(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        DecisionCounter(registry)  # one family per registry, as for a Counter
