"""The create-session body as strict pydantic models, and its errors in OpenAI's words.

``POST /v1/chatkit/sessions`` bodies are parsed by pydantic-core's JSON parser and validated by
the models below in one pass of compiled code: a fifth to a third of the time the hand-written
checks took (``docs/benchmarks.md``, Service). Every rule of ChatKit's
``CreateChatSessionBody`` is in the models: strict types (``"10"`` is not an integer, ``1`` is
not a boolean), unknown names refused, ``null`` refused where a value is optional, no ``NaN``
or ``Infinity``. :func:`_first_error` then turns pydantic's list of errors into the one error
OpenAI would report (:class:`~ratekeeper.InvalidParameter` with its ``code``, ``param``
and message), in the order the checks have always run: unknown names first (every unknown
top-level name at once, with a hint for the fields of OpenAI's stale curl example), then
missing ones, then each field in schema order.

pydantic stays at this edge: a valid body becomes one
:class:`~ratekeeper.SessionSpec` (:meth:`CreateSessionRequest.to_spec`), which the gate,
the backend and the engine take as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from .. import _types as types
from .._errors import InvalidParameter
from .._params import MAX_EXPIRES_AFTER_S, MAX_FILE_SIZE_MB, MAX_JSON_INT, type_name
from .._types import (
    DEFAULT_SPEC,
    FileUploadLimits,
    HistoryLimits,
    SessionSpec,
    keep_shared_spec,
)

#: ``workflow.state_variables`` may hold at most this many entries ...
MAX_STATE_VARIABLES = 64
#: ... with keys of at most this many characters ...
MAX_STATE_VARIABLE_KEY = 64
#: ... and string values of at most this many characters (the schema's ``maxLength``).
MAX_STATE_VARIABLE_STRING = 10_485_760

# Hints for the fields of the stale curl example on OpenAI's reference page.
_MOVED = {
    "max_requests_per_1_minute": "rate_limits.max_requests_per_1_minute",
    "ttl_seconds": "expires_after.seconds",
}

_INVALID_JSON = (
    "We could not parse the JSON body of your request. The ChatKit API expects a JSON "
    "payload (UTF-8, Content-Type: application/json), but what was sent was not valid JSON."
)

Count = Annotated[int, Field(ge=1, le=MAX_JSON_INT)]
StateValue = Annotated[str, Field(max_length=MAX_STATE_VARIABLE_STRING)] | int | float | bool
StateVariables = Annotated[
    dict[Annotated[str, Field(max_length=MAX_STATE_VARIABLE_KEY)], StateValue],
    Field(max_length=MAX_STATE_VARIABLES),
]


def _not_null(value: Any) -> Any:
    # An optional field may be left out, but not sent as null: the schema has no nullable
    # field. Raised as the type error pydantic would give, so it is reported as one.
    if value is None:
        raise PydanticCustomError("null", "null is not a value of this field")
    return value


class _Strict(BaseModel):
    """No coercion, no unknown names, no NaN: what the JSON says, or an error."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class Tracing(_Strict):
    """``workflow.tracing``."""

    enabled: bool = True


class Workflow(_Strict):
    """``workflow``: which workflow, pinned how, with which variables."""

    id: str
    version: str | None = None
    state_variables: StateVariables | None = None
    tracing: Tracing = Tracing()

    _no_null = field_validator("version", "state_variables", mode="before")(_not_null)

    def to_spec(self) -> types.Workflow:
        """Return the session's :class:`~ratekeeper.Workflow`, defaults resolved."""
        return types.Workflow(
            self.id,
            self.version,
            None if self.state_variables is None else dict(self.state_variables),
            self.tracing.enabled,
        )


class ExpiresAfter(_Strict):
    """``expires_after``: seconds after creation."""

    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(ge=1, le=MAX_EXPIRES_AFTER_S)]


class RateLimits(_Strict):
    """``rate_limits``."""

    max_requests_per_1_minute: Count = 10


class Titling(_Strict):
    """``chatkit_configuration.automatic_thread_titling``."""

    enabled: bool = True


class FileUpload(_Strict):
    """``chatkit_configuration.file_upload``."""

    enabled: bool = False
    max_file_size: Annotated[int, Field(ge=1, le=MAX_FILE_SIZE_MB)] = MAX_FILE_SIZE_MB
    max_files: Count = 10


