"""The import contracts in ``pyproject.toml`` (run by ``make lint`` as ``lint-imports``) bite.

``make lint`` shows they hold; this shows they are not vacuous: on a copy of the package with
an upward import added, each contract breaks and names the offending line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ratekeeper

REPO = Path(ratekeeper.__file__).parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "ratekeeper", tmp_path / "ratekeeper")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")


def test_the_unchanged_copy_keeps_every_contract(copy: Path) -> None:
    result = _lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        # engine -> gate: upwards across the layers
        (
            "_window.py",
            "from ratekeeper._gate import Gate",
            "ratekeeper._window -> ratekeeper._gate",
        ),
        ("_engine.py", "import ratekeeper.server", "ratekeeper._engine -> ratekeeper.server"),
        # chatkit -> server internals
        (
            "chatkit/_limits.py",
            "from ratekeeper.server import _responses",
            "ratekeeper.chatkit._limits -> ratekeeper.server",
        ),
        # the Redis backend and the metrics never need the in-memory engine
        (
            "redis/_keys.py",
            "import ratekeeper._engine",
            "ratekeeper.redis._keys -> ratekeeper._engine",
        ),
        ("_metrics.py", "import ratekeeper._engine", "ratekeeper._metrics -> ratekeeper._engine"),
        # anything -> benchmarks or tests
        ("_types.py", "import benchmarks.contenders", "ratekeeper._types -> benchmarks"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    copy: Path, module: str, line: str, expected: str
) -> None:
    _append(copy / "ratekeeper" / module, line)
    result = _lint(copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert expected in result.stdout, result.stdout
