"""``docs/nginx/ratekeeper.conf`` as shipped, in a real nginx in front of a real app.

A private nginx on loopback includes the docs file (placeholders filled in the way the docs say),
guarding a small counting app with a real ``ratekeeper serve``. Skipped with the reason when the
``nginx`` binary is missing, except under ``CI``, where that fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.requirements import find_program
from tests.service import ServiceProcess, free_port

pytestmark = pytest.mark.nginx

_DOCS = Path(__file__).resolve().parents[2] / "docs"
_CONFIG = _DOCS / "nginx" / "ratekeeper.conf"
_DOCS_PAGE = _DOCS / "server.md"
_STARTUP_TIMEOUT_S = 30.0
_RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "ratelimit-policy",
    "ratelimit",
)


class _App(ThreadingHTTPServer):
    """The app behind nginx: answers every GET and POST with 200 and counts them by path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AppHandler)
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def addr(self) -> str:
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"


class _AppHandler(BaseHTTPRequestHandler):
    server: _App

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.server.lock:
            self.server.hits[self.path] += 1
        body = b'{"app": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # http.server dispatches on these names.
    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the counts, not a log."""


def _nginx_binary() -> str:
    return find_program(
        "nginx",
        hint="Debian: apt-get install nginx",
        places=("/usr/sbin/nginx", "/usr/local/sbin/nginx"),
    )


_PLACEHOLDER = re.compile(r"\$\{[A-Z_]+\}")


def _documented_envsubst_format() -> str:
    """The ``envsubst '…'`` list of placeholders in docs/server.md's "Behind nginx"."""
    page = _DOCS_PAGE.read_text()
    section = page[page.index("#### Behind nginx") :]
    found = re.search(r"envsubst '([^']*)'", section)
    assert found is not None, "the Behind nginx section shows no envsubst command"
    return found.group(1)


def fill_placeholders(text: str, values: dict[str, str]) -> str:
    """Fill the docs config's placeholders the documented way: ``envsubst '${NAME} …'``.

    Falls back to replacing each ``${NAME}`` when ``envsubst`` (Debian: gettext-base) is missing.
    """
    envsubst = shutil.which("envsubst")
    if envsubst is not None:
        text = subprocess.run(
            [envsubst, _documented_envsubst_format()],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **values},
        ).stdout
    else:
        for name, value in values.items():
            text = text.replace("${" + name + "}", value)
    left = _PLACEHOLDER.findall(text)
    assert not left, f"placeholders of the docs config left unfilled: {left}"
    return text


def test_the_docs_name_every_placeholder() -> None:
    """The documented envsubst command fills exactly the placeholders the config has."""
    assert set(_documented_envsubst_format().split()) == set(
        _PLACEHOLDER.findall(_CONFIG.read_text())
    )


def _main_config(tmp: Path, include: Path) -> str:
    # Running as root, nginx would start its workers as nobody, who cannot enter pytest's
    # private temporary directory: keep them as the user running the test.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {include};
}}
"""


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while True:
        # Startup, not a timing assertion: poll until nginx accepts connections.
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    return _nginx_binary()


@pytest.fixture(scope="module")
def ratekeeper(nginx_binary: str) -> Iterator[ServiceProcess]:
    with ServiceProcess("--store", "memory") as service:
        yield service


@pytest.fixture(scope="module")
def app() -> Iterator[_App]:
    server = _App()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def gateway(
    nginx_binary: str,
    ratekeeper: ServiceProcess,
    app: _App,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """nginx with the docs config on a free loopback port; yields its base URL."""
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    include = tmp / "ratekeeper.conf"
    include.write_text(
        fill_placeholders(
            _CONFIG.read_text(),
            {
                "RATEKEEPER_ADDR": ratekeeper.url.removeprefix("http://"),
                "APP_ADDR": app.addr,
                "LISTEN": f"127.0.0.1:{port}",
                "CACHE_DIR": str(tmp / "cache"),
            },
        )
    )
    config = tmp / "nginx.conf"
    config.write_text(_main_config(tmp, include))
    log = tmp / "error.log"
    command = [nginx_binary, "-p", str(tmp), "-c", str(config), "-e", str(log)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful stop of the master and its worker
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _decisions(service: ServiceProcess) -> float:
    """All of ratekeeper's admission decisions so far (every outcome)."""
    text = httpx.get(f"{service.url}/metrics", timeout=10.0).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("ratekeeper_decisions_total{")
    )


def _direct(service: ServiceProcess, headers: dict[str, str]) -> httpx.Response:
    """Ask ratekeeper itself, without nginx, for comparison."""
    return httpx.post(f"{service.url}/ratekeeper/admit", headers=headers, timeout=10.0)