class History(_Strict):
    """``chatkit_configuration.history`` (``recent_threads`` is checked first, as it was)."""

    recent_threads: Count | None = None
    enabled: bool = True

    _no_null = field_validator("recent_threads", mode="before")(_not_null)


class Configuration(_Strict):
    """``chatkit_configuration``."""

    automatic_thread_titling: Titling = Titling()
    file_upload: FileUpload = FileUpload()
    history: History = History()


class CreateSessionRequest(_Strict):
    """A valid ``CreateChatSessionBody``; :meth:`to_spec` resolves what the gate takes.

    Field order is the order of the checks (``user`` and ``workflow`` first).
    """

    user: Annotated[str, Field(min_length=1)]
    workflow: Workflow
    expires_after: ExpiresAfter | None = None
    rate_limits: RateLimits = RateLimits()
    chatkit_configuration: Configuration = Configuration()

    _no_null = field_validator("expires_after", mode="before")(_not_null)

    def to_spec(self) -> SessionSpec:
        """Return the :class:`~ratekeeper.SessionSpec` the body asks for, every default
        resolved (``expires_after.seconds`` 600, ``max_requests_per_1_minute`` 10...).

        A body of ``user`` and a plain ``workflow`` only (an id, perhaps a version and
        tracing: what most creations send) gets a spec shared with the other creations of
        that workflow: specs are immutable, and the engine shares them alike.
        """
        workflow = self.workflow
        if (
            self.model_fields_set == _USER_AND_WORKFLOW
            and workflow.state_variables is None
            and len(workflow.id) <= _SHARED_ID_LENGTH
            and (workflow.version is None or len(workflow.version) <= _SHARED_ID_LENGTH)
        ):
            key = (workflow.id, workflow.version, workflow.tracing.enabled)
            spec = _SHARED_SPECS.get(key)
            if spec is None:
                spec = self._spec()
                keep_shared_spec(_SHARED_SPECS, key, spec)
            return spec
        return self._spec()

    def _spec(self) -> SessionSpec:
        configuration = self.chatkit_configuration
        upload = configuration.file_upload
        history = configuration.history
        return SessionSpec(
            MAX_EXPIRES_AFTER_S if self.expires_after is None else self.expires_after.seconds,
            self.rate_limits.max_requests_per_1_minute,
            FileUploadLimits(upload.enabled, upload.max_file_size, upload.max_files)
            if upload.model_fields_set
            else DEFAULT_SPEC.file_upload,
            HistoryLimits(history.enabled, history.recent_threads)
            if history.model_fields_set
            else DEFAULT_SPEC.history,
            self.workflow.to_spec(),
            configuration.automatic_thread_titling.enabled,
        )


_validate = CreateSessionRequest.__pydantic_validator__.validate_python

_USER_AND_WORKFLOW = frozenset({"user", "workflow"})
# The specs of bodies that name only a user and a workflow, by workflow (id, version,
# tracing). Bounded in entries (keep_shared_spec) and in the length of the strings kept; a
# lost race between threads only builds an equal spec twice.
_SHARED_SPECS: dict[tuple[str, str | None, bool], SessionSpec] = {}
_SHARED_ID_LENGTH = 256


def parse_json(body: bytes) -> Any:
    """Parse a strict JSON body (UTF-8; no ``NaN`` or ``Infinity``).

    Raises:
        InvalidParameter: ``invalid_json`` for a body that is not JSON.
    """
    try:
        return pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError:
        raise InvalidParameter(_INVALID_JSON, code="invalid_json") from None


def parse_create_session(body: bytes) -> CreateSessionRequest:
    """Parse and validate a create-session body (strict JSON, UTF-8).

    Raises:
        InvalidParameter: ``invalid_json`` for a body that is not JSON (including ``NaN``,
            ``Infinity``, lone surrogates and invalid UTF-8), else the first problem in the
            body, naming the parameter path and OpenAI's error code.
    """
    value = parse_json(body)
    try:
        request: CreateSessionRequest = _validate(value)
    except ValidationError as exc:
        raise _first_error(value, exc.errors(include_url=False, include_context=True)) from None
    return request


