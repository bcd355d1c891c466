"""``--metrics-port``: ``/metrics`` on a listener of its own, beside the API's.

The listener is a second uvicorn server on the worker's event loop, started and stopped by the
app's lifespan, so it serves the very registry (and refreshes the very gate statistics) the
API's ``/metrics`` would. With several workers each binds the port with ``SO_REUSEPORT``, as
the API port is shared, so a scrape reaches one of them.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator

import anyio
import uvicorn
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.routing import Route

from .._metrics import MetricsApp


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the API's server, which owns the process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class MetricsListener:
    """Serves ``GET /metrics`` on ``host:port`` until :meth:`stop`.

    Args:
        metrics: the ``/metrics`` app (``gate.metrics_app()``).
        host: the interface to listen on (the API's).
        port: the TCP port.
        reuse_port: bind with ``SO_REUSEPORT`` (several workers share the port).

    Not thread-safe: run and stop it from the app's event loop.
    """

    def __init__(self, metrics: MetricsApp, host: str, port: int, *, reuse_port: bool) -> None:
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        app = Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False
        )
        self._server = _Server(config)
        self._done = anyio.Event()

    def _socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        return sock

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Bind, serve, and report started once listening (for ``TaskGroup.start``).

        Raises:
            OSError: the port cannot be bound (in use, or not allowed); the app does not start.
        """
        sock = self._socket()  # bound here, so a taken port fails the start, not a later scrape
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._serve, sock)
                while not self._server.started:  # start-up readiness, not a timing
                    if self._done.is_set():
                        raise RuntimeError(f"the metrics listener on port {self.port} stopped")
                    await anyio.sleep(0.01)
                task_status.started()
        finally:
            sock.close()

    async def _serve(self, sock: socket.socket) -> None:
        try:
            await self._server.serve(sockets=[sock])
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Ask the listener to close and wait until it has."""
        self._server.should_exit = True
        await self._done.wait()
