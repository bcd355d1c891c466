"""The Python examples in the docs run as written.

Each ```python block of the listed pages runs in a fresh namespace, in order; a block that
needs a live service or credentials is not in these pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_DOCS = Path(__file__).resolve().parents[1] / "docs"
_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
_PAGES = ("store.md", "frontend.md", "migrating.md")


def _blocks(page: str) -> list[str]:
    return _BLOCK.findall((_DOCS / page).read_text())


@pytest.mark.parametrize("page", _PAGES)
def test_every_python_block_runs(page: str) -> None:
    """Every Python example on the page runs without error (its own asserts included)."""
    blocks = _blocks(page)
    assert blocks, f"{page} has no Python example"
    for number, block in enumerate(blocks):
        code = compile(block, f"{page}[{number}]", "exec")
        exec(code, {"__name__": f"docs_{number}"})  # noqa: S102 - our own documentation
