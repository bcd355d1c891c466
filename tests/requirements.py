"""What the tests need from the machine, and the one rule for when it is missing.

A test that needs a program or a service it cannot find is skipped with the reason, except
when ``CI`` is set: then it fails, so a CI run can never pass by skipping what it must test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ("find_program", "missing")


def missing(reason: str) -> NoReturn:
    """Skip with ``reason``, or fail under ``CI``."""
    if os.environ.get("CI"):
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def find_program(name: str, *, hint: str, places: tuple[str, ...] = ()) -> str:
    """Return the path of program ``name`` (on PATH, else in ``places``), or call
    :func:`missing` with ``hint`` (what to install)."""
    found = shutil.which(name) or next(
        (place for place in places if os.access(Path(place), os.X_OK)), None
    )
    if found is None:
        missing(f"{name} is not installed ({hint})")
    return found
