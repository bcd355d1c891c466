"""The leaks found by the adversarial run (issue 12), one test each, against the service served
by plain ``uvicorn --factory ratekeeper.server._app:app_from_env --log-level trace`` (none of
``ratekeeper serve``'s logging configuration: the app's lifespan installs the redaction).

:mod:`.test_no_leaks` drives every path on every way of serving; these name the cases.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ratekeeper._secrets import new_client_secret

from .leaks import leaks
from .test_no_leaks import BETA, Service, _session


class Logged:
    """The running service and what it logged so far."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.secret = _session(service)
        self.key = service.keys[0]
        self.http = httpx.Client(base_url=service.url, timeout=30)

    def log(self) -> str:
        """Everything logged up to now (a marker request is logged after everything sent
        before it: wait for it)."""
        marker = uuid.uuid4().hex
        self.http.get("/healthz", params={"marker": marker})
        for _ in range(1000):  # written as the marker's response starts: poll the files
            output = self.service.output()
            text = output["stdout"] + output["stderr"]
            if marker in text:
                return text
            self.http.get("/healthz")
        raise AssertionError("the marker request was never logged")

    def rest(self, method: str, path: str, **options: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}", **BETA}
        return self.http.request(method, path, headers=headers, **options)  # type: ignore[arg-type]

    def chatkit(self, body: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secret}"}
        return self.http.post("/chatkit", json=body, headers=headers)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    service = Service("uvicorn", "trace", "text", "memory", tmp_path_factory.mktemp("leaks"))
    service.start()
    try:
        running = Logged(service)
        with running.http:
            yield running
    finally:
        service.stop()


def _clean(logged: Logged, *texts: str) -> None:
    searched = [logged.secret, *logged.service.keys]
    found = leaks(searched, {f"answer {i}": text for i, text in enumerate(texts)})
    assert not found, found


@pytest.mark.parametrize(
    ("kind", "param"),
    [
        ("threads.get_by_id", "thread_id"),
        ("items.list", "thread_id"),
        ("attachments.delete", "attachment_id"),
    ],
)
def test_chatkit_not_found_does_not_quote_a_secret(logged: Logged, kind: str, param: str) -> None:
    """Was: ``"Thread ek_… not found."`` with the whole secret."""
    response = logged.chatkit({"type": kind, "params": {param: logged.secret}})
    assert response.status_code == 404
    assert "ek_…" in response.json()["error"]["message"]
    _clean(logged, response.text)


def test_chatkit_unknown_type_does_not_quote_a_secret(logged: Logged) -> None:
    """Was: ``"Invalid ChatKit request: Input tag 'ek_…' found using 'type'…"``."""
    response = logged.chatkit({"type": logged.secret, "params": {}})
    assert response.status_code == 400
    assert "Input tag 'ek_…'" in response.json()["error"]["message"]
    _clean(logged, response.text)


def test_a_thread_named_by_a_key_is_not_quoted(logged: Logged) -> None:
    """Was: ``GET /v1/chatkit/threads/<key>`` → ``"…with id '<key>' not found."``."""
    response = logged.rest("GET", f"/v1/chatkit/threads/{logged.key}")
    assert response.status_code == 404
    _clean(logged, response.text)


def test_405_does_not_name_a_path_holding_a_key(logged: Logged) -> None:
    """Was: ``POST /v1/chatkit/threads/<key>`` → 405 naming the path."""
    response = logged.rest("POST", f"/v1/chatkit/threads/{logged.key}")
    assert response.status_code == 405
    assert "Method not allowed (POST /v1/chatkit/threads/…)" in response.text
    _clean(logged, response.text)


def test_404_does_not_name_a_url_holding_a_key(logged: Logged) -> None:
    """Was: ``GET /<key>`` → ``"Invalid URL (GET /<key>)."``."""
    response = logged.rest("GET", f"/{logged.key}")
    assert response.status_code == 404
    assert "Invalid URL (GET /…)" in response.text
    _clean(logged, response.text)


def test_the_access_log_hides_an_api_key_in_a_query(logged: Logged) -> None:
    """Was: ``?api_key=<key>`` written verbatim (and ``?x=ek_…`` under plain uvicorn)."""
    logged.http.get("/healthz", params={"api_key": logged.key, "x": logged.secret})
    log = logged.log()
    assert "/healthz?api_key=…&x=ek_…" in log
    _clean(logged, log)


def test_trace_lines_hide_secrets_in_paths_raw_paths_and_query_strings(logged: Logged) -> None:
    """Was: the ASGI scope dict (``'raw_path': b'…'``) written verbatim at trace level."""
    logged.http.get(f"/ratekeeper/admit/{logged.secret}", params={"client_secret": logged.secret})
    logged.rest("POST", f"/v1/chatkit/sessions/{logged.secret}/cancel")
    logged.rest("GET", f"/v1/chatkit/threads/{logged.key}")
    log = logged.log()
    assert "'raw_path': b'/v1/chatkit/threads/…'" in log
    assert "'query_string': b'client_secret=ek_…'" in log
    _clean(logged, log)


@pytest.mark.parametrize("shaped", ["key", "secret", "unknown secret"])
def test_a_request_id_shaped_like_a_credential_is_neither_echoed_nor_logged(
    logged: Logged, shaped: str
) -> None:
    value = {"key": logged.key, "secret": logged.secret, "unknown secret": new_client_secret()}[
        shaped
    ]
    response = logged.http.get("/healthz", headers={"x-request-id": value})
    assert response.headers["x-request-id"].startswith("req_")
    found = leaks([value], {"answer": str(response.headers), "log": logged.log()})
    assert not found, found


def test_the_log_files_exist(logged: Logged) -> None:
    """The module's service writes where :meth:`Logged.log` reads."""
    assert Path(logged.service.data_dir / "stderr").exists()
