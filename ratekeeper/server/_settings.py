"""The service's settings: one table, read from command-line flags and ``RATEKEEPER_*`` variables.

:data:`SETTINGS` is the one home of every setting's name, flag, environment variable, default
and help text; the CLI builds its ``--help`` from it, :meth:`ServerSettings.from_env` reads the
environment through it, and :meth:`ServerSettings.to_env` writes it back for worker processes.
A flag beats its environment variable, which beats the default.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._errors import RatekeeperError
from .._urls import hide_password as _hide_password

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
#: The values of ``--log-format``: uvicorn's text lines, or one JSON object per line.
LOG_FORMATS = ("text", "json")


class SettingsError(RatekeeperError, ValueError):
    """Raised when a setting's value is malformed or settings contradict each other."""


def parse_bool(text: str) -> bool:
    """Parse ``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_keys(text: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in text.split(",") if key.strip())


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {value}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"expected an integer >= 0, got {value}")
    return value


def _probe_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 60:  # also refuses NaN
        raise ValueError(f"expected seconds above 0 and at most 60, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a port from 0 to 65535, got {value}")
    return value


#: Longest ``retention_s`` accepted (10 years): far beyond any use, and far inside what
#: Redis's expiry times can hold (``1e20`` seconds made every creation fail there).
MAX_RETENTION_S = 315_360_000.0


def _check_retention(value: float) -> float:
    if not 0 <= value <= MAX_RETENTION_S:  # also refuses NaN
        raise ValueError(f"expected seconds from 0 to {MAX_RETENTION_S:.0f}, got {value!r}")
    return value


def _retention(text: str) -> float:
    return _check_retention(float(text))


def _store(text: str) -> str:
    value = text.strip()
    scheme = value.partition(":")[0].lower().partition("+")[0]
    if value == "memory" or (
        scheme in ("sqlite", "postgresql", "postgres") and value.partition(":")[2].startswith("//")
    ):
        return value
    raise ValueError(
        f"expected 'memory', sqlite:///PATH or a postgresql:// URL, got {_hide_password(value)!r}"
    )


#: Longest ``store_timeout_s`` accepted. SQLite's busy timeout is an int of milliseconds: past
#: about 24.8 days it wrapped to 0, and workers sharing the file met "database is locked" at
#: once. No request should wait an hour on the store anyway.
MAX_STORE_TIMEOUT_S = 3600.0


def _check_store_timeout(value: float) -> float:
    if not 0 < value <= MAX_STORE_TIMEOUT_S:  # also refuses NaN
        raise ValueError(
            f"expected seconds above 0 and at most {MAX_STORE_TIMEOUT_S:.0f}, got {value!r}"
        )
    return value


def _store_timeout(text: str) -> float:
    return _check_store_timeout(float(text))


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_RETENTION_S:  # also refuses NaN
        raise ValueError(f"expected seconds above 0 and at most {MAX_RETENTION_S:.0f}, got {text}")
    return value


def _days(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_RETENTION_S / 86_400:  # also refuses NaN
        raise ValueError(f"expected days above 0 and at most 3650, got {text}")
    return value


def _public_url(text: str) -> str:
    value = text.strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or any(c in rest for c in "?# "):
        raise ValueError(f"expected an http:// or https:// base URL, got {text!r}")
    return value


def _cors_origin(text: str) -> str:
    # A browser's Origin header is scheme://host[:port], lower case, nothing after it; one
    # trailing "/" (a copied URL) is forgiven. "*" is refused: the routes are meant for the
    # operator's own front ends, and an explicit list keeps that a decision, not a default.
    value = text.strip().lower()
    value = value[:-1] if value.endswith("/") else value
    refusal = ValueError(
        "expected an origin such as https://chat.example.com or http://localhost:3000 "
        f"(scheme, host and port only; '*' is not accepted), got {text!r}"
    )
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is no number, or out of range
    except ValueError:
        raise refusal from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or value != f"{parts.scheme}://{parts.netloc}"  # a path, query or fragment
        or "@" in parts.netloc
        or " " in value
        or value.endswith(":")
        or port == 0
    ):
        raise refusal
    return value


def _cors_origins(text: str) -> tuple[str, ...]:
    return tuple(_cors_origin(part) for part in text.split(",") if part.strip())


def _bounded_seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= MAX_STORE_TIMEOUT_S:  # also refuses NaN
        raise ValueError(f"expected seconds from 0 to {MAX_STORE_TIMEOUT_S:.0f}, got {text}")
    return value


def _directory(text: str) -> str:
    # An empty value would quietly be the working directory, the very thing --data-dir is
    # there to avoid; "~" is not expanded by env files (systemd, docker compose).
    if not text.strip():
        raise ValueError("expected a directory, got an empty value")
    return str(Path(text).expanduser())


def _token_key(text: str) -> str:
    # Never quotes the value: it is a secret.
    if len(text.strip()) < 32:
        raise ValueError("expected at least 32 characters")
    return text.strip()


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return where ``ratekeeper serve`` keeps its data when ``--data-dir`` is not given.

    ``$XDG_DATA_HOME/ratekeeper``, or ``~/.local/share/ratekeeper``: a fixed place, so the
    service finds its threads again whatever directory it is started from.
    """
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_DATA_HOME") or ""
    root = Path(base) if base.strip() else Path.home() / ".local" / "share"
    return root / "ratekeeper"


