"""SessionSpec: what a session is created with, validated once, passed through every layer."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from ratekeeper import (
    Engine,
    FileUploadLimits,
    Gate,
    HistoryLimits,
    InvalidParameter,
    ManualClock,
    MemoryBackend,
    SessionSpec,
    Workflow,
)
from ratekeeper._types import DEFAULT_SPEC
from ratekeeper.redis._replies import meta_json, snapshot


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"expires_after_s": 0}, "expires_after.seconds", "integer_below_min_value"),
        ({"expires_after_s": 601}, "expires_after.seconds", "integer_above_max_value"),
        ({"expires_after_s": 600.0}, "expires_after.seconds", "invalid_type"),
        ({"expires_after_s": True}, "expires_after.seconds", "invalid_type"),
        (
            {"max_requests_per_1_minute": 0},
            "rate_limits.max_requests_per_1_minute",
            "integer_below_min_value",
        ),
        (
            {"max_requests_per_1_minute": 2**53},
            "rate_limits.max_requests_per_1_minute",
            "integer_above_max_value",
        ),
        (
            {"file_upload": {"enabled": True}},
            "chatkit_configuration.file_upload",
            "invalid_type",
        ),
        (
            {"file_upload": FileUploadLimits(enabled=1)},  # type: ignore[arg-type]
            "chatkit_configuration.file_upload.enabled",
            "invalid_type",
        ),
        (
            {"file_upload": FileUploadLimits(max_file_size=513)},
            "chatkit_configuration.file_upload.max_file_size",
            "integer_above_max_value",
        ),
        (
            {"history": HistoryLimits(recent_threads=0)},
            "chatkit_configuration.history.recent_threads",
            "integer_below_min_value",
        ),
        ({"workflow": {"id": "wf"}}, "workflow", "invalid_type"),
        (
            {"automatic_thread_titling": 1},
            "chatkit_configuration.automatic_thread_titling.enabled",
            "invalid_type",
        ),
    ],
)
def test_a_bad_field_is_refused_by_its_body_path(
    fields: dict[str, Any], param: str, code: str
) -> None:
    """Each bad value raises InvalidParameter naming its path in the create-session body."""
    with pytest.raises(InvalidParameter) as raised:
        SessionSpec(**fields)
    assert (raised.value.param, raised.value.code) == (param, code)
    with pytest.raises(InvalidParameter) as again:
        Engine().create_session("u", **fields)
    assert (again.value.param, again.value.code) == (param, code)


def test_defaults_are_chatkits() -> None:
    """600 s, 10 a minute, uploads off, history on, no workflow, titling on, no attributes."""
    assert SessionSpec() == DEFAULT_SPEC
    assert dataclasses.astuple(DEFAULT_SPEC) == (
        600,
        10,
        (False, 512, 10),
        (True, None),
        None,
        True,
        None,
    )


def test_a_spec_is_frozen_and_replace_validates() -> None:
    """A spec cannot change; ``dataclasses.replace`` makes a new one, checked as any other."""
    spec = SessionSpec(60, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.expires_after_s = 30  # type: ignore[misc]
    assert dataclasses.replace(spec, expires_after_s=30) == SessionSpec(30, 5)
    with pytest.raises(InvalidParameter):
        dataclasses.replace(spec, expires_after_s=0)


def test_attributes_are_copied_and_empty_means_none() -> None:
    """The caller's dict may change afterwards; the spec does not."""
    attributes = {"k": "v"}
    spec = SessionSpec(attributes=attributes)
    attributes["k"] = "changed"
    assert spec.attributes == {"k": "v"}
    assert SessionSpec(attributes={}).attributes is None
    assert SessionSpec(attributes={}) == DEFAULT_SPEC


def test_the_engine_keeps_the_spec_it_was_given() -> None:
    """A spec is taken as it is: the session holds that very value."""
    engine = Engine(ManualClock())
    spec = SessionSpec(30, 5, workflow=Workflow("wf"))
    session = engine.create_session("u", spec)
    assert session.spec is spec
    assert engine.get(session.id).spec is spec
    assert (session.max_requests_per_1_minute, session.file_upload) == (5, FileUploadLimits())
    assert engine.create_session("u").spec is DEFAULT_SPEC


