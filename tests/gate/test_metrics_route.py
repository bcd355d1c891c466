"""``Route("/metrics", gate.metrics_app())``, exactly as docs/metrics.md shows it, on uvicorn."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from ._server import serving

pytestmark = pytest.mark.anyio

_DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def anyio_backend() -> str:
    """uvicorn serves asyncio only."""
    return "asyncio"


def documented_route_snippet() -> str:
    """The Python block in docs/metrics.md that routes ``gate.metrics_app()``."""
    blocks = re.findall(r"```python\n(.*?)```", (_DOCS / "metrics.md").read_text(), re.DOTALL)
    (block,) = [b for b in blocks if 'Route("/metrics", gate.metrics_app())' in b]
    return str(block)


async def test_the_documented_route_serves_metrics_without_a_redirect() -> None:
    namespace: dict[str, object] = {}
    exec(documented_route_snippet(), namespace)  # noqa: S102 - our own documentation
    app = namespace["app"]
    assert isinstance(app, Starlette)
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        get = await client.get("/metrics")
        head = await client.head("/metrics")
        post = await client.post("/metrics")
    assert get.status_code == 200, get.text
    assert get.headers["content-type"].startswith("text/plain")
    assert 'ratekeeper_decisions_total{outcome="allowed"} 0.0' in get.text
    assert head.status_code == 200
    assert head.content == b""
    assert post.status_code == 405
