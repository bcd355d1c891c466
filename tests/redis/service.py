"""The real service, ``python -m ratekeeper serve``, as a process a test owns, on Redis."""

from __future__ import annotations

import psutil

from tests.service import ServiceProcess as _Service

__all__ = ("API_KEY", "ServiceProcess")

API_KEY = "rk-redis-test-key-0123456789"


class ServiceProcess(_Service):
    """``ratekeeper serve --backend <redis url>`` on a free loopback port.

    Its conversation store is in memory with one worker (these tests are about sessions), and
    a SQLite file of the service's own data directory with several.

    Not thread-safe; a test drives it.
    """

    def __init__(
        self,
        backend_url: str,
        *,
        workers: int = 1,
        fail_open: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        flags = ["--backend", backend_url, "--workers", str(workers), *extra]
        if workers == 1:
            flags += ["--store", "memory"]
        if fail_open:
            flags.append("--fail-open")
        super().__init__(*flags, api_key=API_KEY)

    def workers_connected_to(self, port: int) -> int:
        """Count this service's processes holding a TCP connection to ``port`` (Redis)."""
        count = 0
        for proc in self.processes():
            try:
                connections = proc.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(conn.raddr and conn.raddr.port == port for conn in connections):
                count += 1
        return count
