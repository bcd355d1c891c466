"""The sweeper on an in-process engine: a clump is flipped before its callbacks run, and the
lag histogram, observed once per batch, ends up as if each session had been observed."""

from __future__ import annotations

import anyio
import pytest
from prometheus_client import CollectorRegistry, Histogram

from ratekeeper import Engine, Gate, ManualClock
from ratekeeper._metrics import EXPIRY_LAG_BUCKETS
from ratekeeper._sweeper import _observe_many, _observe_together
from ratekeeper._types import Expired

pytestmark = pytest.mark.anyio


def count(gate: Gate, name: str, **labels: str) -> float:
    value = gate.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_a_clump_is_flipped_before_its_callbacks_run(clock: ManualClock) -> None:
    """Every due session is expired (and off the active count) before the first callback."""
    engine = Engine(clock)
    gate = Gate(engine, sweep_batch=100, poll_interval_s=3600)
    seen: list[tuple[int, float]] = []

    async def callback(item: Expired) -> None:
        seen.append((engine.statistics().active, item.lag_s))
        await anyio.lowlevel.checkpoint()  # a callback that awaits, as real ones do

    gate.on_expire(callback)
    for n in range(250):
        await gate.create_session(f"u{n}", expires_after_s=5)
    clock.advance(5.003)
    async with gate:
        for _ in range(10_000):  # bounded: a few hundred turns are plenty
            await anyio.lowlevel.checkpoint()
            if len(seen) == 250:
                break
    assert {active for active, _ in seen} == {0}
    assert [lag for _, lag in seen] == [pytest.approx(0.003)] * 250
    assert count(gate, "ratekeeper_sessions_expired_total") == 250
    assert count(gate, "ratekeeper_expiry_lag_seconds_count") == 250
    assert count(gate, "ratekeeper_expiry_lag_seconds_bucket", le="0.0025") == 0
    assert count(gate, "ratekeeper_expiry_lag_seconds_bucket", le="0.005") == 250
    assert count(gate, "ratekeeper_expiry_lag_seconds_sum") == pytest.approx(250 * 0.003)
    assert count(gate, "ratekeeper_sweep_batch_size_count") == 3


async def test_without_callbacks_a_clump_is_counted_at_the_flip(clock: ManualClock) -> None:
    """No callback: no values are built, and the metrics count every session once."""
    engine = Engine(clock)
    gate = Gate(engine, sweep_batch=100, poll_interval_s=3600)
    for n in range(250):
        await gate.create_session(f"u{n}", expires_after_s=5 + n % 2)
    clock.advance(6.5)
    async with gate:
        for _ in range(10_000):
            await anyio.lowlevel.checkpoint()
            if count(gate, "ratekeeper_sessions_expired_total") == 250:
                break
    assert engine.statistics().expired == 250
    assert count(gate, "ratekeeper_sessions_expired_total") == 250
    assert count(gate, "ratekeeper_expiry_lag_seconds_count") == 250
    # 125 sessions 1.5 s late, 125 sessions 0.5 s late.
    assert count(gate, "ratekeeper_expiry_lag_seconds_bucket", le="0.5") == 125
    assert count(gate, "ratekeeper_expiry_lag_seconds_bucket", le="2.5") == 250
    assert count(gate, "ratekeeper_expiry_lag_seconds_sum") == pytest.approx(125 * 2.0)


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    return registry, Histogram("lag_seconds", "lag", registry=registry, buckets=EXPIRY_LAG_BUCKETS)


@pytest.mark.parametrize(
    "values",
    [
        [0.0031, 0.0032, 0.004],  # one bucket
        [0.0005, 0.0005, 0.0005],  # exactly on a bound
        [0.0004, 0.0006, 2.0, 100.0],  # several buckets, and +Inf
        [-0.001, 0.0],  # below 0: observed as 0
    ],
)
def test_observing_together_equals_observing_each(values: list[float]) -> None:
    """Counts per bucket, count and sum come out as with one ``observe`` per value."""
    each_registry, each = _histogram()
    for value in values:
        each.observe(max(value, 0.0))
    together_registry, together = _histogram()
    _observe_many(together, values)
    expected = {
        (s.name, tuple(s.labels.items())): s.value
        for s in next(iter(each_registry.collect())).samples
        if not s.name.endswith("_created")
    }
    got = {
        (s.name, tuple(s.labels.items())): s.value
        for s in next(iter(together_registry.collect())).samples
        if not s.name.endswith("_created")
    }
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value)


def test_observing_together_refuses_values_that_span_buckets() -> None:
    """Bounds in two buckets: nothing is observed, and the caller must observe each."""
    registry, histogram = _histogram()
    assert not _observe_together(histogram, 2, 0.0004, 0.0006, 0.001)
    assert registry.get_sample_value("lag_seconds_count") == 0
    assert _observe_together(histogram, 2, 0.0006, 0.0009, 0.0015)
    assert registry.get_sample_value("lag_seconds_count") == 2
    assert registry.get_sample_value("lag_seconds_bucket", {"le": "0.001"}) == 2


async def test_the_sweeper_reports_a_batch_at_a_time_after_one_flip(clock: ManualClock) -> None:
    """The whole clump leaves the active count at once; each batch is then counted in the
    metrics and told to the callbacks before the next is reported."""
    engine = Engine(clock)
    gate = Gate(engine, sweep_batch=100, poll_interval_s=3600)
    seen: list[tuple[int, float]] = []

    def callback(item: Expired) -> None:
        seen.append((engine.statistics().active, count(gate, "ratekeeper_sessions_expired_total")))

    gate.on_expire(callback)
    for n in range(500):
        await gate.create_session(f"u{n}", expires_after_s=5)
    clock.advance(5)
    async with gate:
        for _ in range(10_000):
            await anyio.lowlevel.checkpoint()
            if len(seen) == 500:
                break
    assert len(seen) == 500
    assert {active for active, _ in seen} == {0}
    assert [counted for _, counted in seen[::100]] == [100, 200, 300, 400, 500]
    assert count(gate, "ratekeeper_sessions_expired_total") == 500
    assert count(gate, "ratekeeper_sweep_batch_size_count") == 5
