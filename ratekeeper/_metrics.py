"""Prometheus metrics for the gate, on an injected ``CollectorRegistry``, and a ``/metrics`` app.

Labels hold only small closed sets (an outcome, a status, an operation): never a session id,
a user or a secret. Label children used on the hot path are bound once, at construction.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ._types import CircuitStatistics, EngineStatistics, Reason

#: Every value of the ``outcome`` label of ``ratekeeper_decisions_total``.
OUTCOMES = (
    *(reason.value for reason in Reason),
    "missing_secret",
    "fail_open",
    "fail_closed",
)

#: The ``outcome`` values of refusals injected by ``ratekeeper serve --dev`` (its
#: ``/ratekeeper/dev/faults`` route), apart from the real ones so that a dashboard never
#: mistakes a test for production. Only a ``--dev`` service ever has these series.
INJECTED_OUTCOMES = (
    "injected_rate_limited",
    "injected_expired",
    "injected_cancelled",
    "injected_backend_unavailable",
)

#: Durations from 1 ms to 10 s in 1-2.5-5 steps: the middle of every histogram of seconds
#: here, so that their buckets line up on one dashboard.
DURATION_STEPS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Buckets of ``ratekeeper_expiry_lag_seconds``: sub-millisecond up to a minute.
EXPIRY_LAG_BUCKETS = (0.0005, *DURATION_STEPS_S, 60.0)

#: Buckets of ``ratekeeper_sweep_batch_size`` (sessions flipped per sweep call).
BATCH_SIZE_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)

#: Backend operations named by ``ratekeeper_backend_errors_total{operation}``.
OPERATIONS = (
    "admit",
    "create_session",
    "cancel",
    "get",
    "lookup",
    "reserve_upload",
    "statistics",
    "sweep",
)


class DecisionCount:
    """One ``outcome`` of ``ratekeeper_decisions_total``: ``inc()`` adds to a plain number.

    Counted on every admission, so without the lock a prometheus-client child takes on every
    ``inc``: not thread-safe, like the gate that counts (one event loop).
    """

    __slots__ = ("_created", "_value")

    def __init__(self) -> None:
        self._value = 0.0
        self._created = time.time()

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (>= 0), as ``prometheus_client.Counter.inc`` does."""
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._value += amount

    def get(self) -> float:
        """Return the count so far."""
        return self._value


class DecisionCounter(Collector):
    """``ratekeeper_decisions_total{outcome}``, exported as a prometheus-client ``Counter``.

    The same samples (``_total`` and, unless prometheus-client's created series are
    disabled, ``_created``), the same ``labels(outcome=...)`` to get a child with ``inc()``;
    but the children count in plain numbers, read at each scrape, so an admission's count
    costs no lock and a few calls less. Registers itself on ``registry`` as a Counter does.
    Not thread-safe: one event loop counts (see :class:`DecisionCount`).
    """

    _NAME = "ratekeeper_decisions"
    _DOCUMENTATION = "Admission decisions made by the gate, by outcome."

    def __init__(self, registry: CollectorRegistry) -> None:
        self._children: dict[str, DecisionCount] = {}
        registry.register(self)

    def labels(self, *values: object, **names: object) -> DecisionCount:
        """Return the child counting one outcome: ``labels(outcome="allowed")``."""
        if values and names:
            raise ValueError("Can't pass both *args and **kwargs")
        if names:
            if list(names) != ["outcome"]:
                raise ValueError("Incorrect label names")
            values = (names["outcome"],)
        if len(values) != 1:
            raise ValueError("Incorrect label count")
        key = str(values[0])
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = DecisionCount()
        return child

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        # prometheus-client's own switch (PROMETHEUS_DISABLE_CREATED_SERIES,
        # disable_created_metrics()), read as its Counter reads it, at each scrape.
        created = getattr(prometheus_client.metrics, "_use_created", True)
        for outcome, child in list(self._children.items()):
            family.add_metric([outcome], child._value, created=child._created if created else None)
        yield family

    @classmethod
    def _family(cls) -> CounterMetricFamily:
        return CounterMetricFamily(cls._NAME, cls._DOCUMENTATION, labels=["outcome"])

    def __repr__(self) -> str:
        return "DecisionCounter(ratekeeper_decisions_total)"


class _SessionsCollector(Collector):
    """Reports ``ratekeeper_sessions{status}`` from backend statistics at scrape time."""

    def __init__(self, read: Callable[[], EngineStatistics | None]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        # Describing without reading keeps registration free of backend calls.
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        stats = self._read()
        if stats is not None:
            family.add_metric(["active"], stats.active)
            family.add_metric(["expired"], stats.expired)
            family.add_metric(["cancelled"], stats.cancelled)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "ratekeeper_sessions",
            "Sessions held by the backend, by status (ended ones while retained).",
            labels=["status"],
        )


class _CircuitCollector(Collector):
    """Reports a backend's circuit breaker (``ratekeeper_backend_circuit_*``) at scrape time."""

    def __init__(self, read: Callable[[], CircuitStatistics]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        stats = self._read()
        is_open, transitions, rejected = self._families()
        is_open.add_metric([], 1.0 if stats.open else 0.0)
        transitions.add_metric(["open"], stats.opened)
        transitions.add_metric(["closed"], stats.closed)
        rejected.add_metric([], stats.rejected)
        yield from (is_open, transitions, rejected)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                "ratekeeper_backend_circuit_open",
                "1 while the backend's circuit breaker is open (calls fail at once), else 0.",
            ),
            CounterMetricFamily(
                "ratekeeper_backend_circuit_transitions",
                "Times the backend's circuit breaker opened or closed, by the state entered.",
                labels=["to"],
            ),
            CounterMetricFamily(
                "ratekeeper_backend_circuit_rejected",
                "Backend calls answered at once, without reaching the backend, while open.",
            ),
        )