def _log_level(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return value


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}, got {text!r}")
    return value


def _redis_db(url: str) -> int | None:
    """The database number a Redis URL names (``/5`` or ``?db=5``), ``None`` when none."""
    parts = urlsplit(url)
    number = parts.path.strip("/") or dict(parse_qsl(parts.query)).get("db", "")
    try:
        return int(number) if number else None
    except ValueError:
        return None


def _backend(text: str) -> str:
    value = text.strip()
    if value == "memory" or value.startswith(("redis://", "rediss://", "unix://")):
        return value
    raise ValueError(
        f"expected 'memory' or a redis://, rediss:// or unix:// URL, got {_hide_password(value)!r}"
    )


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its field, flag, environment variable, parser and help text.

    Attributes:
        field: the :class:`ServerSettings` field it sets.
        flag: the command-line flag (``--port``).
        env: the environment variable (``RATEKEEPER_PORT``).
        parse: turns the variable's text into the value; raises ``ValueError`` when malformed.
        help: what it does, for ``ratekeeper serve --help`` and ``docs/server.md``.
        is_flag: a switch without an argument (a boolean).
        metavar: the placeholder shown in ``--help``.
        flag_value: the value a switch sets when given.
        repeatable: the flag may be given several times (the value is a tuple; the variable
            takes a comma-separated list).
    """

    field: str
    flag: str
    env: str
    parse: Callable[[str], Any]
    help: str
    is_flag: bool = False
    metavar: str | None = None
    flag_value: Any = True
    repeatable: bool = False


#: Every setting of the service, in ``--help`` order.
SETTINGS: tuple[Setting, ...] = (
    Setting("host", "--host", "RATEKEEPER_HOST", str, "Interface to listen on.", metavar="ADDR"),
    Setting("port", "--port", "RATEKEEPER_PORT", _port, "TCP port to listen on.", metavar="N"),
    Setting(
        "metrics_port",
        "--metrics-port",
        "RATEKEEPER_METRICS_PORT",
        _port,
        "Serve /metrics on this TCP port (same interface) instead of on the API port.",
        metavar="N",
    ),
    Setting(
        "api_keys",
        "--api-key",
        "RATEKEEPER_API_KEYS",
        _parse_keys,
        "API key accepted on the REST surface (repeat the flag for several; the variable "
        "takes a comma-separated list). With none, a key is generated at start and printed "
        "once to stderr.",
        metavar="KEY",
        repeatable=True,
    ),
    Setting(
        "backend",
        "--backend",
        "RATEKEEPER_BACKEND",
        _backend,
        "Where sessions live: 'memory' (one process, lost on restart) or a redis://, "
        "rediss:// or unix:// URL (shared by workers and hosts).",
        metavar="URL",
    ),
    Setting(
        "redis_cluster",
        "--redis-cluster",
        "RATEKEEPER_REDIS_CLUSTER",
        parse_bool,
        "Treat the --backend URL as a Redis Cluster node.",
        is_flag=True,
    ),
    Setting(
        "redis_circuit_failures",
        "--redis-circuit-failures",
        "RATEKEEPER_REDIS_CIRCUIT_FAILURES",
        _count,
        "Redis commands timing out in a row after which session requests are answered at once "
        "(503, or admitted with --fail-open) until a background probe reaches Redis; 0: off.",
        metavar="N",
    ),
    Setting(
        "redis_circuit_probe_s",
        "--redis-circuit-probe-interval",
        "RATEKEEPER_REDIS_CIRCUIT_PROBE_S",
        _probe_seconds,
        "Seconds between two probes of Redis while the circuit is open (above 0, at most 60).",
        metavar="SECONDS",
    ),
    Setting(
        "fail_open",
        "--fail-open",
        "RATEKEEPER_FAIL_OPEN",
        parse_bool,
        "Admit session requests while the backend is unreachable (otherwise they get 503).",
        is_flag=True,
    ),
    Setting(
        "store",
        "--store",
        "RATEKEEPER_STORE",
        _store,
        "Where threads, items and attachments live: sqlite:///PATH (one host; the default is "
        "ratekeeper.sqlite3 in the data directory), postgresql://USER@HOST:PORT/DB (several "
        "hosts), or 'memory' (one process, lost on restart: for tests).",
        metavar="URL",
    ),
    Setting(
        "data_dir",
        "--data-dir",
        "RATEKEEPER_DATA_DIR",
        _directory,
        "Directory of the default SQLite store and its attachment bytes, created when missing "
        "(default: $XDG_DATA_HOME/ratekeeper, else ~/.local/share/ratekeeper).",
        metavar="DIR",
    ),
    Setting(
        "token_key",
        "--token-key",
        "RATEKEEPER_TOKEN_KEY",
        _token_key,
        "Key the attachment upload and preview tokens are derived from (at least 32 "
        "characters; the same on every host sharing the store). Default: token.key in the "
        "data directory, created when missing.",
        metavar="KEY",
    ),
    Setting(
        "thread_retention_days",
        "--thread-retention",
        "RATEKEEPER_THREAD_RETENTION_DAYS",
        _days,
        "Delete threads (with their items and attachments) this many days after creation; "
        "unset keeps them.",
        metavar="DAYS",
    ),
    Setting(
        "upload_timeout_s",
        "--upload-timeout",
        "RATEKEEPER_UPLOAD_TIMEOUT_S",
        _seconds,
        "Seconds an attachment may stay not uploaded, or uploaded but in no message, before it "
        "is deleted.",
        metavar="SECONDS",
    ),
    Setting(
        "store_timeout_s",
        "--store-timeout",
        "RATEKEEPER_STORE_TIMEOUT_S",
        _store_timeout,
        "Longest wait on the store's database for one operation; then 503 (above 0, at most 3600).",
        metavar="SECONDS",
    ),
    Setting(
        "start_wait_s",
        "--start-wait",
        "RATEKEEPER_START_WAIT_S",
        _bounded_seconds,
        "Seconds to keep trying to reach the session backend and the conversation store at "
        "start (for orchestrators that start them after the service); 0: fail at once.",
        metavar="SECONDS",
    ),
    Setting(
        "drain_timeout_s",
        "--drain-timeout",
        "RATEKEEPER_DRAIN_TIMEOUT_S",
        _bounded_seconds,
        "Seconds in-flight requests and ChatKit streams may take to finish at shutdown "
        "(SIGTERM, SIGINT) before they are cut off.",
        metavar="SECONDS",
    ),
    Setting(
        "workers",
        "--workers",
        "RATEKEEPER_WORKERS",
        _positive_int,
        "Worker processes. More than 1 needs a Redis backend (in memory each worker would "
        "enforce its own copy of every limit) and a SQLite or PostgreSQL store.",
        metavar="N",
    ),
    Setting(
        "allow_missing_beta_header",
        "--allow-missing-beta-header",
        "RATEKEEPER_ALLOW_MISSING_BETA_HEADER",
        parse_bool,
        "Accept REST requests without 'OpenAI-Beta: chatkit_beta=v1' (default: 400 "
        "invalid_beta, as OpenAI answers).",
        is_flag=True,
    ),
    Setting(
        "public_url",
        "--public-url",
        "RATEKEEPER_PUBLIC_URL",
        _public_url,
        "The service's external base URL (https://chat.example.com), for the attachment upload "
        "and image preview URLs it hands out; default: each request's own Host.",
        metavar="URL",
    ),
    Setting(
        "cors_origins",
        "--cors-origin",
        "RATEKEEPER_CORS_ORIGINS",
        _cors_origins,
        "Origin (https://chat.example.com) whose pages may call the session routes "
        "(/chatkit, its uploads and previews, /ratekeeper/admit) from a browser; repeat the "
        "flag for several (the variable takes a comma-separated list). None: no CORS headers.",
        metavar="ORIGIN",
        repeatable=True,
    ),
    Setting(
        "max_body_bytes",
        "--max-body-bytes",
        "RATEKEEPER_MAX_BODY_BYTES",
        _positive_int,
        "Largest request body accepted; larger ones get 413.",
        metavar="N",
    ),
    Setting(
        "max_header_bytes",
        "--max-header-bytes",
        "RATEKEEPER_MAX_HEADER_BYTES",
        _positive_int,
        "Longest request head (request line and header fields) accepted; longer ones get 431 "
        "and the connection is closed.",
        metavar="N",
    ),
    Setting(
        "max_headers",
        "--max-headers",
        "RATEKEEPER_MAX_HEADERS",
        _positive_int,
        "Most header fields accepted in one request; more get 431.",
        metavar="N",
    ),
    Setting(
        "header_timeout_s",
        "--header-timeout",
        "RATEKEEPER_HEADER_TIMEOUT_S",
        _seconds,
        "Seconds a request head may take to arrive, from the connection's opening (or a later "
        "request's first byte); then 408 and close.",
        metavar="SECONDS",
    ),
    Setting(
        "body_timeout_s",
        "--body-timeout",
        "RATEKEEPER_BODY_TIMEOUT_S",
        _seconds,
        "Seconds a request body may send nothing; then 408 and close.",
        metavar="SECONDS",
    ),
    Setting(
        "max_connections",
        "--max-connections",
        "RATEKEEPER_MAX_CONNECTIONS",
        _positive_int,
        "Open connections per worker. At the cap a new connection displaces the oldest idle one "
        "(or one still sending its head); when all are busy it gets 503 and is closed.",
        metavar="N",
    ),
    Setting(
        "max_sessions",
        "--max-sessions",
        "RATEKEEPER_MAX_SESSIONS",
        _positive_int,
        "Cap on active sessions; creating one more gets 503 capacity_exceeded. Unset: "
        "1000000 in memory, no cap on Redis (where the check costs a round trip per creation).",
        metavar="N",
    ),
    Setting(
        "retention_s",
        "--retention",
        "RATEKEEPER_RETENTION_S",
        _retention,
        "Seconds an expired or cancelled session is remembered (so a late request or cancel "
        "learns 'expired'/'cancelled' rather than 'not found'); 0 to 315360000 (10 years).",
        metavar="SECONDS",
    ),
    Setting(
        "log_level",
        "--log-level",
        "RATEKEEPER_LOG_LEVEL",
        _log_level,
        f"Log level: {', '.join(LOG_LEVELS)}.",
        metavar="LEVEL",
    ),
    Setting(
        "log_format",
        "--log-format",
        "RATEKEEPER_LOG_FORMAT",
        _log_format,
        "Log lines as 'text' (uvicorn's) or 'json' (one object per line).",
        metavar="FORMAT",
    ),
    Setting(
        "access_log",
        "--no-access-log",
        "RATEKEEPER_ACCESS_LOG",
        parse_bool,
        "Turn off the per-request access log (the variable: 'false').",
        is_flag=True,
        flag_value=False,
    ),
    Setting(
        "dev",
        "--dev",
        "RATEKEEPER_DEV",
        parse_bool,
        "Development mode, for tests: the /ratekeeper/dev/ routes move the clock, inject "
        "faults and list recent requests (API key). In-memory backend only; loopback only "
        "unless --dev-allow-remote. Never in production.",
        is_flag=True,
    ),
    Setting(
        "dev_allow_remote",
        "--dev-allow-remote",
        "RATEKEEPER_DEV_ALLOW_REMOTE",
        parse_bool,
        "Allow --dev on a host other than loopback (anyone with the API key can then move the "
        "clock and inject faults).",
        is_flag=True,
    ),
)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything the service is configured with. Immutable.

    Attributes:
        host: interface to listen on.
        port: TCP port.
        metrics_port: TCP port of a separate ``/metrics`` listener (``None``: ``/metrics`` is
            served on ``port``).
        api_keys: keys accepted on the REST surface (``()``: one is generated at start).
        backend: ``"memory"`` or a Redis URL.
        redis_cluster: whether the Redis URL names a cluster node.
        fail_open: admit session requests while the backend is unreachable.
        redis_circuit_failures: Redis timeouts in a row that open the circuit breaker (0: off).
        redis_circuit_probe_s: seconds between two probes while the circuit is open.
        store: the conversation store's URL; ``None`` for the default SQLite file in
            ``data_dir`` (see :attr:`store_url`).
        data_dir: directory of the default SQLite store (``None``: :func:`default_data_dir`).
        token_key: key of the attachment upload and preview tokens (``None``: ``token.key``
            in the data directory, created when missing; a random key with
            ``--store memory``).
        thread_retention_days: delete threads this many days after creation (``None``: never).
        upload_timeout_s: delete attachments not uploaded, or in no message, after this long.
        store_timeout_s: longest wait on the store's database for one operation.
        start_wait_s: how long ``ratekeeper serve`` keeps trying to reach the backend and
            the store at start.
        drain_timeout_s: how long in-flight requests may take to finish at shutdown.
        workers: worker processes (> 1 only with Redis and a SQL store).
        allow_missing_beta_header: accept requests without ``OpenAI-Beta: chatkit_beta=v1``.
        public_url: external base URL for the upload and preview URLs (``None``: the
            request's own).
        cors_origins: origins whose pages may call the session routes from a browser
            (``()``: no cross-origin access).
        max_body_bytes: largest request body accepted.
        max_header_bytes: longest request head (request line and headers) accepted.
        max_headers: most header fields accepted in one request.
        header_timeout_s: longest wait for a complete request head.
        body_timeout_s: longest a request body may send nothing.
        max_connections: open connections per worker process.
        max_sessions: cap on active sessions (``None``: 1,000,000 in memory, none on Redis).
        retention_s: how long ended sessions are remembered.
        log_level: uvicorn's and ratekeeper's log level.
        log_format: ``"text"`` or ``"json"`` (one object per line).
        access_log: whether uvicorn logs every request.
        dev: development mode (``/ratekeeper/dev/`` routes: clock, faults, request log).
        dev_allow_remote: allow ``dev`` on a host that is not loopback.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    metrics_port: int | None = None
    api_keys: tuple[str, ...] = ()
    backend: str = "memory"
    redis_cluster: bool = False
    fail_open: bool = False
    redis_circuit_failures: int = 3
    redis_circuit_probe_s: float = 0.5
    store: str | None = None
    data_dir: str | None = None
    token_key: str | None = None
    thread_retention_days: float | None = None
    upload_timeout_s: float = 3600.0
    store_timeout_s: float = 10.0
    start_wait_s: float = 0.0
    drain_timeout_s: float = 30.0
    workers: int = 1
    allow_missing_beta_header: bool = False
    public_url: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576
    max_header_bytes: int = 32_768
    max_headers: int = 100
    header_timeout_s: float = 20.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000
    max_sessions: int | None = None
    retention_s: float = 3600.0
    log_level: str = "info"
    log_format: str = "text"
    access_log: bool = True
    dev: bool = False
    dev_allow_remote: bool = False

    @property
    def uses_memory(self) -> bool:
        """Whether sessions live in this process."""
        return self.backend == "memory"

    @property
    def store_url(self) -> str:
        """The conversation store's URL, the default SQLite file resolved."""
        if self.store is not None:
            return self.store
        data_dir = Path(self.data_dir) if self.data_dir is not None else default_data_dir()
        return f"sqlite:///{data_dir.absolute() / 'ratekeeper.sqlite3'}"

    @property
    def shown_store_url(self) -> str:
        """:attr:`store_url` with any password hidden, for logs and errors."""
        return _hide_password(self.store_url)

    def __repr__(self) -> str:
        # Keys and URL passwords are secrets: show how many keys, never which.
        shown = ", ".join(
            f"{f.name}=<{len(self.api_keys)} key(s)>"
            if f.name == "api_keys"
            else f"{f.name}=<hidden>"
            if f.name == "token_key" and self.token_key is not None
            else f"{f.name}={_hide_password(getattr(self, f.name))!r}"
            if f.name in ("backend", "store") and getattr(self, f.name) is not None
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"ServerSettings({shown})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Read every ``RATEKEEPER_*`` variable that is set; defaults for the rest.

        Raises:
            SettingsError: a variable is malformed (the message names it, never its value
                when it holds API keys).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            text = environ.get(setting.env)
            if text is None:
                continue
            values[setting.field] = setting_value(setting, text)
        return cls(**values).checked()

    def to_env(self) -> dict[str, str]:
        """Return the environment variables that reproduce these settings in a worker."""
        env = {}
        for setting in SETTINGS:
            value = getattr(self, setting.field)
            if value is None:
                continue
            if isinstance(value, tuple):
                env[setting.env] = ",".join(value)
            elif isinstance(value, bool):
                env[setting.env] = "true" if value else "false"
            else:
                env[setting.env] = str(value)
        return env

    def with_values(self, **changes: Any) -> ServerSettings:
        """Return a copy with ``changes`` applied and checked."""
        return replace(self, **changes).checked()

    def checked(self) -> ServerSettings:
        """Return ``self`` if the settings are consistent.

        Raises:
            SettingsError: several workers on the in-memory backend (or store), a cluster
                flag without a Redis URL, a retention that is not 0..MAX_RETENTION_S seconds,
                or a store timeout that is not above 0 and at most MAX_STORE_TIMEOUT_S.
        """
        if self.workers > 1 and self.uses_memory:
            raise SettingsError(
                f"--workers {self.workers} needs a shared backend: on the in-memory backend "
                "every worker would enforce its own copy of every session and limit. Use "
                "--backend redis://HOST:PORT/0, or --workers 1."
            )
        if self.workers > 1 and self.store == "memory":
            raise SettingsError(
                f"--workers {self.workers} needs a shared store: with --store memory every "
                "worker would keep its own threads. Use the default SQLite store, "
                "--store postgresql://…, or --workers 1."
            )
        if self.metrics_port is not None and self.metrics_port == self.port != 0:
            raise SettingsError("--metrics-port must differ from --port")
        if self.redis_cluster and self.uses_memory:
            raise SettingsError("--redis-cluster needs --backend with a Redis URL")
        if self.redis_cluster and _redis_db(self.backend) not in (None, 0):
            raise SettingsError(
                "--redis-cluster: a Redis Cluster has only database 0; drop the database "
                f"number from --backend ({_hide_password(self.backend)})"
            )
        try:
            _check_retention(self.retention_s)
        except ValueError as exc:
            raise SettingsError(f"invalid retention_s / --retention: {exc}") from None
        try:
            _check_store_timeout(self.store_timeout_s)
        except ValueError as exc:
            raise SettingsError(f"invalid store_timeout_s / --store-timeout: {exc}") from None
        self._check_dev()
        if isinstance(self.cors_origins, str):
            raise SettingsError("cors_origins is a tuple of origins, not one string")
        for origin in self.cors_origins:
            try:
                if _cors_origin(origin) != origin:
                    raise ValueError(f"write it as {_cors_origin(origin)!r}")
            except ValueError as exc:
                raise SettingsError(f"invalid cors_origins / --cors-origin: {exc}") from None
        return self

    def _check_dev(self) -> None:
        """Refuse ``--dev`` where it would be unsafe or could not keep its promises."""
        if self.dev_allow_remote and not self.dev:
            raise SettingsError("--dev-allow-remote only makes sense with --dev")
        if not self.dev:
            return
        if not self.uses_memory:
            raise SettingsError(
                "--dev needs the in-memory backend: on Redis, session time is the Redis "
                "server's TIME, which ratekeeper cannot move. Drop --backend for tests, "
                "or run without --dev."
            )
        if not (self.dev_allow_remote or is_loopback(self.host)):
            raise SettingsError(
                f"--dev on --host {self.host}, which is not loopback: anyone who can reach it "
                "with the API key could move the clock and inject faults. Use --host "
                "127.0.0.1, or add --dev-allow-remote if you really mean it."
            )


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def setting_value(setting: Setting, text: str) -> Any:
    """Parse one setting's text, raising :class:`SettingsError` that names the setting."""
    try:
        return setting.parse(text)
    except ValueError as exc:
        shown = "" if setting.field == "api_keys" else f": {exc}"  # token_key's never quotes
        raise SettingsError(f"invalid {setting.env} / {setting.flag}{shown}") from None
