"""Logging for ``ratekeeper serve``: uvicorn's configuration plus a filter that hides secrets.

Paths are logged by uvicorn's access log; a client that puts a client secret in a URL by
mistake must not get it written to disk, nor may the ``token=`` that authorizes an attachment's
upload or preview URL, so every access-log record is redacted.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from .responses import hide_secrets

__all__ = ("RedactSecrets", "uvicorn_log_config")


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


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """Return uvicorn's default logging configuration with :class:`RedactSecrets` on every
    handler, ratekeeper's own loggers at ``level``, and every other library's warnings through
    the same filtered handler."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_secrets"] = {"()": RedactSecrets}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_secrets")
    # Libraries' own loggers (openai-chatkit, redis, ...) would otherwise reach Python's
    # last-resort handler, past the filter.
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    config["loggers"]["ratekeeper"] = {
        "handlers": ["default"],
        "level": "DEBUG" if level == "trace" else level.upper(),
        "propagate": False,
    }
    return config
