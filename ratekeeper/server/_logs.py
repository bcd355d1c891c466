"""Logging for ``ratekeeper serve``: uvicorn's configuration plus a filter that hides secrets.

Paths are logged by uvicorn's access log (and whole ASGI scopes at ``--log-level trace``); a
client that puts a client secret or an API key in a URL by mistake must not get it written to
disk, nor may the ``token=`` that authorizes an attachment's upload or preview URL, so every
record is redacted (:class:`RedactSecrets`), on every handler (:func:`install_redaction`, run by
the app's lifespan however it is served).

Every record logged while a request is served carries that request's ``x-request-id``
(:class:`RequestContext`), so the id a 500 tells the caller to quote is in the error's log line.
``--log-format json`` writes one JSON object per line (:class:`JsonFormatter`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .._redact import SHAPES, Redactor
from ._request_middleware import current_request
from ._settings import LOG_FORMATS

_ACCESS_LOGGER = "uvicorn.access"


class RedactSecrets(logging.Filter):
    """Hide client secrets, API keys and credentials (:class:`~ratekeeper._redact.Redactor`)
    in a record: its message, its arguments whatever their types (uvicorn's trace lines pass
    ASGI scopes: dicts holding ``bytes``), and the text of its traceback and stack.

    The record's text is formatted once and tested; most records hold nothing, and the cost
    is then that formatting and one fast substring test. When something is to hide, the
    message and its string arguments are redacted one by one, so a record keeps its shape
    (uvicorn's access formatter unpacks the five arguments of an access line); if its text
    still holds something (other argument types, a secret split between the message and an
    argument), the record's message becomes its redacted text, without arguments.

    Args:
        redactor: what to hide; shapes only (no key) by default. A running app adds its keys
            with :func:`install_redaction`.

    Safe to share across threads (the redactor is swapped whole, never changed in place).
    """

    def __init__(self, redactor: Redactor = SHAPES) -> None:
        super().__init__()
        self._base = redactor
        self._added: list[Redactor] = []
        self.redactor = redactor

    def add(self, redactor: Redactor) -> None:
        """Hide ``redactor``'s keys too (until :meth:`discard`)."""
        self._added.append(redactor)
        self._combine()

    def discard(self, redactor: Redactor) -> None:
        """Stop hiding the keys :meth:`add` was given with ``redactor``."""
        if redactor in self._added:
            self._added.remove(redactor)
            self._combine()

    def _combine(self) -> None:
        keys = [key for redactor in self._added for key in redactor.keys]
        self.redactor = self._base.with_keys(keys) if keys else self._base

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        redactor = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # the formatter would report it, arguments and all
            message = f"{record.msg!s} (unformattable arguments: {record.args!r})"
            record.msg, record.args = message, ()
        if redactor.may_hold(message):
            _redact_message(record, message, redactor)
        if record.exc_info and not record.exc_text:
            # Formatters reuse a cached exc_text rather than formatting exc_info again.
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        return True


def _redact_message(record: logging.LogRecord, message: str, redactor: Redactor) -> None:
    msg, args = record.msg, record.args
    if type(msg) is str and type(args) is tuple and all(type(a) in _SAFE_TYPES for a in args):
        record.msg = redactor.text(msg)
        record.args = tuple(redactor.text(a) if type(a) is str else a for a in args)
        if not redactor.finds(record.getMessage()):
            return
    record.msg, record.args = redactor.text(message), ()


_TRACEBACKS = logging.Formatter()
# Arguments that cannot hold a secret unless they are strings.
_SAFE_TYPES = (str, int, float, bool, type(None))


def install_redaction(redactor: Redactor) -> Callable[[], None]:
    """Make every logging handler of the process hide what ``redactor`` hides; return the
    function that stops hiding its keys.

    Every handler attached when it is called (the root's, every named logger's, such as
    uvicorn's, and Python's last-resort handler) gets a :class:`RedactSecrets` filter, first
    in its list, unless it has one; that filter learns ``redactor``'s keys. The service's
    lifespan calls it, so the redaction holds however the app is served (``ratekeeper
    serve``, plain ``uvicorn --factory``, another ASGI server); handlers added later need
    their own :class:`RedactSecrets`. Undoing forgets the keys but leaves the filters (hiding
    the shapes of secrets is never wrong).
    """
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)
    ]
    handlers = {id(h): h for logger in loggers for h in logger.handlers}
    if logging.lastResort is not None:
        handlers[id(logging.lastResort)] = logging.lastResort
    filters: list[RedactSecrets] = []
    for handler in handlers.values():
        found = [f for f in handler.filters if isinstance(f, RedactSecrets)]
        if found:
            filters.append(found[0])
        else:
            filters.append(RedactSecrets())
            handler.filters.insert(0, filters[-1])
    for redact in filters:
        redact.add(redactor)

    def undo() -> None:
        for redact in filters:
            redact.discard(redactor)

    return undo


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


def startup_notice(text: str, log_format: str) -> str:
    """Return a start-up notice as the service prints it: as it is, or as a JSON log line.

    The notices (where the store is, which endpoints are served, dev mode) are printed before
    uvicorn configures logging. With ``--log-format json`` each is one object shaped like a
    log record of the ``ratekeeper.server`` logger at ``INFO``, redacted like one, so that
    every line the service writes parses as JSON.
    """
    if log_format != "json":
        return text
    record = logging.LogRecord("ratekeeper.server", logging.INFO, __file__, 0, text, None, None)
    RedactSecrets().filter(record)
    return JsonFormatter().format(record)


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
