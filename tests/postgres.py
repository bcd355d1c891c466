"""Real PostgreSQL for the tests: the machine's server, scratch databases, private clusters.

Where PostgreSQL comes from, in order:

1. ``RATEKEEPER_TEST_POSTGRES_URL`` (a ``postgresql://`` URL of a server whose user may create
   databases), when set;
2. a server on ``127.0.0.1:5432`` that accepts ``postgres`` (then ``root``) without a password;
3. otherwise the test is skipped with the reason, except when ``CI`` is set: then a missing
   PostgreSQL fails the run, so CI can never pass by skipping every PostgreSQL case.

Each test that needs a database of its own gets a scratch database (``rk_test_<hex>``), dropped
afterwards. Fault tests (stop, pause, restart the server) get a :class:`PrivatePostgres`: a
cluster made with ``initdb`` and run with ``pg_ctl`` on a free port, owned by the test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.requirements import find_program, missing
from tests.service import free_port

__all__ = (
    "PrivatePostgres",
    "postgres_bin",
    "require_postgres",
    "scratch_database",
    "server_url",
)

_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


def _answers(url: str) -> bool:
    result = subprocess.run(
        ["psql", url, "-XAtqc", "select 1"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return result.returncode == 0 and result.stdout.strip() == "1"


@cache
def _find_server() -> str | None:
    if shutil.which("psql") is None:
        return None
    configured = os.environ.get("RATEKEEPER_TEST_POSTGRES_URL")
    for url in (configured,) if configured else _CANDIDATES:
        if _answers(url):
            return url
    return None


def server_url() -> str:
    """Return the URL of a PostgreSQL server the tests may create databases on."""
    url = _find_server()
    if url is None:
        missing(
            "no PostgreSQL: set RATEKEEPER_TEST_POSTGRES_URL, or run a server on 127.0.0.1:5432 "
            "that trusts 'postgres' or 'root' (and install psql)"
        )
    return url


def require_postgres() -> None:
    """Skip (fail under CI) unless a PostgreSQL server answers."""
    server_url()


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """Yield the URL of a new, empty database; drop it (and its connections) afterwards."""
    url = server_url()
    name = f"rk_test_{secrets.token_hex(6)}"
    subprocess.run(["psql", url, "-XAtqc", f"create database {name}"], check=True, timeout=30)
    try:
        yield _with_database(url, name)
    finally:
        subprocess.run(
            ["psql", url, "-XAtqc", f"drop database if exists {name} with (force)"],
            check=False,
            timeout=30,
            capture_output=True,
        )


def postgres_bin(tool: str) -> str:
    """Return the path of a PostgreSQL server program (``initdb``, ``pg_ctl``)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    if found:
        return found[-1]
    return find_program(tool, hint="install the PostgreSQL server package (postgresql)")


class PrivatePostgres:
    """A PostgreSQL cluster of a test's own: ``initdb`` into a temporary directory, then
    ``pg_ctl`` to start, stop, pause (SIGSTOP) and resume it on a free loopback port.

    PostgreSQL refuses to run as root; when the tests run as root the cluster belongs to the
    ``postgres`` system user. Not thread-safe; a test drives it.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="rk-pg-"))
        self.data = self.directory / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                missing("running as root and no 'postgres' user to own a private cluster")
            self._user = "postgres"
            shutil.chown(self.directory, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=check, cwd=self.directory
        )

    def start(self) -> PrivatePostgres:
        """Create the cluster on first use, then start it and wait until it accepts clients."""
        if not self.data.exists():
            self._run(
                postgres_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            )
        self._run(
            postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "log"),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} -c fsync=off",
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: cut clients off; ``immediate``: as if it crashed)."""
        self._run(
            postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )

    def _pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def pause(self) -> None:
        """SIGSTOP the postmaster and its children: connections hang instead of failing."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what :meth:`pause` stopped."""
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: signal.Signals) -> None:
        import psutil

        parent = psutil.Process(self._pid())
        for process in [parent, *parent.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                process.send_signal(sig)

    def close(self) -> None:
        """Stop the server for good and delete its files."""
        with contextlib.suppress(Exception):
            self.resume()
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)
