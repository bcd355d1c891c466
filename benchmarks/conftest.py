"""Shared pytest configuration for ``pytest benchmarks --benchmark-only``.

pytest-benchmark's table shows times only; some cases also record figures that are not times
(RSS per session, the longest sweep batch, decisions per round) in ``benchmark.extra_info``.
This prints them under the table so ``make bench`` shows every number docs/benchmarks.md
quotes.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print each benchmark's ``extra_info``, if any, after pytest-benchmark's table."""
    session = getattr(config, "_benchmarksession", None)
    benchmarks = getattr(session, "benchmarks", None) or []
    rows = [(b.name, b.extra_info) for b in benchmarks if getattr(b, "extra_info", None)]
    if not rows:
        return
    terminalreporter.section("benchmark extra figures")
    for name, info in sorted(rows):
        figures = ", ".join(f"{key}={value}" for key, value in info.items())
        terminalreporter.write_line(f"{name}: {figures}")
