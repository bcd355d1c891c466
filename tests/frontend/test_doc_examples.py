"""The backend examples of docs/frontend.md and docs/migrating.md, against a live service.

tests/test_docs.py runs every block (they only build clients and define functions); here the
functions are called, with the documented client swapped for one on a real service.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI, OpenAI
from starlette.testclient import TestClient

from tests.service import ServiceProcess

_DOCS = Path(__file__).resolve().parents[2] / "docs"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def _run_block(page: str, number: int) -> dict[str, Any]:
    block = _BLOCK.findall((_DOCS / page).read_text())[number]
    namespace: dict[str, Any] = {"__name__": f"docs_{page}_{number}"}
    exec(compile(block, f"{page}[{number}]", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess("--store", "memory") as running:
        yield running


def _admitted(service: ServiceProcess, secret: str) -> int:
    headers = {"Authorization": f"Bearer {secret}"}
    return httpx.post(f"{service.url}/ratekeeper/admit", headers=headers).status_code


def test_frontend_session_endpoint_returns_a_working_secret(service: ServiceProcess) -> None:
    """The documented session endpoint mints a session whose secret the service admits."""
    namespace = _run_block("frontend.md", 0)
    namespace["ratekeeper"] = AsyncOpenAI(
        api_key=service.api_key, base_url=f"{service.url}/v1", max_retries=0
    )

    with TestClient(namespace["app"]) as client:
        response = client.post("/api/chatkit/session", headers={"x-authenticated-user": "u_doc"})
        # Its connections belong to the test client's event loop: close them there.
        assert client.portal is not None
        client.portal.call(namespace["ratekeeper"].close)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"client_secret", "expires_at"}
    assert isinstance(body["expires_at"], int)
    assert response.headers["cache-control"] == "no-store"
    assert _admitted(service, body["client_secret"]) == 200


def test_migrating_mint_session_returns_a_working_secret(service: ServiceProcess) -> None:
    """The migration guide's 'after' backend mints a session the service admits."""
    namespace = _run_block("migrating.md", 1)
    with OpenAI(api_key=service.api_key, base_url=f"{service.url}/v1") as client:
        namespace["client"] = client
        secret, expires_at = namespace["mint_session"]("u_doc")

    assert isinstance(expires_at, int)
    assert _admitted(service, secret) == 200
