"""The create-session body's models: what they accept, and which one error they report.

The SDK tests (test_errors_sdk.py) check each error alone over a live server; these check the
parts a single bad field does not reach: strict JSON, null where a field is optional, and the
order in which several problems of one body are reported (the order the checks always had).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from ratekeeper._errors import InvalidParameter
from ratekeeper._types import FileUploadLimits, HistoryLimits, SessionSpec, Workflow
from ratekeeper.server._models import parse_create_session
from ratekeeper.server._sessions import workflow_json

WF = {"id": "wf_1"}


def error_of(raw: bytes | dict[str, Any]) -> tuple[str | None, str | None, str]:
    body = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(InvalidParameter) as caught:
        parse_create_session(body)
    return caught.value.code, caught.value.param, caught.value.message


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"user": NaN, "workflow": {"id": "w"}}',
        b'{"user": "u", "workflow": {"id": "w"}, "x": Infinity}',
        b'{"user": "u", "workflow": {"id": "w"}, "x": -Infinity}',
        b'{"user": "\\ud800", "workflow": {"id": "w"}}',
        b'{"user": "\xff", "workflow": {"id": "w"}}',
        b'\xef\xbb\xbf{"user": "u", "workflow": {"id": "w"}}',
        b'{"user": "u", "workflow": {"id": "w"}} trailing',
    ],
)
def test_what_is_not_strict_json_is_invalid_json(raw: bytes) -> None:
    assert error_of(raw)[:2] == ("invalid_json", None)


@pytest.mark.parametrize(
    ("body", "param", "expected"),
    [
        ({"user": "u", "workflow": {"id": "w", "version": None}}, "workflow.version", "a string"),
        (
            {"user": "u", "workflow": {"id": "w", "state_variables": None}},
            "workflow.state_variables",
            "an object",
        ),
        ({"user": "u", "workflow": WF, "expires_after": None}, "expires_after", "an object"),
        (
            {"user": "u", "workflow": WF, "chatkit_configuration": {"history": {"enabled": None}}},
            "chatkit_configuration.history.enabled",
            "a boolean",
        ),
    ],
)
def test_an_optional_field_may_be_left_out_but_not_sent_as_null(
    body: dict[str, Any], param: str, expected: str
) -> None:
    assert error_of(body) == (
        "invalid_type",
        param,
        f"Invalid type for '{param}': expected {expected}, but got null instead.",
    )


def test_an_infinite_state_variable_is_refused() -> None:
    raw = b'{"user": "u", "workflow": {"id": "w", "state_variables": {"a": 1e400}}}'
    assert error_of(raw)[:2] == ("invalid_type", "workflow.state_variables.a")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        # Unknown top-level names first, all of them, whatever else is wrong.
        ({"user": 5, "workflow": 3, "zz": 1, "yy": 2}, "zz", "unknown_parameter"),
        # Then missing names, user before workflow ...
        ({"workflow": 3}, "user", "missing_required_parameter"),
        ({"user": 5}, "workflow", "missing_required_parameter"),
        # ... then workflow not being an object, before user's type.
        ({"user": 5, "workflow": 3}, "workflow", "invalid_type"),
        ({"user": 5, "workflow": {"id": 3}}, "user", "invalid_type"),
        # Inside an object: unknown names, then its fields in schema order.
        ({"user": "u", "workflow": {"id": 3, "q": 1}}, "workflow.q", "unknown_parameter"),
        (
            {"user": "u", "workflow": {"id": 3}, "expires_after": {"anchor": "x"}},
            "workflow.id",
            "invalid_type",
        ),
        (
            {"user": "u", "workflow": WF, "expires_after": {"seconds": 0, "anchor": "now"}},
            "expires_after.anchor",
            "invalid_value",
        ),
        (
            {
                "user": "u",
                "workflow": WF,
                "chatkit_configuration": {"history": {"enabled": 1, "recent_threads": 0}},
            },
            "chatkit_configuration.history.recent_threads",
            "integer_below_min_value",
        ),
        # state_variables: the count, then each entry in order, its key before its value.
        (
            {
                "user": "u",
                "workflow": {"id": "w", "state_variables": {f"k{i}": [i] for i in range(65)}},
            },
            "workflow.state_variables",
            "object_above_max_properties",
        ),
        (
            {"user": "u", "workflow": {"id": "w", "state_variables": {"a": [1], "k" * 65: 1}}},
            "workflow.state_variables.a",
            "invalid_type",
        ),
        (
            {"user": "u", "workflow": {"id": "w", "state_variables": {"k" * 65: [1], "a": [1]}}},
            "workflow.state_variables",
            "string_above_max_length",
        ),
    ],
)
def test_of_several_problems_the_first_checked_is_reported(
    body: dict[str, Any], param: str, code: str
) -> None:
    assert error_of(body)[:2] == (code, param)


def test_several_unknown_names_are_listed_in_one_message() -> None:
    assert error_of({"user": "u", "workflow": WF, "b": 1, "ttl_seconds": 2}) == (
        "unknown_parameter",
        "b",
        "Unknown parameters: 'b', 'ttl_seconds' (did you mean 'expires_after.seconds'?).",
    )


def test_a_full_body_resolves_every_field() -> None:
    body = {
        "user": "u_1",
        "workflow": {
            "id": "wf",
            "version": "3",
            "state_variables": {"s": "x", "i": 1, "f": 1.5, "b": True},
            "tracing": {"enabled": False},
        },
        "expires_after": {"anchor": "created_at", "seconds": 120},
        "rate_limits": {"max_requests_per_1_minute": 30},
        "chatkit_configuration": {
            "automatic_thread_titling": {"enabled": False},
            "file_upload": {"enabled": True, "max_files": 3},
            "history": {"recent_threads": 5},
        },
    }
    parsed = parse_create_session(json.dumps(body).encode())
    assert parsed.user == "u_1"
    spec = parsed.to_spec()
    assert workflow_json(spec.workflow) == body["workflow"]
    state = workflow_json(spec.workflow)["state_variables"]
    assert [type(value) for value in state.values()] == [str, int, float, bool]
    assert (spec.expires_after_s, spec.max_requests_per_1_minute) == (120, 30)
    assert spec.automatic_thread_titling is False
    assert spec.file_upload == FileUploadLimits(enabled=True, max_file_size=512, max_files=3)
    assert spec.history == HistoryLimits(enabled=True, recent_threads=5)


def test_a_minimal_body_gets_the_documented_defaults() -> None:
    parsed = parse_create_session(b'{"user": "u", "workflow": {"id": "wf"}}')
    spec = parsed.to_spec()
    assert workflow_json(spec.workflow) == {
        "id": "wf",
        "version": None,
        "state_variables": None,
        "tracing": {"enabled": True},
    }
    assert (spec.expires_after_s, spec.max_requests_per_1_minute) == (600, 10)
    assert spec.automatic_thread_titling is True
    assert (spec.file_upload, spec.history) == (FileUploadLimits(), HistoryLimits())
    assert spec == SessionSpec(workflow=Workflow("wf"))


def test_pydantic_stays_at_the_edge() -> None:
    """Importing ratekeeper (engine, gate, middleware) does not import pydantic."""
    probe = "import sys, ratekeeper; print(sorted(m for m in sys.modules if 'pydantic' in m))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "workflow",
    [
        {"id": "wf"},
        {"id": "wf", "version": "3"},
        {"id": "wf", "tracing": {"enabled": False}},
        {"id": "wf", "state_variables": {"a": 1}},
        {"id": "w" * 300},
        {"id": "wf", "version": "v" * 300},
    ],
)
@pytest.mark.parametrize(
    "rest",
    [{}, {"rate_limits": {"max_requests_per_1_minute": 3}}, {"chatkit_configuration": {}}],
)
def test_a_spec_is_shared_only_where_it_is_the_spec_the_body_asks_for(
    workflow: dict[str, Any], rest: dict[str, Any]
) -> None:
    """Bodies of a user and a plain workflow share one spec per workflow; every spec equals
    the one built afresh from its body, shared or not."""
    specs = [
        parse_create_session(json.dumps({"user": user, "workflow": workflow, **rest}).encode())
        for user in ("u1", "u2")
    ]
    for parsed in specs:
        assert parsed.to_spec() == parsed._spec()
    plain = not rest and "state_variables" not in workflow and len(json.dumps(workflow)) < 200
    assert (specs[0].to_spec() is specs[1].to_spec()) is plain
