"""``ratekeeper serve``: run the service under uvicorn.

Settings come from flags, then ``RATEKEEPER_*`` variables, then defaults (see
:mod:`ratekeeper.server.settings`). One worker runs the app object in this process; several
run :func:`~ratekeeper.server.app_from_env` in uvicorn's worker processes, with the
settings handed over through the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any, cast

import anyio

from .._errors import BackendError, RatekeeperError
from .._urls import hide_password, hide_url_secrets
from ._settings import (
    SETTINGS,
    ServerSettings,
    SettingsError,
    default_data_dir,
    setting_value,
)

_DESCRIPTION = """\
Serve OpenAI's ChatKit session REST surface (/v1/chatkit/sessions, /v1/chatkit/threads) with
exact per-session rate limits and expiry. Point the official SDK at it with
OpenAI(api_key=KEY, base_url="http://HOST:PORT/v1"). Every flag also reads the environment
variable shown; a flag beats its variable.
"""


def _version() -> str:
    try:
        return importlib.metadata.version("ratekeeper")
    except importlib.metadata.PackageNotFoundError:  # running from a tree never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Return the ``ratekeeper`` argument parser with its ``serve`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="ratekeeper", description="ratekeeper: session rate limits and expiry."
    )
    parser.add_argument("--version", action="version", version=f"ratekeeper {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the ChatKit session service",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    defaults = ServerSettings()
    for setting in SETTINGS:
        default = getattr(defaults, setting.field)
        shown = {
            "api_keys": "none: one is generated",
            "cors_origins": "none",
            "max_sessions": "unset",
            "metrics_port": "unset: /metrics on the API port",
            "store": "sqlite:///DATA_DIR/ratekeeper.sqlite3",
            "data_dir": str(default_data_dir()),
            "thread_retention_days": "unset: threads are kept",
        }.get(setting.field, default)
        if setting.is_flag:
            # Say what the setting is by default, not whether the flag is given: for
            # --no-access-log, "access log on", never a bare "off".
            shown = f"{setting.field.replace('_', ' ')} {'on' if default else 'off'}"
        help_text = f"{setting.help} [env: {setting.env}] (default: {shown})"
        if setting.is_flag:
            serve.add_argument(
                setting.flag,
                dest=setting.field,
                action="store_const",
                const=setting.flag_value,
                default=None,
                help=help_text,
            )
        elif setting.repeatable:
            serve.add_argument(
                setting.flag,
                dest=setting.field,
                action="append",
                default=None,
                metavar=setting.metavar,
                help=help_text,
            )
        else:
            serve.add_argument(
                setting.flag,
                dest=setting.field,
                default=None,
                metavar=setting.metavar,
                help=help_text,
            )
    return parser


def settings_from_args(
    args: argparse.Namespace, environ: dict[str, str] | None = None
) -> ServerSettings:
    """Merge parsed flags over the environment's settings.

    Raises:
        SettingsError: a malformed value, or inconsistent settings.
    """
    base = ServerSettings.from_env(os.environ if environ is None else environ)
    changes: dict[str, Any] = {}
    for setting in SETTINGS:
        value = getattr(args, setting.field, None)
        if value is None:
            continue
        if setting.repeatable:
            changes[setting.field] = tuple(
                item for text in value for item in setting_value(setting, text)
            )
        elif setting.is_flag:
            changes[setting.field] = value
        else:
            changes[setting.field] = setting_value(setting, value)
    return base.with_values(**changes)


def store_announcement(settings: ServerSettings) -> str:
    """Return the start-up line that says where conversation state lives."""
    url = settings.shown_store_url
    if settings.store == "memory":
        return (
            "ratekeeper: threads, items and attachments are kept in memory (--store memory): "
            "they are lost when the service stops."
        )
    where = "the default store" if settings.store is None else "the store"
    line = (
        f"ratekeeper: threads, items and attachments are kept in {where} {url}; sessions are "
        f"kept {'in memory (lost on restart)' if settings.uses_memory else 'in Redis'}."
    )
    if settings.token_key is None and (settings.store or "").startswith("postgres"):
        # The one store several hosts share: a key file per host would make each refuse the
        # attachment URLs the others hand out.
        line += (
            " Attachment URLs are signed with the key file token.key of this host's data "
            "directory: every host sharing this store needs the same key (--token-key)."
        )
    return line


class _NotReady(RatekeeperError):
    """Raised when the session backend or the conversation store cannot be reached at start."""


def _check_dependencies(settings: ServerSettings) -> None:
    """Open the conversation store (creating or upgrading its schema) and reach the session
    backend, once, before uvicorn starts; keep trying for up to ``--start-wait`` seconds.

    Done once for all workers: what cannot be reached then stops the command with one line and
    a non-zero status, where uvicorn would print each worker's traceback (and, with several
    workers, exit 0 after they all failed), or would start and answer every request 503.

    Raises:
        _NotReady: the backend or the store did not answer in time, or the store holds a
            schema this release cannot use (not retried).
    """
    from ..store import StoreSchemaError
    from ._app import backend_from_settings, store_from_settings

    async def attempt() -> str | None:
        """Return what does not answer, or ``None`` when everything does."""
        store = store_from_settings(settings)
        try:
            await store.open()
        except BackendError as exc:  # StoreUnavailable: names the store, password hidden
            return str(exc)
        finally:
            with contextlib.suppress(BackendError):
                await store.aclose()
        if settings.uses_memory:
            return None
        backend = backend_from_settings(settings)
        try:
            await backend.statistics()
        except BackendError as exc:
            cause = str(exc.__cause__ or exc).strip().splitlines()
            detail = f"{type(exc.__cause__ or exc).__name__}: {cause[0][:200] if cause else ''}"
            return f"session backend {hide_password(settings.backend)} unavailable ({detail})"
        finally:
            with contextlib.suppress(BackendError):
                await backend.aclose()
        return None

    async def check() -> None:
        deadline = anyio.current_time() + settings.start_wait_s
        while (problem := await attempt()) is not None:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                raise _NotReady(problem)
            await anyio.sleep(min(1.0, remaining))

    try:
        anyio.run(check)
    except StoreSchemaError as exc:
        raise _NotReady(f"conversation store {settings.shown_store_url}: {exc}") from None
    except _NotReady as exc:
        # Drivers take a password from the query string too, and may quote the URL as given.
        message = hide_url_secrets(str(exc), settings.store_url)
        raise _NotReady(hide_url_secrets(message, settings.backend)) from None


def endpoints_announcement(metrics_port: int | None = None) -> str:
    """Return the start-up line that says which endpoints are served, and what is missing."""
    served = "/v1/chatkit (REST), /ratekeeper/admit, /healthz, /readyz, /metrics"
    if metrics_port is not None:
        served = served.replace("/metrics", f"(/metrics on port {metrics_port})")
    if importlib.util.find_spec("chatkit") is None:
        return (
            f"ratekeeper: serving {served}; not /chatkit (the ChatKit protocol endpoint): "
            "install ratekeeper[chatkit] for it."
        )
    return f"ratekeeper: serving {served}, /chatkit (the ChatKit protocol endpoint)."


def _serve(settings: ServerSettings) -> None:
    import uvicorn

    from ._app import create_app, freeze_startup_heap
    from ._auth import announce_generated_key, new_api_key
    from ._logs import startup_notice, uvicorn_log_config
    from ._protocol import ConnectionLimits, LimitedHTTPProtocol

    if not settings.api_keys:
        # Generated here, not in create_app, so that every worker shares the one key.
        key = new_api_key()
        announce_generated_key(key)
        settings = settings.with_values(api_keys=(key,))

    def notice(text: str) -> None:
        print(startup_notice(text, settings.log_format), file=sys.stderr, flush=True)

    notice(store_announcement(settings))
    # Resolved once here, so that every worker opens the very same store.
    settings = settings.with_values(store=settings.store_url)
    _check_dependencies(settings)
    notice(endpoints_announcement(settings.metrics_port))
    if settings.dev:
        from ._dev import dev_announcement

        notice(dev_announcement(settings))
    log_config = uvicorn_log_config(settings.log_level, settings.log_format)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": settings.access_log,
        "log_config": log_config,
        "lifespan": "on",
        "server_header": False,
        # Without it uvicorn waits for in-flight requests forever: a client that never
        # finishes its body, or an endless stream, would hold the shutdown.
        "timeout_graceful_shutdown": settings.drain_timeout_s,
        # The limits on slow and oversized clients (docs/server.md). A partial of a module-level
        # class: uvicorn pickles it into each worker; it builds the protocol like a class.
        "http": cast(
            "type[asyncio.Protocol]",
            functools.partial(LimitedHTTPProtocol, limits=ConnectionLimits.from_settings(settings)),
        ),
    }
    if settings.workers == 1:
        app = create_app(settings)
        freeze_startup_heap()  # this process serves from now on
        uvicorn.run(app, **common)
        return
    os.environ.update(settings.to_env())
    uvicorn.run(
        "ratekeeper.server._app:app_from_env", factory=True, workers=settings.workers, **common
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ratekeeper`` command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            settings = settings_from_args(args)
            _serve(settings)
        except (SettingsError, ValueError) as exc:
            print(f"ratekeeper serve: error: {exc}", file=sys.stderr)
            return 2
        except _NotReady as exc:
            print(f"ratekeeper serve: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0
