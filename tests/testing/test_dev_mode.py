"""Development mode as a whole: off by default (every dev route 404, no clock to move), refused
where it would be unsafe or could not keep its promises, and loud when ``ratekeeper serve
--dev`` starts (a real process, on the system clock plus an offset)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ratekeeper import Engine, ManualClock, MemoryBackend, SystemClock
from ratekeeper.server import ServerSettings, SettingsError, app_from_env, create_app
from ratekeeper.server._cli import main
from ratekeeper.testing import DevRouteError, LiveServer, connect
from tests.server.conftest import API_KEY, make_live
from tests.server.conftest import serve as serve_app
from tests.service import ServiceProcess

from .test_dev_routes import DEV_ROUTES, THREADS_LIST


def test_without_dev_every_dev_route_is_404_and_nothing_moves_the_clock() -> None:
    """A service started without ``--dev`` has no dev route (404 with the API key too), its
    sessions keep their time, and its clock is the system's, which nothing can move."""
    app, _ = make_live()
    with serve_app(app) as url:
        live = LiveServer(url, API_KEY)
        with live:
            session = live.create_session(expires_after_s=600)
            for method, path in DEV_ROUTES:
                answer = live.http.request(
                    method, path, json={"seconds": 600, "outcome": "expired"}
                )
                assert answer.status_code == 404, (method, path)
                assert answer.json()["error"]["code"] == "unknown_url"
            with pytest.raises(DevRouteError, match="ratekeeper serve --dev"):
                live.clock.advance(600)
            admitted = live.chatkit(session.client_secret, THREADS_LIST)
            assert admitted.status_code == 200
            assert "injected" not in live.http.get("/metrics").text
    gate = app.state.ratekeeper.gate
    assert type(gate.backend.engine.clock) is SystemClock
    assert not hasattr(gate.backend.engine.clock, "advance")


def test_dev_refuses_a_redis_backend() -> None:
    """On Redis the sessions' time is the Redis server's: ``--dev`` says so and stops."""
    with pytest.raises(SettingsError, match="Redis server's TIME"):
        ServerSettings(dev=True, backend="redis://127.0.0.1:6379/0").checked()


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the host --dev must refuse


@pytest.mark.parametrize("host", [ALL_INTERFACES, "192.0.2.7", "example.com", "::"])
def test_dev_refuses_a_host_beyond_loopback_unless_insisted(host: str) -> None:
    """``--dev`` listens on loopback only, unless ``--dev-allow-remote`` says otherwise."""
    with pytest.raises(SettingsError, match="--dev-allow-remote"):
        ServerSettings(dev=True, host=host).checked()
    assert ServerSettings(dev=True, dev_allow_remote=True, host=host).checked().dev


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "::1", "[::1]"])
def test_dev_accepts_loopback_hosts(host: str) -> None:
    """Loopback in any spelling needs no second flag."""
    assert ServerSettings(dev=True, host=host).checked().dev


def test_dev_allow_remote_alone_is_refused() -> None:
    """The second flag means nothing without the first, so it is an error, not a no-op."""
    with pytest.raises(SettingsError, match="only makes sense with --dev"):
        ServerSettings(dev_allow_remote=True).checked()


def test_the_cli_refuses_dev_on_a_public_host(capsys: pytest.CaptureFixture[str]) -> None:
    """``ratekeeper serve --dev --host 0.0.0.0`` exits 2 with one line, starting nothing."""
    assert main(["serve", "--dev", "--host", ALL_INTERFACES, "--api-key", "rk-x"]) == 2
    assert "--dev-allow-remote" in capsys.readouterr().err


def test_dev_app_refuses_a_gate_or_a_clock_it_cannot_move() -> None:
    """``create_app`` in dev mode builds its own gate, on a clock that can be advanced."""
    settings = ServerSettings(api_keys=("rk-x",), dev=True, store="memory")
    with pytest.raises(SettingsError, match="can be advanced"):
        create_app(settings, clock=SystemClock())
    app = create_app(settings, clock=ManualClock())
    assert app.state.ratekeeper.gate.faults is not None


def test_dev_app_takes_the_engine_of_an_in_process_backend_and_refuses_a_shared_one() -> None:
    """Dev mode moves the engine's clock: it reuses the engine of a backend that has one
    (``in_process_engine``, as ``MemoryBackend``) and refuses any other backend."""
    settings = ServerSettings(api_keys=("rk-x",), dev=True, store="memory")
    clock = ManualClock()
    engine = Engine(clock)
    app = create_app(settings, backend=MemoryBackend(engine), clock=clock)
    assert app.state.ratekeeper.gate.backend.in_process_engine is engine

    class Shared:
        """A backend whose sessions live elsewhere: no ``in_process_engine``."""

    shared: Any = Shared()
    with pytest.raises(SettingsError, match="needs the in-memory backend"):
        create_app(settings, backend=shared, clock=clock)


def test_serve_dev_announces_itself_and_travels_in_time() -> None:
    """A real ``ratekeeper serve --dev`` says so at start, and its clock (the system's plus an
    offset) jumps: a ten-minute session is expired right after ``advance(600)``."""
    with (
        ServiceProcess("--dev", "--store", "memory") as service,
        connect(service.url, service.api_key) as server,
    ):
        session = server.create_session(expires_after_s=600)
        assert server.chatkit(session.client_secret, THREADS_LIST).status_code == 200
        assert server.clock.advance(600) == 1
        expired = server.chatkit(session.client_secret, THREADS_LIST)
        assert expired.json()["error"]["code"] == "session_expired"
        clock = httpx.get(
            f"{service.url}/ratekeeper/dev/clock",
            headers={"Authorization": f"Bearer {service.api_key}"},
        ).json()
        assert clock["advanced_s"] == 600
        assert clock["time"] >= session.expires_at
    assert "DEVELOPMENT MODE (--dev)" in service.stderr


def test_the_worker_factory_says_it_runs_in_dev_mode(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``uvicorn --factory ratekeeper.server._app:app_from_env`` with ``RATEKEEPER_DEV`` logs
    the development-mode warning (``ratekeeper serve --dev`` prints it itself)."""
    monkeypatch.setenv("RATEKEEPER_DEV", "true")
    monkeypatch.setenv("RATEKEEPER_STORE", "memory")
    monkeypatch.setenv("RATEKEEPER_API_KEYS", "rk-x")
    with caplog.at_level("WARNING", logger="ratekeeper.server"):
        app = app_from_env()
    assert app.state.ratekeeper.settings.dev
    assert "DEVELOPMENT MODE (--dev)" in caplog.text