def test_the_keyword_form_shares_one_spec_per_lifetime_and_limit() -> None:
    """Sessions created with the same keywords hold one spec between them."""
    engine = Engine(ManualClock())
    uploads = FileUploadLimits(enabled=True)
    first = engine.create_session("u", expires_after_s=30, file_upload=uploads)
    second = engine.create_session("v", expires_after_s=30, file_upload=uploads)
    assert first.spec is second.spec
    assert first.spec == SessionSpec(30, file_upload=uploads)


def test_a_shared_spec_never_stands_in_for_an_invalid_equal_value() -> None:
    """``True`` equals ``1`` and ``600.0`` equals ``600``, but neither is a valid keyword."""
    engine = Engine(ManualClock())
    engine.create_session("u", expires_after_s=600, max_requests_per_1_minute=1)
    with pytest.raises(InvalidParameter):
        engine.create_session("u", max_requests_per_1_minute=True)
    with pytest.raises(InvalidParameter):
        engine.create_session("u", expires_after_s=600.0, max_requests_per_1_minute=1)  # type: ignore[arg-type]


def test_mixing_a_spec_and_keywords_is_refused() -> None:
    """A spec and keywords together are a TypeError that says what to do instead."""
    engine = Engine(ManualClock())
    with pytest.raises(TypeError, match=r"not both.*dataclasses\.replace"):
        engine.create_session("u", SessionSpec(), max_requests_per_1_minute=5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        engine.create_session("u", expire_after_s=5)  # type: ignore[call-arg]
    assert engine.statistics().active == 0


@pytest.mark.anyio
async def test_the_gate_passes_one_spec_down() -> None:
    """Through the gate and the memory backend, a spec arrives as it is; keywords as one."""
    engine = Engine(ManualClock())
    gate = Gate(MemoryBackend(engine))
    spec = SessionSpec(30, 5)
    assert (await gate.create_session("u", spec)).spec is spec
    by_keywords = await gate.create_session("u", expires_after_s=30, max_requests_per_1_minute=5)
    assert by_keywords.spec == spec
    with pytest.raises(TypeError, match="not both"):
        await gate.create_session("u", spec, expires_after_s=30)
    with pytest.raises(TypeError, match="unexpected keyword"):
        await gate.create_session("u", expire_after_s=30)  # type: ignore[call-arg]
    assert engine.statistics().active == 2


def test_redis_meta_round_trips_a_spec() -> None:
    """What the Redis backend stores (``m``) rebuilds the spec it was made from."""
    spec = SessionSpec(
        30,
        5,
        FileUploadLimits(True, 8, 2),
        HistoryLimits(False, 3),
        Workflow("wf", "2", {"n": 1}, tracing_enabled=False),
        automatic_thread_titling=False,
        attributes={"k": ["v"]},
    )
    session = snapshot(
        "cksess_x", b"active", 1_700_000_030, 1_700_000_000_250_000, meta_json("u", spec), 5
    )
    assert (session.user, session.spec) == ("u", spec)


def test_redis_meta_written_before_session_specs_is_read_as_before() -> None:
    """Sessions stored by earlier versions kept the workflow and titling in their attributes."""
    old = json.dumps(
        {
            "user": "u",
            "fu": [False, 512, 10],
            "h": [True, None],
            "a": {
                "workflow": {
                    "id": "wf",
                    "version": None,
                    "state_variables": None,
                    "tracing": {"enabled": True},
                },
                "automatic_thread_titling": False,
            },
        }
    )
    session = snapshot("cksess_x", b"expired", 1_700_000_600, 1_700_000_000_000_000, old, 10)
    assert session.spec == SessionSpec(workflow=Workflow("wf"), automatic_thread_titling=False)


def test_a_table_of_shared_specs_stops_keeping_at_its_bound() -> None:
    """Every table of shared specs (keywords', the service's by workflow) is bounded alike:
    past the bound a spec is not kept, and those kept stay."""
    from ratekeeper._types import _MAX_SHARED_SPECS, keep_shared_spec

    specs: dict[int, SessionSpec] = {}
    for n in range(_MAX_SHARED_SPECS + 5):
        keep_shared_spec(specs, n, SessionSpec(max_requests_per_1_minute=n + 1))
    assert len(specs) == _MAX_SHARED_SPECS
    assert specs[0].max_requests_per_1_minute == 1
    assert _MAX_SHARED_SPECS not in specs
