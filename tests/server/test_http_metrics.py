"""The service's own metrics over real uvicorn: HTTP requests by route template, process, build."""

from __future__ import annotations

import importlib.metadata
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ratekeeper.server._http_metrics import HttpMetrics
from ratekeeper.server._request_middleware import ServiceMiddleware

from .conftest import Live, serve

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_text(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10.0)
    assert response.status_code == 200, response.text
    return response.text


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def requests_of(got: Samples, route: str, method: str, status: str) -> float:
    key = (
        "ratekeeper_http_requests_total",
        (("method", method), ("route", route), ("status", status)),
    )
    return got.get(key, 0.0)


def added(before: Samples, after: Samples, route: str, method: str, status: str) -> float:
    """How many more ``route``/``method``/``status`` requests ``after`` counts than ``before``."""
    return requests_of(after, route, method, status) - requests_of(before, route, method, status)


def count_of(got: Samples, route: str, method: str) -> float:
    key = ("ratekeeper_http_request_duration_seconds_count", (("method", method), ("route", route)))
    return got.get(key, 0.0)


def test_a_thread_request_is_counted_under_its_template_and_the_id_appears_nowhere(
    live: Live,
) -> None:
    thread_id = f"cthr_{uuid.uuid4().hex}"
    template = "/v1/chatkit/threads/{thread_id}"
    before = parse(scrape_text(live.url))
    with live.http() as http:
        assert http.get(f"/v1/chatkit/threads/{thread_id}").status_code == 404
    text = scrape_text(live.url)
    got = parse(text)
    assert added(before, got, template, "GET", "404") == 1
    assert count_of(got, template, "GET") == count_of(before, template, "GET") + 1
    assert thread_id not in text


def test_an_unmatched_path_is_counted_as_unmatched(live: Live) -> None:
    secret_path = f"/no/such/{uuid.uuid4().hex}"
    before = parse(scrape_text(live.url))
    assert httpx.get(f"{live.url}{secret_path}", timeout=10.0).status_code == 404
    text = scrape_text(live.url)
    got = parse(text)
    assert added(before, got, "unmatched", "GET", "404") == 1
    assert secret_path not in text


def test_a_wrong_method_is_counted_under_the_route_with_its_405(live: Live) -> None:
    before = parse(scrape_text(live.url))
    assert httpx.put(f"{live.url}/healthz", timeout=10.0).status_code == 405
    got = parse(scrape_text(live.url))
    assert added(before, got, "/healthz", "PUT", "405") == 1


def test_an_unknown_method_is_labelled_other(live: Live) -> None:
    before = parse(scrape_text(live.url))
    assert httpx.request("PROPFIND", f"{live.url}/healthz", timeout=10.0).status_code == 405
    got = parse(scrape_text(live.url))
    assert added(before, got, "/healthz", "other", "405") == 1


def test_process_and_build_info_metrics_are_exported(live: Live) -> None:
    got = parse(scrape_text(live.url))
    names = {name for name, _ in got}
    assert "process_cpu_seconds_total" in names
    assert "process_resident_memory_bytes" in names
    assert "python_info" in names
    version = importlib.metadata.version("ratekeeper")
    assert got[("ratekeeper_build_info", (("version", version),))] == 1.0


def _middleware_app(release: threading.Event) -> tuple[Starlette, CollectorRegistry]:
    registry = CollectorRegistry()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first\n"
            await anyio.to_thread.run_sync(release.wait)
            yield b"last\n"

        return StreamingResponse(chunks())

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/stream/{stream_id}", stream),
            Route("/boom", boom),
        ],
        middleware=[Middleware(ServiceMiddleware, HttpMetrics(registry))],
    )
    return app, registry


def _wait_for(condition: Callable[[], bool]) -> None:
    # The server finishes its bookkeeping just after the client has the last byte: wait for it.
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def test_a_stream_is_counted_at_its_start_and_timed_to_its_end() -> None:
    release = threading.Event()
    app, registry = _middleware_app(release)
    template = "/stream/{stream_id}"
    with serve(app) as url, httpx.stream("GET", f"{url}/stream/s_1", timeout=10.0) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "first"
        got = parse(generate_latest(registry).decode())
        assert requests_of(got, template, "GET", "200") == 1
        assert count_of(got, template, "GET") == 0
        release.set()
        assert list(lines) == ["last"]
        _wait_for(lambda: count_of(parse(generate_latest(registry).decode()), template, "GET") == 1)


def test_an_endpoint_that_raises_is_counted_as_a_500() -> None:
    app, registry = _middleware_app(threading.Event())
    with serve(app) as url:
        assert httpx.get(f"{url}/boom", timeout=10.0).status_code == 500
        _wait_for(lambda: count_of(parse(generate_latest(registry).decode()), "/boom", "GET") == 1)
    got = parse(generate_latest(registry).decode())
    assert requests_of(got, "/boom", "GET", "500") == 1
