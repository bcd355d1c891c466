"""The real service, ``python -m ratekeeper serve``, as a process a test owns, on Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from .servers import free_port

__all__ = ("API_KEY", "ServiceProcess")

API_KEY = "rk-redis-test-key-0123456789"
_BETA = {"OpenAI-Beta": "chatkit_beta=v1"}
_STARTUP_TIMEOUT_S = 30.0
_ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """``ratekeeper serve --backend <redis url>`` on a free loopback port.

    Not thread-safe; a test drives it.
    """

    def __init__(self, backend_url: str, *, workers: int = 1, fail_open: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable,
            "-m",
            "ratekeeper",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend",
            backend_url,
            "--api-key",
            API_KEY,
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "critical",
        ]
        if fail_open:
            self.args.append("--fail-open")
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServiceProcess:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RATEKEEPER_")}
        self.process = subprocess.Popen(
            self.args, cwd=_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while True:
            # Startup, not expiry: poll /healthz until the service answers.
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the service did not start: {self.args}")
            time.sleep(0.05)

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
                process.wait()

    def workers_connected_to(self, port: int) -> int:
        """Count this service's processes holding a TCP connection to ``port`` (Redis)."""
        assert self.process is not None
        parent = psutil.Process(self.process.pid)
        count = 0
        for proc in [parent, *parent.children(recursive=True)]:
            try:
                connections = proc.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(conn.raddr and conn.raddr.port == port for conn in connections):
                count += 1
        return count

    def rest(self) -> httpx.Client:
        """A client for the REST surface (API key, beta header)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {API_KEY}", **_BETA},
            timeout=10.0,
        )

    def create_session(self, limit: int, *, seconds: int = 600) -> dict[str, Any]:
        """Create a session over HTTP; return the response body (with ``client_secret``)."""
        with self.rest() as client:
            response = client.post(
                "/v1/chatkit/sessions",
                json={
                    "user": "u_redis",
                    "workflow": {"id": "wf_redis"},
                    "rate_limits": {"max_requests_per_1_minute": limit},
                    "expires_after": {"anchor": "created_at", "seconds": seconds},
                },
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def metric(self, name: str, **labels: str) -> float:
        """Read one sample from this worker's ``/metrics`` (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10.0).text
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        )
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0
