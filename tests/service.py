"""The real service, ``python -m ratekeeper serve``, as a process a test owns.

Used where only a separate process will do: several workers, Redis faults, restarts (SIGTERM
and SIGKILL), a database going away, memory measured from outside.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import httpx
import psutil
from openai import OpenAI

__all__ = ("API_KEY", "ServiceProcess", "free_port")

API_KEY = "rk-service-test-key-0123456789"
BETA = {"OpenAI-Beta": "chatkit_beta=v1"}
_STARTUP_TIMEOUT_S = 60.0
_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """``ratekeeper serve`` on a free loopback port, with the given flags.

    Args:
        *flags: extra command-line flags (``"--store", url``, ``"--workers", "4"``, …).
        api_key: the API key it accepts.
        port: the port to listen on (a free one by default; pass one to restart in place).

    Not thread-safe; a test drives it. Use as a context manager, or :meth:`start` and
    :meth:`stop` to restart it with the same flags.
    """

    def __init__(self, *flags: str, api_key: str = API_KEY, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.args = [
            sys.executable,
            "-m",
            "ratekeeper",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--api-key",
            api_key,
            "--no-access-log",
            "--log-level",
            "critical",
            *flags,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the service and wait until ``/healthz`` answers.

        Raises:
            RuntimeError: it exited or did not answer in time (its stderr is in the message).
        """
        env = {key: value for key, value in os.environ.items() if not key.startswith("RATEKEEPER_")}
        self.process = subprocess.Popen(
            self.args, cwd=_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while True:
            # Startup, not a timing assertion: poll /healthz until the service answers.
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"the service did not start: {self.args}\n{self.stderr}")
            time.sleep(0.05)

    stderr: str = ""

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int | None:
        """Send ``sig`` (SIGINT, SIGTERM, or SIGKILL to the whole process tree); wait for exit.

        Returns:
            The exit code, ``None`` if it was not running.
        """
        process = self.process
        if process is None:
            return None
        self.process = None
        if process.poll() is None:
            if sig == signal.SIGKILL:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
                process.kill()
                process.wait()
        if process.stderr is not None:
            self.stderr = process.stderr.read().decode(errors="replace")
            process.stderr.close()
        return process.returncode

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        """The service's main process id."""
        assert self.process is not None
        return self.process.pid

    def processes(self) -> list[psutil.Process]:
        """The main process and its workers."""
        parent = psutil.Process(self.pid)
        return [parent, *parent.children(recursive=True)]

    def client(self, **options: Any) -> OpenAI:
        """Return an ``openai`` SDK client on this service (retries off unless asked for)."""
        options.setdefault("api_key", self.api_key)
        options.setdefault("max_retries", 0)
        return OpenAI(base_url=f"{self.url}/v1", **options)

    def rest(self) -> httpx.Client:
        """A client for the REST surface (API key, beta header)."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.api_key}", **BETA},
            timeout=30.0,
        )

    def create_session(
        self, limit: int, *, seconds: int = 600, user: str = "u_service", **body: Any
    ) -> dict[str, Any]:
        """Create a session over HTTP; return the response body (with ``client_secret``)."""
        with self.rest() as client:
            response = client.post(
                "/v1/chatkit/sessions",
                json={
                    "user": user,
                    "workflow": {"id": "wf_service"},
                    "rate_limits": {"max_requests_per_1_minute": limit},
                    "expires_after": {"anchor": "created_at", "seconds": seconds},
                    **body,
                },
            )
        assert response.status_code == 200, response.text
        created: dict[str, Any] = response.json()
        return created

    def metric(self, name: str, **labels: str) -> float:
        """Read one sample from ``/metrics`` (of whichever worker answers; 0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10.0).text
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
        )
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0
