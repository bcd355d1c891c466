"""``ratekeeper serve``'s logging: no client secret reaches a log line, whoever logs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ratekeeper.server._logs import startup_notice
from tests.service import free_port

# Configures logging as ``ratekeeper serve`` does, in a process of its own (dictConfig is
# global), then logs a secret the three ways it could get there.
_SCRIPT = """
import logging, logging.config
from ratekeeper.server._logs import uvicorn_log_config

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
from ratekeeper.server._logs import uvicorn_log_config

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


def test_json_log_format_writes_one_redacted_object_per_line() -> None:
    """``ratekeeper serve --log-format json``: every log line is JSON; the access line has
    the request's id, method, redacted path, status and duration."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RATEKEEPER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "ratekeeper", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--api-key", "rk-json-test-key-0123", "--log-format", "json"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20.0
        while True:
            # Startup, not a timing assertion: poll until the service answers.
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
                break
            except httpx.TransportError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/chatkit/x?client_secret=ek_JSONLEAK&token=TOKENLEAK",
            headers={"x-request-id": "json-1"},
        )
        assert response.headers["x-request-id"] == "json-1"
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    stdout, stderr = out.decode(), err.decode()
    assert "LEAK" not in stdout + stderr
    # The access log is on standard output; standard error has uvicorn's own lines and the
    # start-up notices printed before logging starts: every line of both is JSON.
    records: list[dict[str, Any]] = [json.loads(line) for line in stdout.splitlines()]
    records += [json.loads(line) for line in stderr.splitlines()]
    assert any(r["message"] == "Application startup complete." for r in records)
    notices = [r for r in records if r["logger"] == "ratekeeper.server"]
    assert any(r["message"].startswith("ratekeeper: serving /v1/chatkit") for r in notices)
    assert any("threads, items and attachments are kept in" in r["message"] for r in notices)
    assert all(r["level"] == "INFO" and r["request_id"] is None for r in notices)
    [access] = [r for r in records if r["request_id"] == "json-1"]
    assert access["logger"] == "uvicorn.access"
    assert access["level"] == "INFO"
    assert access["method"] == "GET"
    assert access["path"] == "/v1/chatkit/x?client_secret=ek_…&token=…"
    assert access["status"] == response.status_code
    assert isinstance(access["duration_ms"], float)
    assert access["duration_ms"] >= 0
    assert access["time"].endswith("+00:00")
    assert {"time", "level", "logger", "message", "request_id"} <= set(access)


def test_startup_notices_are_json_lines_and_redacted_in_json_mode() -> None:
    """A notice is printed as it is in text mode, and as one redacted log object in JSON."""
    text = "ratekeeper: serving /v1/chatkit.\nek_NOTICELEAK0123456789 is not printed."
    assert startup_notice(text, "text") == text
    line = startup_notice(text, "json")
    assert "\n" not in line
    record = json.loads(line)
    assert record["logger"] == "ratekeeper.server"
    assert record["level"] == "INFO"
    assert record["request_id"] is None
    assert record["message"].startswith("ratekeeper: serving /v1/chatkit.\nek_")
    assert "NOTICELEAK" not in line
