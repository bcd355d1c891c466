"""No client secret or API key comes back in a response nor reaches a log, whatever path it takes.

The real service runs as a process of its own (``ratekeeper serve``, and plain ``uvicorn
--factory``, which configures none of ratekeeper's logging), on the memory backend and on a
private Redis, at every log level including ``trace`` (which logs ASGI scopes: paths, raw paths
and query strings as ``bytes``). Secrets and keys are sent in paths, queries, headers, bodies
and ChatKit requests, as the ``openai`` SDK and ChatKit.js send them, and in messages a ChatKit
server's exception quotes; then every response (status, headers, body) and everything the
process wrote to stdout and stderr is searched for them in every form they could be written:
plain, percent-encoded, ``repr()`` of ``str`` and ``bytes``, JSON (:mod:`.leaks`). Zero hits.
After the run the Redis keys and the SQLite store's files are searched too: secrets and keys
are never stored.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
import redis

from ratekeeper._secrets import new_client_secret
from ratekeeper.server._auth import new_api_key
from tests.redis.servers import RedisProcess
from tests.service import free_port

from .leaks import leaks

if TYPE_CHECKING:
    import httpx2  # what openai answers with: its fork of httpx

_ROOT = Path(__file__).resolve().parents[2]
_STARTUP_TIMEOUT_S = 60.0
BETA = {"OpenAI-Beta": "chatkit_beta=v1"}


def _odd_key() -> str:
    # Every kind of ASCII character an encoder or repr() rewrites (a key is sent in a header:
    # ASCII; no whitespace, no comma: the variable's separator), and 64 random bits.
    return "Odd/Key+eq=amp&q'dq\"bs\\pc%~" + secrets.token_hex(8)


@dataclass
class Service:
    """One run of the service as a process, its output going to files."""

    mode: (
        str  # "serve", "uvicorn" (the documented factory) or "raising" (tests.security.raising_app)
    )
    level: str
    log_format: str
    backend: str
    data_dir: Path
    # A generated key, an odd one, and one sent only inside a chat message (see "raising").
    keys: tuple[str, str, str] = field(
        default_factory=lambda: (new_api_key(), _odd_key(), _odd_key())
    )
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATEKEEPER_")}
        if self.mode == "serve":
            args = ["-m", "ratekeeper", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                    "--api-key", self.keys[0], "--api-key", self.keys[1],
                    "--api-key", self.keys[2], "--backend", self.backend,
                    "--data-dir", str(self.data_dir), "--log-level", self.level,
                    "--log-format", self.log_format]  # fmt: skip
        else:
            factory = {
                "uvicorn": "ratekeeper.server._app:app_from_env",
                "raising": "tests.security.raising_app:app_from_env",
            }[self.mode]
            env.update(
                RATEKEEPER_API_KEYS=",".join(self.keys),
                RATEKEEPER_BACKEND=self.backend,
                RATEKEEPER_DATA_DIR=str(self.data_dir),
            )
            args = ["-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
                    "--port", str(self.port), "--log-level", self.level]  # fmt: skip
        out = (self.data_dir / "stdout").open("wb")
        err = (self.data_dir / "stderr").open("wb")
        with out, err:
            self.process = subprocess.Popen(
                [sys.executable, *args], cwd=_ROOT, env=env, stdout=out, stderr=err
            )
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while True:
            # Startup, not a timing assertion: poll /healthz until the service answers.
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not start: {self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def output(self) -> dict[str, str]:
        return {
            name: (self.data_dir / name).read_bytes().decode("utf-8", "backslashreplace")
            for name in ("stdout", "stderr")
        }


@dataclass
class Exchange:
    """Everything the service answered, by request, as text."""

    answers: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, response: httpx.Response | httpx2.Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        self.answers[name] = f"{response.status_code}\n{headers}\n\n{response.text}"

    def add_error(self, name: str, exc: openai.APIStatusError) -> None:
        self.add(name, exc.response)
        self.answers[name + " (SDK exception)"] = str(exc)


def _user_input(text: str) -> dict[str, Any]:
    """A ChatKit ``UserMessageInput`` as ChatKit.js sends it."""
    content = [{"type": "input_text", "text": text}]
    return {"content": content, "attachments": [], "quoted_text": None, "inference_options": {}}


def _raw(service: Service, request: bytes) -> str:
    """Send bytes the HTTP parser may reject; return what came back."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks).decode("latin-1")


