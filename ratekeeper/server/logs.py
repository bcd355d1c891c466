"""Logging for ``ratekeeper serve``: uvicorn's configuration plus a filter that hides secrets.

Paths are logged by uvicorn's access log; a client that puts a client secret in a URL by
mistake must not get it written to disk, nor may the ``token=`` that authorizes an attachment's
upload or preview URL, so every access-log record is redacted.

Every record logged while a request is served carries that request's ``x-request-id``
(:class:`RequestContext`), so the id a 500 tells the caller to quote is in the error's log line.
``--log-format json`` writes one JSON object per line (:class:`JsonFormatter`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from .middleware import current_request
from .responses import hide_secrets
from .settings import LOG_FORMATS

__all__ = ("JsonFormatter", "RedactSecrets", "RequestContext", "uvicorn_log_config")

_ACCESS_LOGGER = "uvicorn.access"


class RedactSecrets(logging.Filter):
    """Replace secret-like tokens (``ek_…``) and URLs' ``token=`` values in a record's
    message, string arguments, and the text of its traceback (an exception's message may
    quote a secret).

    Stateless, so safe to share across threads.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        if isinstance(record.msg, str):
            record.msg = hide_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                hide_secrets(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if record.exc_info and not record.exc_text:
            # Formatters reuse a cached exc_text rather than formatting exc_info again.
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = hide_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = hide_secrets(record.stack_info)
        return True


_TRACEBACKS = logging.Formatter()


class RequestContext(logging.Filter):
    """Add the id of the request being served to a record, as ``record.request_id`` (``None``
    outside a request) and ``record.request_id_text`` (`` request_id=…`` or empty, for text
    formats); on uvicorn's access lines also ``record.duration_ms``, from the request's arrival
    to its response's start (uvicorn writes the line as the response starts).

    Stateless, so safe to share across threads.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops it."""
        if isinstance(record.msg, str) and record.msg.endswith("\n"):
            # uvicorn's "Exception in ASGI application\n" would push the id onto a line of
            # its own, away from the line an operator greps for.
            record.msg = record.msg.rstrip("\n")
        request = current_request.get()
        request_id = None if request is None else request.request_id
        record.request_id = request_id
        record.request_id_text = "" if request_id is None else f" request_id={request_id}"
        if request is not None and record.name == _ACCESS_LOGGER:
            record.duration_ms = round((time.perf_counter() - request.started_at) * 1000.0, 3)
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, ``request_id``, ``exception`` when there is one, and on access
    lines ``client``, ``method``, ``path``, ``status`` and ``duration_ms``.

    Secrets are already gone when it runs (:class:`RedactSecrets` filters the handler). Safe to
    share across threads.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return ``record`` as a JSON line (without the newline)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        args = record.args
        if record.name == _ACCESS_LOGGER and isinstance(args, tuple) and len(args) == 5:
            # uvicorn's access line: client, method, path with query, HTTP version, status.
            entry["client"], entry["method"], entry["path"], _, entry["status"] = args
            entry["duration_ms"] = getattr(record, "duration_ms", None)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


def uvicorn_log_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """Return uvicorn's default logging configuration with :class:`RedactSecrets` and
    :class:`RequestContext` on every handler, ratekeeper's own loggers at ``level``, and every
    other library's warnings through the same filtered handler.

    ``log_format`` is ``"text"`` (uvicorn's lines, each ending `` request_id=…`` while a
    request is served) or ``"json"`` (:class:`JsonFormatter`).
    """
    from uvicorn.config import LOGGING_CONFIG

    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}: {log_format!r}")
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["redact_secrets"] = {"()": RedactSecrets}
    filters["request_context"] = {"()": RequestContext}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).extend(["redact_secrets", "request_context"])
    for formatter in config["formatters"].values():
        if log_format == "json":
            formatter.clear()
            formatter["()"] = JsonFormatter
        else:
            # After the message, before any traceback: the id stays on the error's own line.
            formatter["fmt"] += "%(request_id_text)s"
    # Libraries' own loggers (openai-chatkit, redis, ...) would otherwise reach Python's
    # last-resort handler, past the filter.
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    config["loggers"]["ratekeeper"] = {
        "handlers": ["default"],
        "level": "DEBUG" if level == "trace" else level.upper(),
        "propagate": False,
    }
    return config
