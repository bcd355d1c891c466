"""HTTP metrics of the service's own routes, process metrics and ``ratekeeper_build_info``.

Requests are labelled by the matched route's path template (``/v1/chatkit/threads/{thread_id}``),
never by the raw path: an id in a path must not become a label value, or every thread would
make a new time series. A path no route matches is ``route="unmatched"``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from starlette.types import Scope

from .._metrics import DURATION_STEPS_S

#: The ``route`` label of a request no route matched (404s for unknown paths).
UNMATCHED_ROUTE = "unmatched"

#: Buckets of ``ratekeeper_http_request_duration_seconds``: 1 ms up to a minute, since a
#: streamed ChatKit answer is observed when its last byte is sent.
HTTP_DURATION_BUCKETS = (*DURATION_STEPS_S, 30.0, 60.0)


def _version() -> str:
    try:
        return importlib.metadata.version("ratekeeper")
    except importlib.metadata.PackageNotFoundError:  # running from a tree never installed
        return "unknown"


def register_process_metrics(registry: CollectorRegistry) -> None:
    """Add ``process_*``, ``python_info`` and ``ratekeeper_build_info{version}`` to ``registry``.

    Each collector already on the registry (e.g. prometheus-client's global ``REGISTRY``, which
    has the process and platform ones from the start) is left as it is rather than doubled.
    """
    for make in (
        lambda: ProcessCollector(registry=registry),
        lambda: PlatformCollector(registry=registry),
        lambda: Info(
            "ratekeeper_build", "The running ratekeeper's version.", registry=registry
        ).info({"version": _version()}),
    ):
        # ValueError is "Duplicated timeseries": someone registered that one already.
        with contextlib.suppress(ValueError):
            make()


class HttpMetrics:
    """``ratekeeper_http_requests_total`` and ``ratekeeper_http_request_duration_seconds``.

    Args:
        registry: where to register (the gate's registry, so one ``/metrics`` shows both).

    prometheus-client's collectors are thread-safe, and so is this holder: its caches of
    labelled children only ever gain entries, each the child ``labels()`` returns anyway.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ratekeeper_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "ratekeeper_http_request_duration_seconds",
            "Seconds from a request's arrival to its response's last byte, by route template.",
            ["route", "method"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        )
        # ``labels()`` takes a lock and checks its arguments on every call: too dear for
        # every request. Routes, methods and statuses are bounded sets, so are these caches.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    def count(self, route: str, method: str, status: int) -> None:
        """Count one answered request."""
        key = (route, method, status)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.requests.labels(route, method, str(status))
        child.inc()

    def observe(self, route: str, method: str, seconds: float) -> None:
        """Observe one request's duration."""
        key = (route, method)
        child = self._timers.get(key)
        if child is None:
            child = self._timers[key] = self.duration.labels(route, method)
        child.observe(seconds)


def route_of(scope: Scope) -> str:
    """The ``route`` label of the request of ``scope``: its route's template, or ``unmatched``."""
    # Starlette's router puts the matched route (also a partial match, i.e. a 405) in the
    # scope it was given, which is the one this middleware passed down.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


#: Methods kept as label values; anything else is ``other``, so a client cannot make series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