def _drive(service: Service, x: str, label: str, secret: str, seen: Exchange) -> None:
    """Send ``x`` (a secret or a key) everywhere a client could put it."""
    key = service.keys[0]
    sdk = openai.OpenAI(api_key=key, base_url=f"{service.url}/v1", max_retries=0)
    rest = httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {key}", **BETA}, timeout=30
    )
    session = httpx.Client(
        base_url=service.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    with sdk, rest, session:
        # The REST surface through the official SDK: ids in paths.
        calls: dict[str, Callable[[], object]] = {
            "threads.retrieve": lambda: sdk.beta.chatkit.threads.retrieve(x),
            "threads.delete": lambda: sdk.beta.chatkit.threads.delete(x),
            "threads.list_items": lambda: sdk.beta.chatkit.threads.list_items(x),
            "sessions.cancel": lambda: sdk.beta.chatkit.sessions.cancel(x),
            "sessions.create (bad anchor)": lambda: sdk.beta.chatkit.sessions.create(
                user="u_leaks",
                workflow={"id": "wf_leaks"},
                # An anchor the API does not accept, on purpose: the refusal must not echo it.
                expires_after={"anchor": x, "seconds": 60},  # type: ignore[arg-type]
            ),
            "sessions.create (field named by it)": lambda: sdk.beta.chatkit.sessions.create(
                user="u_leaks", workflow={"id": "wf_leaks"}, extra_body={x: 1}
            ),
        }
        for name, call in calls.items():
            try:
                call()
            except openai.APIStatusError as exc:
                seen.add_error(f"{label} {name}", exc)
        # Paths, queries, headers, bodies.
        quoted = httpx.URL(f"/{x}").raw_path.decode()
        requests: dict[str, tuple[str, str, dict[str, Any]]] = {
            "POST thread (405)": ("POST", f"/v1/chatkit/threads/{x}", {}),
            "GET /<x>": ("GET", f"/{x}", {}),
            "GET /<x>/more": ("GET", f"/{x}/more?again={x}", {}),
            "GET /<quoted x>": ("GET", quoted, {}),
            "query": ("GET", "/healthz", {"params": {"api_key": x, "client_secret": x, "x": x}}),
            "token query": ("GET", "/healthz", {"params": {"token": x, "q": f"a {x} b"}}),
            "admit by query": ("GET", "/ratekeeper/admit", {"params": {"client_secret": x}}),
            "request id": ("GET", "/healthz", {"headers": {"x-request-id": x}}),
            "other header": ("GET", "/healthz", {"headers": {"x-debug": x}}),
            "cancel path": ("POST", f"/v1/chatkit/sessions/{x}/cancel", {}),
            "bad json": ("POST", "/v1/chatkit/sessions", {"content": f'{{"user": "{x}'}),
            "upload": ("POST", f"/chatkit/attachments/{x}/upload", {"params": {"token": x}}),
            "preview": ("GET", f"/chatkit/attachments/{x}/preview", {"params": {"token": x}}),
        }
        for name, (method, path, options) in requests.items():
            seen.add(f"{label} {name}", rest.request(method, path, **options))
        for name, headers in {
            "REST with it as key": {"Authorization": f"Bearer {x}", **BETA},
            "admit with it": {"Authorization": f"Bearer {x}"},
        }.items():
            path = "/v1/chatkit/threads" if name.startswith("REST") else "/ratekeeper/admit"
            seen.add(f"{label} {name}", httpx.get(service.url + path, headers=headers))
        # POST /chatkit as ChatKit.js sends it, with a valid secret.
        chatkit = {
            "threads.get_by_id": {"type": "threads.get_by_id", "params": {"thread_id": x}},
            "items.list": {"type": "items.list", "params": {"thread_id": x}},
            "threads.update": {
                "type": "threads.update",
                "params": {"thread_id": x, "title": "t"},
            },
            "threads.delete": {"type": "threads.delete", "params": {"thread_id": x}},
            "attachments.delete": {"type": "attachments.delete", "params": {"attachment_id": x}},
            "type": {"type": x, "params": {}},
            "field": {"type": "threads.list", "params": {x: 1}},
            "add_user_message": {
                "type": "threads.add_user_message",
                "params": {"thread_id": x, "input": _user_input("hi")},
            },
            "attachment in input": {
                "type": "threads.create",
                "params": {"input": {**_user_input("hi"), "attachments": [x]}},
            },
        }
        for name, body in chatkit.items():
            seen.add(f"{label} /chatkit {name}", session.post("/chatkit", json=body))
        seen.add(
            f"{label} /chatkit with it",
            httpx.post(
                f"{service.url}/chatkit",
                json={"type": "threads.list", "params": {}},
                headers={"Authorization": f"Bearer {x}"},
            ),
        )
    # What the HTTP parser rejects (a text/plain 400), and requests it accepts unusually.
    ascii_x = x.encode("utf-8")
    for name, request in {
        "bad request line": b"GET /" + ascii_x + b" HTTP/1.1 extra\r\nHost: a\r\n\r\n",
        "bad header": b"GET /healthz HTTP/1.1\r\nHost: a\r\nBad Name: " + ascii_x + b"\r\n\r\n",
        "nul in header": b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: \x00" + ascii_x + b"\r\n\r\n",
        "raw query": b"GET /healthz?api_key=" + ascii_x + b" HTTP/1.1\r\nHost: a\r\n"
        b"Connection: close\r\n\r\n",
    }.items():
        seen.answers[f"{label} raw {name}"] = _raw(service, request)


def _session(service: Service, limit: int = 1000) -> str:
    with httpx.Client(
        base_url=service.url,
        headers={"Authorization": f"Bearer {service.keys[1]}", **BETA},
        timeout=30,
    ) as rest:
        response = rest.post(
            "/v1/chatkit/sessions",
            json={
                "user": "u_leaks",
                "workflow": {"id": "wf_leaks"},
                "rate_limits": {"max_requests_per_1_minute": limit},
            },
        )
    assert response.status_code == 200, response.text
    secret: str = response.json()["client_secret"]
    return secret


def _use_and_cancel(service: Service) -> tuple[str, str, Exchange]:
    """A session used as a client would, and one cancelled: their secrets, and the answers
    (minus the one create answer that is meant to carry its secret)."""
    seen = Exchange()
    secret = _session(service)
    cancelled = _session(service)
    with httpx.Client(base_url=service.url, timeout=30) as client:
        auth = {"Authorization": f"Bearer {secret}"}
        body = {"type": "threads.create", "params": {"input": _user_input("hello")}}
        seen.add("stream", client.post("/chatkit", json=body, headers=auth))
        seen.add("admit", client.post("/ratekeeper/admit", headers=auth))
        sdk = openai.OpenAI(api_key=service.keys[0], base_url=f"{service.url}/v1", max_retries=0)
        with sdk:
            session_id = client.post("/ratekeeper/admit", headers=auth).json()["session_id"]
            del session_id  # admit answers with the id; the cancel below needs the other's
            created = client.post(
                "/v1/chatkit/sessions",
                json={"user": "u_leaks", "workflow": {"id": "wf_leaks"}},
                headers={"Authorization": f"Bearer {service.keys[0]}", **BETA},
            ).json()
            seen.answers["cancel"] = str(sdk.beta.chatkit.sessions.cancel(created["id"]))
        gone = {"Authorization": f"Bearer {cancelled}"}
        admitted = client.post("/ratekeeper/admit", headers=gone).json()
        rest = {"Authorization": f"Bearer {service.keys[0]}", **BETA}
        client.post(f"/v1/chatkit/sessions/{admitted['session_id']}/cancel", headers=rest)
        seen.add("cancelled admit", client.post("/ratekeeper/admit", headers=gone))
        seen.add("cancelled chatkit", client.post("/chatkit", json=body, headers=gone))
    return secret, cancelled, seen


# The runs: every log level on `ratekeeper serve` with memory; trace (the most verbose) for
# every way of serving and both backends; the JSON log format.
RUNS = [
    *(("serve", "memory", level, "text") for level in ("trace", "debug", "info", "warning")),
    *(("serve", "memory", level, "text") for level in ("error", "critical")),
    ("serve", "memory", "trace", "json"),
    ("serve", "redis", "trace", "text"),
    ("serve", "redis", "info", "json"),
    ("uvicorn", "memory", "trace", "text"),
    ("uvicorn", "memory", "info", "text"),
    ("uvicorn", "redis", "trace", "text"),
    ("raising", "memory", "trace", "text"),
    ("raising", "redis", "info", "text"),
]


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisProcess]:
    """A Redis of this module's own, so a dump of it holds only what the service wrote."""
    server = RedisProcess().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("mode", "backend", "level", "log_format"), RUNS, ids=["-".join(run) for run in RUNS]
)
def test_no_secret_or_key_in_any_answer_log_or_store(
    mode: str,
    backend: str,
    level: str,
    log_format: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    redis_server: RedisProcess | None = None
    if backend == "redis":
        redis_server = request.getfixturevalue("private_redis")
        redis.Redis.from_url(redis_server.url).flushall()
    service = Service(
        mode,
        level,
        log_format,
        redis_server.url if redis_server is not None else "memory",
        tmp_path,
    )
    unknown_secret = new_client_secret()
    wrong_key = new_api_key()
    service.start()
    try:
        secret, cancelled, seen = _use_and_cancel(service)
        probes = {
            "secret": secret,
            "cancelled": cancelled,
            "unknown secret": unknown_secret,
            "key": service.keys[0],
            "odd key": service.keys[1],
            "wrong key": wrong_key,
        }
        for label, x in probes.items():
            _drive(service, x, label, secret, seen)
        content = [new_client_secret(), service.keys[2]]
        if mode == "raising":
            # The server's exception quotes the user's message: its traceback reaches the log.
            # What a user types is content, stored and shown back by design: these two are
            # searched for in the logs only.
            text = f"say {content[0]} and {content[1]}"
            body = {"type": "threads.create", "params": {"input": _user_input(text)}}
            with httpx.Client(base_url=service.url, timeout=30) as client:
                auth = {"Authorization": f"Bearer {secret}"}
                seen.add("raising", client.post("/chatkit", json=body, headers=auth))
        seen.add("metrics", httpx.get(f"{service.url}/metrics"))  # no label holds one
    finally:
        service.stop()
    searched = [secret, cancelled, unknown_secret, *service.keys[:2], wrong_key]
    logged = service.output()
    assert "Application startup complete." in logged["stderr"] + logged["stdout"] or level in (
        "warning",
        "error",
        "critical",
    )
    found = leaks(searched, seen.answers) + leaks([*searched, *content], logged)
    assert not found, "\n".join(found)
    # The runs reached what they were meant to: the paths were served and answered.
    assert seen.answers["secret /chatkit threads.get_by_id"].startswith("404")
    assert seen.answers["key GET /<x>"].startswith("404")
    assert seen.answers["key POST thread (405)"].startswith("405")
    assert "x-request-id: req_" in seen.answers["key request id"]
    assert 'route="/v1/chatkit/threads/{thread_id}"' in seen.answers["metrics"]
    assert "text/plain" in seen.answers["key raw bad request line"]
    if level == "trace":
        assert "Started scope=" in logged["stderr"] + logged["stdout"]
    if mode == "raising":
        assert "the model refused 'say ek_… and …'" in logged["stderr"] + logged["stdout"]
    if level in ("trace", "debug", "info") and mode != "raising":
        assert "api_key=…" in logged["stdout"] + logged["stderr"]  # the access log
    # At rest: the store's files, and every Redis key with its value.
    if mode != "raising":  # (its one message quotes a key on purpose: that is content)
        stored = {
            str(path): path.read_bytes().decode("latin-1")
            for path in tmp_path.rglob("*")
            if path.is_file() and path.name not in ("stdout", "stderr")
        }
        assert stored, "the SQLite store wrote nothing"
        if redis_server is not None:
            redis_client = redis.Redis.from_url(redis_server.url)
            dump = {
                key.decode("latin-1"): f"{key!r} {redis_client.dump(key)!r}"
                for key in redis_client.scan_iter(count=1000)
            }
            assert dump, "the Redis backend wrote nothing"
            stored.update(dump)
        assert not leaks([secret, cancelled, *service.keys], stored)
        assert "cthr_" in "".join(stored.values())  # threads were written: the search can hit


def test_the_leak_search_finds_what_it_searches_for() -> None:
    """The search itself: a secret in any of its forms is a hit."""
    secret = new_client_secret()
    key = _odd_key()
    for text in (
        f"GET /x?s={secret}",
        repr(f"/v1/{key}".encode()),
        json.dumps({"k": key}),
        httpx.URL("/", params={"api_key": key}).query.decode(),
        f"prefix kept: ek_{secret[3:]}",
    ):
        assert leaks([secret, key], {"text": text}), text
