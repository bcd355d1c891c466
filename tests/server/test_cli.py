"""``ratekeeper serve``: settings from flags and environment, refusals, a real subprocess."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ratekeeper.server import (
    SETTINGS,
    ServerSettings,
    SettingsError,
    app_from_env,
    backend_from_settings,
)
from ratekeeper.server._cli import (
    build_parser,
    endpoints_announcement,
    main,
    settings_from_args,
    store_announcement,
)
from ratekeeper.store import store_from_url
from tests.redis.servers import RedisProcess
from tests.service import free_port

RATEKEEPER = os.path.join(os.path.dirname(sys.executable), "ratekeeper")


def parse(argv: list[str], env: dict[str, str] | None = None) -> ServerSettings:
    return settings_from_args(build_parser().parse_args(["serve", *argv]), env or {})


def test_help_documents_every_setting_and_its_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """`ratekeeper serve --help` names every flag and every RATEKEEPER_* variable."""
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for setting in SETTINGS:
        assert setting.flag in text
        assert setting.env in text


def test_defaults() -> None:
    """With nothing set: loopback, port 8000, memory, one worker, beta header required."""
    settings = parse([])
    assert settings == ServerSettings()
    assert (settings.host, settings.port, settings.backend) == ("127.0.0.1", 8000, "memory")
    assert settings.allow_missing_beta_header is False


def test_environment_then_flags() -> None:
    """Variables set values; flags beat variables; keys come from both forms."""
    env = {
        "RATEKEEPER_PORT": "9000",
        "RATEKEEPER_API_KEYS": "rk-a, rk-b",
        "RATEKEEPER_FAIL_OPEN": "true",
        "RATEKEEPER_ACCESS_LOG": "off",
        "RATEKEEPER_MAX_BODY_BYTES": "2048",
    }
    from_env = parse([], env)
    assert from_env.port == 9000
    assert from_env.api_keys == ("rk-a", "rk-b")
    assert from_env.fail_open is True
    assert from_env.access_log is False
    assert from_env.max_body_bytes == 2048
    flagged = parse(["--port", "9100", "--api-key", "rk-c", "--api-key", "rk-d"], env)
    assert flagged.port == 9100
    assert flagged.api_keys == ("rk-c", "rk-d")


def test_settings_round_trip_through_the_environment() -> None:
    """to_env() is what workers read back with from_env()."""
    settings = ServerSettings(
        api_keys=("rk-1", "rk-2"),
        backend="redis://127.0.0.1:6379/0",
        workers=3,
        fail_open=True,
        retention_s=12.5,
        cors_origins=("https://app.example.com", "http://localhost:3000"),
    )
    assert ServerSettings.from_env(settings.to_env()) == settings


def test_cors_origins_come_from_repeated_flags_or_a_comma_separated_variable() -> None:
    """--cors-origin repeats; the variable is a list; origins are kept as browsers send them."""
    env = {"RATEKEEPER_CORS_ORIGINS": "https://a.example.com, http://localhost:3000"}
    assert parse([], env).cors_origins == ("https://a.example.com", "http://localhost:3000")
    flagged = parse(
        ["--cors-origin", "https://B.example.com/", "--cors-origin", "http://[::1]:8080"], env
    )
    assert flagged.cors_origins == ("https://b.example.com", "http://[::1]:8080")
    assert parse([], {}).cors_origins == ()


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "app.example.com",
        "ftp://a.example.com",
        "https://a.example.com/chat",
        "https://",
        "https://a.example.com:99999",
        "https://a.example.com:x",
        "https://user@a.example.com",
        "https://a.example.com?x=1",
    ],
)
def test_a_malformed_cors_origin_is_refused(origin: str) -> None:
    """Only scheme://host[:port]: no '*', no path, no credentials."""
    with pytest.raises(SettingsError, match="RATEKEEPER_CORS_ORIGINS"):
        parse(["--cors-origin", origin], {})
    with pytest.raises(SettingsError, match="cors_origins"):
        ServerSettings(cors_origins=(origin,)).checked()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "http"], {}, "RATEKEEPER_PORT"),
        (["--workers", "0"], {}, "RATEKEEPER_WORKERS"),
        ([], {"RATEKEEPER_FAIL_OPEN": "maybe"}, "RATEKEEPER_FAIL_OPEN"),
        (["--backend", "postgres://x"], {}, "RATEKEEPER_BACKEND"),
        (["--workers", "2"], {}, "needs a shared backend"),
        (["--redis-cluster"], {}, "--redis-cluster needs"),
        (["--log-level", "loud"], {}, "RATEKEEPER_LOG_LEVEL"),
        # Not finite, or past what Redis expiry times hold: refused at start, not per request.
        (["--retention", "inf"], {}, "RATEKEEPER_RETENTION_S"),
        (["--retention", "nan"], {}, "RATEKEEPER_RETENTION_S"),
        ([], {"RATEKEEPER_RETENTION_S": "1e20"}, "RATEKEEPER_RETENTION_S"),
        (["--retention", "-1"], {}, "RATEKEEPER_RETENTION_S"),
        # SQLite's busy timeout is an int of milliseconds: past ~24.8 days it became 0, and
        # workers sharing the file met "database is locked" at once.
        (["--store-timeout", "3000000"], {}, "RATEKEEPER_STORE_TIMEOUT_S"),
        ([], {"RATEKEEPER_STORE_TIMEOUT_S": "3601"}, "RATEKEEPER_STORE_TIMEOUT_S"),
        # Empty, it would put the default store in the working directory, wherever that is.
        ([], {"RATEKEEPER_DATA_DIR": ""}, "RATEKEEPER_DATA_DIR"),
        (["--data-dir", " "], {}, "RATEKEEPER_DATA_DIR"),
        (["--redis-circuit-failures", "-1"], {}, "RATEKEEPER_REDIS_CIRCUIT_FAILURES"),
        (["--redis-circuit-probe-interval", "0"], {}, "RATEKEEPER_REDIS_CIRCUIT_PROBE_S"),
        ([], {"RATEKEEPER_REDIS_CIRCUIT_PROBE_S": "nan"}, "RATEKEEPER_REDIS_CIRCUIT_PROBE_S"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    """Malformed or contradictory settings raise SettingsError naming the setting."""
    with pytest.raises(SettingsError, match=message):
        parse(argv, env)


def test_redis_circuit_settings_reach_the_backend() -> None:
    """--redis-circuit-failures / --redis-circuit-probe-interval configure the breaker."""
    settings = parse(
        [
            "--backend",
            "redis://127.0.0.1:1/0",
            "--redis-circuit-failures",
            "0",
            "--redis-circuit-probe-interval",
            "2.5",
        ]
    )
    assert (settings.redis_circuit_failures, settings.redis_circuit_probe_s) == (0, 2.5)
    assert (ServerSettings().redis_circuit_failures, ServerSettings().redis_circuit_probe_s) == (
        3,
        0.5,
    )
    backend = backend_from_settings(settings)
    assert repr(backend._circuit) == "Circuit(closed, failures=0, probe=2.5s)"  # type: ignore[attr-defined]


def test_settings_built_in_python_are_checked_for_retention_too() -> None:
    """create_app refuses an infinite retention (it crashed the Redis backend at start)."""
    with pytest.raises(SettingsError, match="retention"):
        ServerSettings(retention_s=float("inf")).checked()


def test_a_data_dir_from_an_env_file_has_its_tilde_expanded() -> None:
    """RATEKEEPER_DATA_DIR=~/rk (env files do not expand ~) is the home's rk, not ./~/rk."""
    settings = parse([], {"RATEKEEPER_DATA_DIR": "~/rk"})
    assert settings.store_url == f"sqlite:///{Path.home() / 'rk' / 'ratekeeper.sqlite3'}"


def test_settings_built_in_python_are_checked_for_the_store_timeout_too() -> None:
    """create_app refuses a store timeout SQLite cannot honour, or none at all."""
    for seconds in (3_000_000.0, 0.0, float("nan")):
        with pytest.raises(SettingsError, match="store_timeout_s"):
            ServerSettings(store_timeout_s=seconds).checked()


def test_api_keys_never_appear_in_errors_or_repr() -> None:
    """A malformed key variable is reported without its value; repr hides keys."""
    assert "rk-secret" not in repr(ServerSettings(api_keys=("rk-secret",)))
    assert "<1 key(s)>" in repr(ServerSettings(api_keys=("rk-secret",)))


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2@127.0.0.1:6379/0",
        "rediss://default:hunter2@cache.internal/1",
        "unix:///run/redis.sock?db=0&password=hunter2",
    ],
)
def test_redis_password_never_appears_in_repr(url: str) -> None:
    """The backend URL's password is a secret too: repr shows the URL without it."""
    shown = repr(ServerSettings(backend=url))
    assert "hunter2" not in shown
    assert "***" in shown