def _assert_same_headers(through: httpx.Response, direct: httpx.Response) -> None:
    """Every header ratekeeper sent reaches the client (``retry-after-ms``, ``x-should-retry``…)."""
    per_response = {"date", "content-length", "x-request-id", "connection", "server"}
    missing = set(direct.headers) - per_response - set(through.headers)
    assert not missing, f"nginx dropped {sorted(missing)}"


def _assert_openai_error(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    assert error["message"]
    return error


def test_the_app_gets_exactly_the_session_limit(
    gateway: str, ratekeeper: ServiceProcess, app: _App
) -> None:
    """A session of limit N reaches the app N times through nginx; the next request does not."""
    limit = 3
    secret = ratekeeper.create_session(limit)["client_secret"]
    with httpx.Client(base_url=gateway, headers=_bearer(secret), timeout=10.0) as client:
        answers = [client.post("/api/exact", json={"n": n}) for n in range(limit + 2)]
    assert [a.status_code for a in answers] == [200] * limit + [429, 429]
    assert answers[0].json() == {"app": "ok"}
    assert app.hits["/api/exact"] == limit


def test_admitted_answers_carry_the_rate_limit_headers(
    gateway: str, ratekeeper: ServiceProcess
) -> None:
    """The app's 200 reaches the client with ratekeeper's rate-limit headers added."""
    secret = ratekeeper.create_session(5)["client_secret"]
    response = httpx.get(f"{gateway}/api/headers", headers=_bearer(secret), timeout=10.0)
    assert response.status_code == 200
    assert {name: response.headers.get(name) for name in _RATE_LIMIT_HEADERS} == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": response.headers["x-ratelimit-reset-requests"],
        "ratelimit-policy": '"session";q=5;w=60',
        "ratelimit": '"session";r=4;t=60',
    }


def test_429_reaches_the_client_as_ratekeeper_sent_it(
    gateway: str, ratekeeper: ServiceProcess, app: _App
) -> None:
    """Over the limit: ratekeeper's 429, headers and OpenAI-shaped body, not nginx's 500."""
    secret = ratekeeper.create_session(1)["client_secret"]
    with httpx.Client(base_url=gateway, headers=_bearer(secret), timeout=10.0) as client:
        assert client.post("/api/over", json={}).status_code == 200
        before = _decisions(ratekeeper)
        response = client.post("/api/over", json={})
    assert response.status_code == 429, response.text
    error = _assert_openai_error(response, "rate_limit_exceeded")
    assert error["type"] == "requests"
    assert error["param"] is None
    assert error["message"].startswith("Rate limit reached for this session")
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["x-ratelimit-limit-requests"] == "1"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["ratelimit-policy"] == '"session";q=1;w=60'
    assert response.headers["ratelimit"].startswith('"session";r=0;')
    # The refusal was decided once: sending it back did not ask ratekeeper again.
    assert _decisions(ratekeeper) == before + 1
    assert app.hits["/api/over"] == 1
    twin = _bearer(ratekeeper.create_session(1)["client_secret"])
    assert _direct(ratekeeper, twin).status_code == 200
    direct = _direct(ratekeeper, twin)
    assert direct.status_code == 429
    _assert_same_headers(response, direct)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("missing", "missing_client_secret"),
        ("unknown", "invalid_client_secret"),
        ("cancelled", "session_cancelled"),
    ],
)
def test_401_reaches_the_client_with_its_code(
    gateway: str, ratekeeper: ServiceProcess, app: _App, case: str, code: str
) -> None:
    """A missing, unknown or cancelled secret: ratekeeper's 401 and body; the app sees nothing."""
    path = f"/api/denied-{case}"
    headers: dict[str, str] = {}
    if case == "unknown":
        headers = _bearer("ek_" + "0" * 40)
    elif case == "cancelled":
        session = ratekeeper.create_session(5)
        with ratekeeper.rest() as rest:
            cancel = rest.post(f"/v1/chatkit/sessions/{session['id']}/cancel")
        assert cancel.status_code == 200
        headers = _bearer(session["client_secret"])
    response = httpx.post(f"{gateway}{path}", headers=headers, json={}, timeout=10.0)
    assert response.status_code == 401, response.text
    error = _assert_openai_error(response, code)
    assert error["type"] == "invalid_request_error"
    assert response.headers["www-authenticate"].startswith('Bearer realm="ratekeeper"')
    assert app.hits[path] == 0
    _assert_same_headers(response, _direct(ratekeeper, headers))
