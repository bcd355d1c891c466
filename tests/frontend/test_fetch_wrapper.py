"""docs/frontend/ratekeeperFetch.js, run by Node's test runner against a live service.

The JavaScript cases are in ``ratekeeperFetch.test.mjs``; this test starts ``ratekeeper serve``
on loopback, runs ``node --test`` on them with the service's URL and API key, and asserts that
Node reported passes and no failures.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.requirements import find_program
from tests.service import ServiceProcess

_ROOT = Path(__file__).resolve().parents[2]
_TESTS = Path(__file__).with_name("ratekeeperFetch.test.mjs")
_NODE_TIMEOUT_S = 120


def _node() -> str:
    return find_program("node", hint="Node.js 18+: the front-end fetch wrapper is not tested")


def test_fetch_wrapper_passes_node_tests_against_live_service() -> None:
    """Every Node test of the fetch wrapper passes against a real service."""
    node = _node()
    with ServiceProcess("--store", "memory") as service:
        env = {
            **os.environ,
            "RATEKEEPER_TEST_URL": service.url,
            "RATEKEEPER_TEST_API_KEY": service.api_key,
        }
        result = subprocess.run(
            [node, "--test", "--test-reporter=tap", str(_TESTS)],
            cwd=_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=_NODE_TIMEOUT_S,
            check=False,
        )
    output = f"{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    counts = dict(re.findall(r"^# (pass|fail|skipped) (\d+)$", result.stdout, re.MULTILINE))
    assert int(counts.get("pass", "0")) > 0, output
    assert counts.get("fail") == "0", output
    assert counts.get("skipped") == "0", output