def test_redis_password_never_appears_in_a_backend_error() -> None:
    """A mistyped URL scheme is refused without echoing the password it carries."""
    with pytest.raises(SettingsError, match="RATEKEEPER_BACKEND") as caught:
        parse(["--backend", "redis+tls://:hunter2@cache.internal:6379/0"])
    assert "hunter2" not in str(caught.value)
    assert "cache.internal" in str(caught.value)


def test_key_with_secret_prefix_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """An API key must not look like a client secret (ek_…)."""
    assert main(["serve", "--api-key", "ek_looks_like_a_secret", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "reserved for client secrets" in err
    assert "ek_looks_like_a_secret" not in err


def test_workers_on_memory_backend_exit_with_a_message() -> None:
    """The real command refuses several workers on the in-memory backend, without traceback."""
    result = subprocess.run(
        [RATEKEEPER, "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "needs a shared backend" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_says_where_conversation_state_lives(tmp_path: Path) -> None:
    """The start-up line names the store (default: the data directory's SQLite file)."""
    default = store_announcement(ServerSettings(data_dir=str(tmp_path)))
    assert "the default store" in default
    assert str(tmp_path / "ratekeeper.sqlite3") in default
    assert "sessions are kept in memory" in default
    shared = store_announcement(
        ServerSettings(store="postgresql://u:pw@db/rk", backend="redis://127.0.0.1:6379/0")
    )
    assert "postgresql://u:***@db/rk" in shared
    assert "pw" not in shared
    assert "in Redis" in shared
    assert "lost when the service stops" in store_announcement(ServerSettings(store="memory"))


def test_start_says_hosts_sharing_postgresql_need_one_token_key(tmp_path: Path) -> None:
    """With a PostgreSQL store and no --token-key, the start-up line says hosts need one key."""
    postgres = "postgresql://u@db/rk"
    assert "--token-key" in store_announcement(ServerSettings(store=postgres))
    keyed = ServerSettings(store=postgres, token_key="k" * 40)
    assert "--token-key" not in store_announcement(keyed)
    assert "k" * 40 not in store_announcement(keyed)
    sqlite = ServerSettings(data_dir=str(tmp_path))
    assert "--token-key" not in store_announcement(sqlite)


def test_several_workers_need_a_shared_store() -> None:
    """--workers > 1 with --store memory is a settings error naming the fix."""
    with pytest.raises(SettingsError, match="needs a shared store"):
        ServerSettings(backend="redis://127.0.0.1:6379/0", store="memory", workers=2).checked()


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:relative", "postgresql:x", "memory2"])
def test_unknown_store_urls_are_refused(url: str) -> None:
    """--store takes memory, sqlite:///PATH or postgresql://…; anything else is an error."""
    with pytest.raises(SettingsError, match="RATEKEEPER_STORE"):
        ServerSettings.from_env({"RATEKEEPER_STORE": url})


def test_serve_generates_and_prints_a_key_once_then_accepts_it() -> None:
    """With no key configured, one is printed once at start and it authenticates requests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEKEEPER_")}
    process = subprocess.Popen(
        [RATEKEEPER, "serve", "--port", "0", "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = _read_until(process, "Uvicorn running on")
        key_lines = [line.strip() for line in lines if line.strip().startswith("rk-")]
        assert len(key_lines) == 1
        port = int(lines[-1].rsplit(":", 1)[1].split()[0])
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/chatkit/threads",
            headers={"Authorization": f"Bearer {key_lines[0]}", "OpenAI-Beta": "chatkit_beta=v1"},
        )
        assert response.status_code == 200
        httpx.get(f"http://127.0.0.1:{port}/v1/ek_PastedSecretValue")
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    rest = out + err
    # The access log (stdout) shows the requests, but not the key nor a secret put in a URL.
    assert "GET /v1/chatkit/threads" in rest
    assert "GET /v1/ek_…" in rest
    assert key_lines[0] not in rest
    assert "PastedSecretValue" not in rest


def _read_until(process: subprocess.Popen[str], marker: str) -> list[str]:
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], 1.0)
        if not ready:
            continue
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError("server did not start:\n" + "".join(lines))


def _newer_schema(path: Path) -> str:
    """A SQLite store that a newer release wrote: its schema version is one past ours."""

    async def create() -> None:
        store = store_from_url(f"sqlite:///{path}")
        await store.open()
        await store.aclose()

    asyncio.run(create())
    with sqlite3.connect(path) as db:
        db.execute("UPDATE ratekeeper_schema SET version = version + 1")
    db.close()
    return f"sqlite:///{path}"


def _unopenable_stores(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Flags naming a store that cannot be opened, and what the error line must say."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    return {
        "unreachable": (
            ["--store", "postgresql://u:secretpw@127.0.0.1:1/x"],
            "postgresql+asyncpg://u:***@127.0.0.1:1/x unavailable",
        ),
        "password in the query": (
            ["--store", "postgresql://u@127.0.0.1:1/x?password=secretpw"],
            "unavailable (ConnectionRefusedError",
        ),
        "newer schema": (
            ["--store", _newer_schema(tmp_path / "newer.sqlite3")],
            "newer than this release knows",
        ),
        "data dir is a file": (["--data-dir", str(a_file)], "File exists"),
    }


@pytest.mark.parametrize(
    "case", ["unreachable", "password in the query", "newer schema", "data dir is a file"]
)
def test_a_store_that_cannot_be_opened_stops_the_start_in_one_line(
    tmp_path: Path, case: str
) -> None:
    """Unreachable PostgreSQL, a newer schema, a data directory that is a file: the command
    exits non-zero with one clear line, no traceback, and no password."""
    flags, expected = _unopenable_stores(tmp_path)[case]
    result = _serve_briefly(tmp_path, *flags)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "secretpw" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ratekeeper serve: error: "), result.stderr
    assert expected in last


def test_several_workers_on_a_store_that_cannot_be_opened_exit_non_zero(tmp_path: Path) -> None:
    """With --workers 2 the store is opened once, before any worker starts: exit status 1
    (uvicorn's supervisor would exit 0 after its workers failed to start)."""
    result = _serve_briefly(
        tmp_path,
        "--workers",
        "2",
        "--backend",
        "redis://127.0.0.1:1/0",
        "--store",
        "postgresql://u:secretpw@127.0.0.1:1/x",
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "secretpw" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("ratekeeper serve: error: ")


def _serve_briefly(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run ``ratekeeper serve`` with ``flags`` on a free port; it is expected to stop itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEKEEPER_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    return subprocess.run(
        [RATEKEEPER, "serve", "--port", "0", "--api-key", "rk-test", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_docs_list_every_setting() -> None:
    """docs/server.md documents every flag and variable the code knows."""
    docs = Path(__file__).parents[2] / "docs" / "server.md"
    text = docs.read_text()
    for setting in SETTINGS:
        assert setting.flag in text, setting.flag
        assert setting.env in text, setting.env


def test_missing_redis_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis URL without the redis backend installed fails with a message, not a traceback."""
    monkeypatch.setitem(sys.modules, "ratekeeper.redis", None)
    settings = ServerSettings(api_keys=("rk-x",), backend="redis://127.0.0.1:1/0")
    with pytest.raises(SettingsError, match=r"install ratekeeper\[redis\]"):
        backend_from_settings(settings)


def test_redis_url_builds_a_redis_backend_without_connecting() -> None:
    """A Redis URL gives a Redis backend; nothing connects until the first request."""
    settings = ServerSettings(api_keys=("rk-x",), backend="redis://127.0.0.1:1/0", workers=2)
    backend = backend_from_settings(settings)
    assert type(backend).__name__ == "RedisBackend"


def test_app_from_env_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The uvicorn factory for workers builds the app from RATEKEEPER_* variables."""
    monkeypatch.setenv("RATEKEEPER_API_KEYS", "rk-from-env")
    monkeypatch.setenv("RATEKEEPER_MAX_BODY_BYTES", "4096")
    app = app_from_env()
    assert app.state.ratekeeper.settings.max_body_bytes == 4096
    assert app.state.ratekeeper.api_keys.matches("rk-from-env")


@pytest.mark.redis
def test_an_unreachable_session_backend_stops_the_start_in_one_line(tmp_path: Path) -> None:
    """A Redis nobody listens on: exit 1 with one line naming it (password hidden), where the
    service used to start and answer every session request 503."""
    result = _serve_briefly(
        tmp_path, "--backend", f"redis://:secretpw@127.0.0.1:{free_port()}/0", "--store", "memory"
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "secretpw" not in result.stderr + result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ratekeeper serve: error: session backend redis://:***@127.0.0.1:")
    assert "unavailable" in last


@pytest.mark.redis
def test_start_wait_waits_for_a_backend_that_comes_up_later(tmp_path: Path) -> None:
    """--start-wait: the service keeps trying, and starts once Redis is there."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEKEEPER_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    command = [
        RATEKEEPER, "serve", "--port", "0", "--api-key", "rk-test", "--store", "memory",
        "--backend", f"redis://127.0.0.1:{port}/0", "--start-wait", "60",
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    redis_server = None
    try:
        _read_until(process, "ratekeeper: threads, items and attachments")
        assert process.poll() is None  # still waiting, not failed
        redis_server = RedisProcess(port=port).start()
        lines = _read_until(process, "Application startup complete")
        assert not any("Traceback" in line for line in lines)
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
        if redis_server is not None:
            redis_server.stop()


def test_redis_cluster_with_a_database_number_is_a_settings_error(tmp_path: Path) -> None:
    """--redis-cluster with /5: a settings error in one line (exit 2), not a traceback."""
    result = _serve_briefly(
        tmp_path, "--backend", "redis://127.0.0.1:6379/5", "--redis-cluster", "--store", "memory"
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "only database 0" in result.stderr.strip().splitlines()[-1]


def test_start_says_which_endpoints_are_served() -> None:
    """The start-up line names the endpoints, /chatkit included when openai-chatkit is there."""
    line = endpoints_announcement()
    assert "/v1/chatkit (REST)" in line
    assert "/readyz" in line
    assert "/chatkit (the ChatKit protocol endpoint)" in line


def test_drain_timeout_bounds_the_shutdown_when_a_request_never_finishes(tmp_path: Path) -> None:
    """--drain-timeout: a client that never sends the rest of its body cannot hold SIGTERM's
    shutdown open (uvicorn alone would wait for it for ever)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEKEEPER_")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    command = [
        RATEKEEPER, "serve", "--port", str(port), "--api-key", "rk-test", "--store", "memory",
        "--drain-timeout", "1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        _read_until(process, "Uvicorn running on")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(
                b"POST /v1/chatkit/sessions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer rk-test\r\nOpenAI-Beta: chatkit_beta=v1\r\n"
                b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"user"'
            )
            process.send_signal(signal.SIGTERM)
            # Fails with TimeoutExpired if the half-sent request holds the shutdown; uvicorn
            # re-raises the signal it caught once it has shut down.
            assert process.wait(timeout=60) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_version_prints_the_installed_version() -> None:
    """`ratekeeper --version` names the installed distribution's version."""
    result = subprocess.run(
        [RATEKEEPER, "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"ratekeeper {importlib.metadata.version('ratekeeper')}"


def test_help_says_what_a_switch_leaves_on_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """--no-access-log's help says the access log is on by default (never a bare 'off')."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: access log on)" in text
    assert "(default: redis cluster off)" in text


def test_a_serving_process_freezes_its_startup_heap() -> None:
    """``ratekeeper serve`` (and each worker's ``app_from_env``) moves what startup made out of
    the collector's sight; run in a process of its own, since the freeze is process-wide."""
    code = (
        "import gc, os\n"
        "os.environ['RATEKEEPER_API_KEYS'] = 'rk-freeze-test'\n"
        "os.environ['RATEKEEPER_STORE'] = 'memory'\n"
        "from ratekeeper.server._app import app_from_env\n"
        "assert gc.get_freeze_count() == 0\n"
        "app_from_env()\n"
        "assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
