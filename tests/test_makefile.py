"""The README's two commands: what `make serve` installs and which address it uses.

Dry runs (`make -n`): nothing is installed or started.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.requirements import find_program

_ROOT = Path(__file__).resolve().parents[1]


def _dry_run(*args: str, **env: str) -> str:
    find_program("make", hint="GNU make runs the README's two commands")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATEKEEPER_")}
    # -B: every step shows, as on a new machine where nothing is installed yet.
    environ.update(env)
    result = subprocess.run(
        ["make", "-n", "-B", *args],
        cwd=_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_make_serve_installs_what_serving_needs_not_the_dev_toolchain() -> None:
    """`make serve` installs the server, ChatKit and Redis extras, not `.[dev]`."""
    commands = _dry_run("serve")
    assert "-e '.[server,chatkit,redis]'" in commands
    assert ".[dev]" not in commands


def test_make_serve_honours_the_services_own_variables() -> None:
    """RATEKEEPER_HOST / RATEKEEPER_PORT reach `ratekeeper serve`; HOST=/PORT= win over them."""
    assert "--host 127.0.0.2 --port 9100" in _dry_run(
        "serve", RATEKEEPER_HOST="127.0.0.2", RATEKEEPER_PORT="9100"
    )
    assert "--port 9200" in _dry_run("serve", "PORT=9200", RATEKEEPER_PORT="9100")
    assert "--host 127.0.0.1 --port 8000" in _dry_run("serve")
