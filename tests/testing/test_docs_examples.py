"""Every Python example of ``docs/testing.md`` runs as written.

A block whose first line is ``# test_<name>.py`` is a pytest file of a user's project: all of
them run together in a new pytest process that finds the plugin through its entry point, and
each of their tests must pass. The other blocks are scripts, run in a fresh namespace.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_TEST_FILE = re.compile(r"# (test_\w+)\.py\n")


def _blocks() -> tuple[dict[str, str], list[str]]:
    test_files: dict[str, str] = {}
    scripts: list[str] = []
    for block in _BLOCK.findall(_PAGE.read_text()):
        named = _TEST_FILE.match(block)
        if named:
            test_files[named.group(1)] = block
        else:
            scripts.append(block)
    return test_files, scripts


def test_the_pytest_examples_pass_in_a_project_of_their_own(pytester: pytest.Pytester) -> None:
    """Each ``# test_….py`` block passes under pytest, with the plugin found by entry point."""
    test_files, _ = _blocks()
    assert len(test_files) >= 5
    pytester.makepyfile(**test_files)
    expected = sum(
        len(re.findall(r"^def test_|^async def test_", text, re.M)) for text in test_files.values()
    )
    # The library example runs once per anyio backend.
    expected += 1
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=expected)


@pytest.mark.parametrize("number", range(len(_blocks()[1])))
def test_the_script_examples_run(number: int) -> None:
    """Each script block runs without error (its own asserts included)."""
    block = _blocks()[1][number]
    code = compile(block, f"testing.md[script {number}]", "exec")
    exec(code, {"__name__": f"docs_testing_{number}"})  # noqa: S102 - our own documentation