# -- from pydantic's errors to OpenAI's one error -------------------------------------------

# The top level is checked in this order: missing names, then ``workflow`` being an object,
# then ``user``, then the rest of ``workflow`` and the other fields in schema order.
_TOP = {"user": 3, "workflow": 4, "expires_after": 5, "rate_limits": 6}
_TYPE_ERRORS = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "a boolean",
    "model_type": "an object",
    "dict_type": "an object",
    "null": None,  # filled in from the field's model below
}


def _rank(error: Mapping[str, Any]) -> tuple[int, ...]:
    """Sort key putting pydantic's errors in the order the checks report them."""
    loc = error["loc"]
    kind = error["type"]
    if not loc:
        return (0,)
    if kind == "extra_forbidden":
        # Unknown names come first at their level, in the order they were sent.
        return (*_rank_path(loc[:-1]), -1)
    if len(loc) == 1:
        if kind == "missing":
            return (1, 0 if loc[0] == "user" else 1)
        if loc[0] == "workflow":
            return (2,)
    return _rank_path(loc)


def _rank_path(loc: Sequence[Any]) -> tuple[int, ...]:
    if not loc:
        return (0,)
    first = loc[0]
    ranks = [_TOP.get(first, 7) if isinstance(first, str) else 7]
    model: type[BaseModel] | None = _MODELS.get(first)
    for part in loc[1:]:
        if model is not None and part in model.model_fields:
            ranks.append(_FIELD_ORDER[model][part])
            model = _SUBMODELS.get((model, part))
        else:
            # Inside state_variables: pydantic reports the entries in the order they were
            # sent, each key's error before its value's, which is the order of the checks.
            ranks.append(0)
            model = None
    return tuple(ranks)


_MODELS: dict[Any, type[BaseModel]] = {
    "workflow": Workflow,
    "expires_after": ExpiresAfter,
    "rate_limits": RateLimits,
    "chatkit_configuration": Configuration,
}
_SUBMODELS: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
    (Workflow, "tracing"): Tracing,
    (Configuration, "automatic_thread_titling"): Titling,
    (Configuration, "file_upload"): FileUpload,
    (Configuration, "history"): History,
}
_FIELD_ORDER = {
    model: {name: index for index, name in enumerate(model.model_fields)}
    for model in (*_MODELS.values(), *_SUBMODELS.values())
}
# What a field holds, for "expected ..." in a type error (from a null, say).
_EXPECTED = {
    "version": "a string",
    "state_variables": "an object",
    "recent_threads": "an integer",
    "expires_after": "an object",
}


def _first_error(body: Any, errors: list[Any]) -> InvalidParameter:
    """Return the one error OpenAI would report for a body with these problems."""
    ordered = sorted(errors, key=_rank)
    first = ordered[0]
    loc: tuple[Any, ...] = tuple(first["loc"])
    if not loc:
        return InvalidParameter(
            f"Invalid type for request body: expected an object, but got {type_name(body)} "
            "instead.",
            code="invalid_type",
        )
    if first["type"] == "extra_forbidden" and len(loc) == 1:
        unknown = [
            e["loc"][0] for e in ordered if e["type"] == "extra_forbidden" and len(e["loc"]) == 1
        ]
        return _unknown_top_level(unknown)
    state = _state_variable(loc)
    if state is not None:
        # pydantic counts the entries only when they are all valid; the count comes first.
        variables = body["workflow"]["state_variables"]
        if len(variables) > MAX_STATE_VARIABLES:
            return _field_error(
                "workflow.state_variables",
                {
                    "type": "too_long",
                    "input": variables,
                    "ctx": {"max_length": MAX_STATE_VARIABLES},
                },
            )
        return _state_variable_error(state, loc, first, ordered)
    path = ".".join(str(part) for part in loc)
    return _field_error(path, first)


def _unknown_top_level(unknown: list[str]) -> InvalidParameter:
    """``unknown_parameter`` naming every unknown top-level name at once, with hints."""
    described = []
    for key in unknown[:8]:
        hint = _MOVED.get(key)
        name = f"'{key[:64]}'"
        described.append(f"{name} (did you mean '{hint}'?)" if hint else name)
    noun = "parameter" if len(unknown) == 1 else "parameters"
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    return InvalidParameter(
        f"Unknown {noun}: {', '.join(described)}{more}.",
        param=unknown[0][:128],
        code="unknown_parameter",
    )