class GateMetrics:
    """The gate's collectors, created on one registry.

    Args:
        registry: where to register; the caller owns it (the gate makes a private one unless
            given one).
        statistics: returns the backend's current statistics, or ``None`` when unknown; read
            at every scrape for the ``ratekeeper_sessions`` gauge.
        circuit: returns the backend's circuit breaker statistics, for backends that have
            one; read at every scrape for ``ratekeeper_backend_circuit_*``.

    Attributes:
        decisions: ``ratekeeper_decisions_total{outcome}`` (a :class:`DecisionCounter`:
            ``labels(outcome=...)`` as on a ``Counter``; not thread-safe).
        sessions_created: ``ratekeeper_sessions_created_total``.
        sessions_expired: ``ratekeeper_sessions_expired_total``.
        sessions_cancelled: ``ratekeeper_sessions_cancelled_total``.
        expiry_lag: ``ratekeeper_expiry_lag_seconds`` (deadline to flip).
        sweep_batch_size: ``ratekeeper_sweep_batch_size``.
        backend_errors: ``ratekeeper_backend_errors_total{operation}``.
        callback_errors: ``ratekeeper_expiry_callback_errors_total``.
        outcome: the pre-bound ``decisions`` child for each outcome.
        backend_error: the pre-bound ``backend_errors`` child for each operation.

    prometheus-client's collectors are thread-safe; ``decisions`` is counted from the gate's
    one event loop only.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        statistics: Callable[[], EngineStatistics | None] | None = None,
        circuit: Callable[[], CircuitStatistics] | None = None,
    ) -> None:
        self.registry = registry
        # Counted on every admission: plain numbers, no lock (DecisionCounter).
        self.decisions = DecisionCounter(registry)
        self.sessions_created = Counter(
            "ratekeeper_sessions_created", "Sessions created through the gate.", registry=registry
        )
        self.sessions_expired = Counter(
            "ratekeeper_sessions_expired",
            "Sessions flipped to expired by this gate's sweeper.",
            registry=registry,
        )
        self.sessions_cancelled = Counter(
            "ratekeeper_sessions_cancelled",
            "Sessions cancelled through the gate (each counted once).",
            registry=registry,
        )
        self.expiry_lag = Histogram(
            "ratekeeper_expiry_lag_seconds",
            "Seconds from a session's deadline to the sweeper flipping it to expired.",
            buckets=EXPIRY_LAG_BUCKETS,
            registry=registry,
        )
        self.sweep_batch_size = Histogram(
            "ratekeeper_sweep_batch_size",
            "Sessions flipped to expired per sweep call (empty sweeps not observed).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.backend_errors = Counter(
            "ratekeeper_backend_errors",
            "Backend operations that failed with BackendError, by operation.",
            ["operation"],
            registry=registry,
        )
        self.callback_errors = Counter(
            "ratekeeper_expiry_callback_errors",
            "Expiry callbacks that raised (the sweeper logs them and carries on).",
            registry=registry,
        )
        # Bound once: .labels() hashes and locks; the hot path must not pay that per call.
        self.outcome = {name: self.decisions.labels(outcome=name) for name in OUTCOMES}
        self.backend_error = {
            name: self.backend_errors.labels(operation=name) for name in OPERATIONS
        }
        if statistics is not None:
            registry.register(_SessionsCollector(statistics))
        if circuit is not None:
            registry.register(_CircuitCollector(circuit))

    def __repr__(self) -> str:
        return f"GateMetrics(registry={self.registry!r})"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class MetricsApp:
    """A pure ASGI app serving a registry in Prometheus' text format (``GET`` and ``HEAD``).

    An instance, not a function, so Starlette's ``Route("/metrics", app)`` runs it as an ASGI
    app (a plain function endpoint would be called as ``handler(request)``). It answers every
    path it is given; under ``Mount("/metrics", app)`` Starlette redirects ``/metrics`` to
    ``/metrics/``, so prefer ``Route``. Safe to share across threads if ``before_scrape`` is.

    Args:
        registry: the registry to expose (e.g. ``gate.registry``).
        before_scrape: awaited before each scrape, e.g. to refresh backend statistics.
    """

    __slots__ = ("before_scrape", "registry")

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.registry = registry
        self.before_scrape = before_scrape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request with the registry's current samples (405 unless GET/HEAD)."""
        if scope["type"] != "http":
            return  # lifespan and websockets: nothing to do
        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD"):
            body = b'{"error":{"message":"Method not allowed: use GET.","type":"invalid_request_error","param":null,"code":"method_not_allowed"}}'  # noqa: E501 - one literal
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"allow", b"GET, HEAD"),
            ]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if self.before_scrape is not None:
            await self.before_scrape()
        output = generate_latest(self.registry)
        headers = [
            (b"content-type", CONTENT_TYPE_LATEST.encode()),
            (b"content-length", str(len(output)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else output})

    def __repr__(self) -> str:
        return f"MetricsApp(registry={self.registry!r})"


def metrics_app(
    registry: CollectorRegistry,
    *,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> MetricsApp:
    """Return a pure ASGI app that serves ``registry`` in Prometheus' text format.

    Route it at ``/metrics``: ``Route("/metrics", metrics_app(registry))``.

    Args:
        registry: the registry to expose (e.g. ``gate.registry``).
        before_scrape: awaited before each scrape, e.g. to refresh backend statistics.
    """
    return MetricsApp(registry, before_scrape=before_scrape)
