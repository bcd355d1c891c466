"""``ratekeeper serve``'s logging: no client secret reaches a log line, whoever logs it."""

from __future__ import annotations

import subprocess
import sys

# Configures logging as ``ratekeeper serve`` does, in a process of its own (dictConfig is
# global), then logs a secret the three ways it could get there.
_SCRIPT = """
import logging, logging.config
from ratekeeper.server.logs import uvicorn_log_config

logging.config.dictConfig(uvicorn_log_config("info"))
logging.getLogger("uvicorn.access").info(
    '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/x?s=ek_ACCESSLEAK", "1.1", 200
)
logging.getLogger("chatkit.server").warning("library says ek_LIBRARYLEAK")
try:
    raise ValueError("bad secret ek_TRACEBACKLEAK")
except ValueError:
    logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
"""


def test_secrets_are_redacted_in_access_library_and_traceback_lines() -> None:
    """The access log, other libraries' warnings and tracebacks all pass the redaction."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    logged = done.stdout + done.stderr
    assert "LEAK" not in logged, logged
    assert '"GET /x?s=ek_… HTTP/1.1" 200' in logged
    assert "library says ek_…" in logged
    assert "ValueError: bad secret ek_…" in logged
