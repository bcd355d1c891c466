"""``--metrics-port``: ``/metrics`` on a listener of its own, and not on the API port."""

from __future__ import annotations

import socket

import httpx
import pytest

from ratekeeper.server import ServerSettings
from ratekeeper.server._cli import build_parser, endpoints_announcement, settings_from_args
from ratekeeper.server._settings import SettingsError

from .conftest import make_live, serve


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metrics_are_served_on_the_metrics_port_and_not_on_the_api_port() -> None:
    port = free_port()
    app, _ = make_live(metrics_port=port)
    with serve(app) as url:
        api = httpx.get(f"{url}/metrics", timeout=10.0)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)
    assert api.status_code == 404
    assert metrics.status_code == 200
    assert 'ratekeeper_http_requests_total{method="GET",route="/healthz",status="200"}' in (
        metrics.text
    )
    assert 'ratekeeper_decisions_total{outcome="allowed"} 0.0' in metrics.text


def test_the_metrics_listener_closes_with_the_app() -> None:
    port = free_port()
    app, _ = make_live(metrics_port=port)
    with serve(app):
        pass
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0)


def test_the_flag_and_the_variable_set_the_metrics_port() -> None:
    args = build_parser().parse_args(["serve", "--metrics-port", "9101"])
    assert settings_from_args(args, environ={}).metrics_port == 9101
    env = {"RATEKEEPER_METRICS_PORT": "9102"}
    assert ServerSettings.from_env(env).metrics_port == 9102
    assert ServerSettings.from_env({}).metrics_port is None


def test_the_metrics_port_must_differ_from_the_api_port() -> None:
    with pytest.raises(SettingsError, match="--metrics-port must differ from --port"):
        ServerSettings(port=8000, metrics_port=8000).checked()


def test_the_start_up_line_says_where_metrics_are() -> None:
    assert "/metrics on port 9100" in endpoints_announcement(9100)
