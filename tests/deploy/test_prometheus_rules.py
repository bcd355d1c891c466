"""The shipped Prometheus rules and Grafana dashboard: promtool's own tests, and no drift.

``promtool`` (Debian package ``prometheus``) checks and unit-tests the rules; without it those
two tests skip with the reason, except under ``CI``, where that fails the run. Every metric
name the rules and the dashboard query must appear in a live service's ``/metrics``, so a
renamed metric cannot leave them silently empty.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.requirements import find_program
from tests.server.conftest import make_live, serve

_DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = _DEPLOY / "prometheus" / "ratekeeper-rules.yml"
RULES_TEST = _DEPLOY / "prometheus" / "ratekeeper-rules.test.yml"
DASHBOARD = _DEPLOY / "grafana" / "ratekeeper.json"
#: Metric names as they appear in PromQL: ours, and prometheus-client's process/platform ones.
_METRIC = re.compile(r"\b(?:ratekeeper|process|python)_[a-z0-9_]+\b")


def promtool() -> str:
    """Return the ``promtool`` path, or skip (fail under ``CI``) when it is missing."""
    return find_program("promtool", hint="apt-get install prometheus")


def run_promtool(*args: str) -> None:
    result = subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    run_promtool("check", "rules", str(RULES))


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    run_promtool("test", "rules", str(RULES_TEST))


def rule_expressions() -> list[str]:
    """Every non-comment line of the rules and of their unit tests (exprs and input series)."""
    return [
        line
        for path in (RULES, RULES_TEST)
        for line in path.read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]


def _targets(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield node["expr"]
        for value in node.values():
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    expressions = list(_targets(document["panels"]))
    variables = document["templating"]["list"]
    expressions += [variable["definition"] for variable in variables if "definition" in variable]
    return expressions


@pytest.fixture(scope="module")
def exported_names() -> set[str]:
    """The sample names a fresh service exports (``_total``, ``_bucket``... included)."""
    app, _ = make_live()
    with serve(app) as url:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
    return {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }


@pytest.mark.parametrize(
    ("source", "expressions"),
    [("rules", rule_expressions), ("dashboard", dashboard_expressions)],
)
def test_every_metric_queried_is_exported(
    source: str, expressions: Any, exported_names: set[str]
) -> None:
    used = {name for expr in expressions() for name in _METRIC.findall(expr)}
    assert used, f"the {source} query no metric"
    unknown = sorted(used - exported_names)
    assert not unknown, f"{source} query metrics no service exports: {unknown}"