def _state_variable(loc: tuple[Any, ...]) -> str | None:
    """The key of ``workflow.state_variables`` an error is about, if it is about one."""
    if len(loc) >= 3 and loc[:2] == ("workflow", "state_variables"):
        return str(loc[2])
    return None


def _state_variable_error(
    key: str, loc: tuple[Any, ...], first: Mapping[str, Any], ordered: list[Any]
) -> InvalidParameter:
    param = "workflow.state_variables"
    if len(loc) > 3 and loc[3] == "[key]":
        return InvalidParameter(
            f"Invalid '{param}': keys may be at most {MAX_STATE_VARIABLE_KEY} characters, "
            f"but got a key of length {len(key)}.",
            param=param,
            code="string_above_max_length",
        )
    path = f"{param}.{key}"
    # A value is tried as each member of the union; a string too long is the one real error.
    for error in ordered:
        if tuple(error["loc"][:3]) == loc[:3] and error["type"] == "string_too_long":
            return _field_error(path, error)
    return InvalidParameter(
        f"Invalid type for '{path}': expected a string, a number or a boolean, but got "
        f"{type_name(first['input'])} instead.",
        param=path,
        code="invalid_type",
    )


def _field_error(path: str, error: Mapping[str, Any]) -> InvalidParameter:
    """Translate one pydantic error about the value at ``path``."""
    kind: str = error["type"]
    value = error["input"]
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    if kind == "missing":
        return InvalidParameter(
            f"Missing required parameter: '{path}'.",
            param=path,
            code="missing_required_parameter",
        )
    if kind == "extra_forbidden":
        return InvalidParameter(
            f"Unknown parameter: '{path[:128]}'.", param=path[:128], code="unknown_parameter"
        )
    if path == "expires_after" and isinstance(value, int | float) and not isinstance(value, bool):
        return InvalidParameter(
            f"Invalid type for 'expires_after': expected an object, but got {type_name(value)} "
            'instead. Send {"anchor": "created_at", "seconds": N} with N from 1 to '
            f"{MAX_EXPIRES_AFTER_S}.",
            param="expires_after",
            code="invalid_type",
        )
    if kind == "literal_error" and isinstance(value, str):
        return InvalidParameter(
            f"Invalid value for '{path}': {value[:64]!r}. Supported values are: "
            f"{ctx.get('expected', '')}.",
            param=path,
            code="invalid_value",
        )
    if kind == "greater_than_equal":
        return InvalidParameter(
            f"Invalid '{path}': integer below minimum value. "
            f"Expected a value >= {ctx['ge']}, but got {value} instead.",
            param=path,
            code="integer_below_min_value",
        )
    if kind == "less_than_equal":
        return InvalidParameter(
            f"Invalid '{path}': integer above maximum value. "
            f"Expected a value <= {ctx['le']}, but got {value} instead.",
            param=path,
            code="integer_above_max_value",
        )
    if kind == "string_too_short":
        return InvalidParameter(
            f"Invalid '{path}': string too short. "
            f"Expected a string with minimum length {ctx['min_length']}, but got a string with "
            f"length {len(value)} instead.",
            param=path,
            code="string_below_min_length",
        )
    if kind == "string_too_long":
        return InvalidParameter(
            f"Invalid '{path}': string too long. "
            f"Expected a string with maximum length {ctx['max_length']}, but got a string with "
            f"length {len(value)} instead.",
            param=path,
            code="string_above_max_length",
        )
    if kind == "too_long":  # only dicts have a size limit: workflow.state_variables
        return InvalidParameter(
            f"Invalid '{path}': too many entries. Expected at most {ctx['max_length']}, "
            f"but got {len(value)} instead.",
            param=path,
            code="object_above_max_properties",
        )
    expected = _TYPE_ERRORS.get(kind) or _EXPECTED.get(path.rpartition(".")[2])
    if expected is None:  # literal_error on a non-string (the anchor): a string is expected
        expected = "a string"
    return InvalidParameter(
        f"Invalid type for '{path}': expected {expected}, but got {type_name(value)} instead.",
        param=path,
        code="invalid_type",
    )
