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


# The upload and preview URLs of ChatKit attachments carry their authorization in `token=`.
_TOKEN_SCRIPT = """
import logging, logging.config
from ratekeeper.server.logs import uvicorn_log_config

logging.config.dictConfig(uvicorn_log_config("info"))
access = logging.getLogger("uvicorn.access")
for path in (
    "/chatkit/attachments/atc_1/upload?token=UPLOADLEAK",
    "/chatkit/attachments/atc_1/preview?token=PREVIEWLEAK",
    "/chatkit/attachments/atc_1/preview?x=1&token=SECONDLEAK",
):
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
"""


def test_upload_and_preview_tokens_are_redacted_in_the_access_log() -> None:
    """A preview URL opens its image for as long as it exists: its token is a secret too."""
    done = subprocess.run(
        [sys.executable, "-c", _TOKEN_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    logged = done.stdout + done.stderr
    assert "LEAK" not in logged, logged
    assert '"GET /chatkit/attachments/atc_1/preview?token=… HTTP/1.1" 200' in logged
    assert "/chatkit/attachments/atc_1/preview?x=1&token=… HTTP/1.1" in logged
