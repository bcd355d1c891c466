"""Validation of the service's request bodies and query strings, into resolved values.

Every range and type rule comes from :mod:`ratekeeper._params` (the one home of those rules);
this module knows only the *shape* of ChatKit's ``CreateChatSessionBody`` and of the list
endpoints' query strings, and resolves every default the official schema documents. Errors are
:class:`~ratekeeper.errors.InvalidParameter` with OpenAI's codes and the parameter's full path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .._params import (
    MAX_EXPIRES_AFTER_S,
    MAX_FILE_SIZE_MB,
    MAX_JSON_INT,
    check_bool,
    check_enum,
    check_int,
    check_known,
    check_object,
    check_str,
    require,
    type_name,
)
from ..errors import InvalidParameter
from ..types import FileUploadLimits, HistoryLimits

__all__ = (
    "CreateSessionRequest",
    "ListQuery",
    "WorkflowSettings",
    "parse_create_session",
    "parse_json",
    "parse_list_query",
)

#: ``workflow.state_variables`` may hold at most this many entries ...
MAX_STATE_VARIABLES = 64
#: ... with keys of at most this many characters ...
MAX_STATE_VARIABLE_KEY = 64
#: ... and string values of at most this many characters (the schema's ``maxLength``).
MAX_STATE_VARIABLE_STRING = 10_485_760
#: Default and bounds of a list endpoint's ``limit``.
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
MAX_USER_FILTER = 512

_BODY_KEYS = ("workflow", "user", "expires_after", "rate_limits", "chatkit_configuration")
_WORKFLOW_KEYS = ("id", "version", "state_variables", "tracing")
_CONFIG_KEYS = ("automatic_thread_titling", "file_upload", "history")
_ANCHORS = ("created_at",)
_ITEM_QUERY = ("limit", "order", "after", "before")
_THREAD_QUERY = (*_ITEM_QUERY, "user")

# Hints for the fields of the stale curl example on OpenAI's reference page.
_MOVED = {
    "max_requests_per_1_minute": "rate_limits.max_requests_per_1_minute",
    "ttl_seconds": "expires_after.seconds",
}


@dataclass(frozen=True, slots=True)
class WorkflowSettings:
    """``workflow`` with its defaults resolved, as the session object reports it.

    Attributes:
        id: the workflow id.
        version: the pinned version, or ``None`` for the latest deployment.
        state_variables: the variables sent, or ``None`` when none were.
        tracing_enabled: ``workflow.tracing.enabled`` (default ``True``).
    """

    id: str
    version: str | None = None
    state_variables: Mapping[str, str | int | float | bool] | None = None
    tracing_enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        """Return the ``ChatkitWorkflow`` object of the REST schema."""
        return {
            "id": self.id,
            "version": self.version,
            "state_variables": None if self.state_variables is None else dict(self.state_variables),
            "tracing": {"enabled": self.tracing_enabled},
        }


@dataclass(frozen=True, slots=True)
class CreateSessionRequest:
    """A validated ``CreateChatSessionBody`` with every default resolved.

    Attributes:
        user: the end user (1..512 characters).
        workflow: the resolved workflow.
        expires_after_s: ``expires_after.seconds`` (default 600).
        max_requests_per_1_minute: ``rate_limits.max_requests_per_1_minute`` (default 10).
        automatic_thread_titling: ``chatkit_configuration.automatic_thread_titling.enabled``.
        file_upload: resolved ``chatkit_configuration.file_upload``.
        history: resolved ``chatkit_configuration.history``.
    """

    user: str
    workflow: WorkflowSettings
    expires_after_s: int = MAX_EXPIRES_AFTER_S
    max_requests_per_1_minute: int = 10
    automatic_thread_titling: bool = True
    file_upload: FileUploadLimits = field(default_factory=FileUploadLimits)
    history: HistoryLimits = field(default_factory=HistoryLimits)


def _reject_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's parser accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Decode a request body as strict JSON (UTF-8, no ``NaN``, no lone surrogates).

    Raises:
        InvalidParameter: the body is not valid JSON (``code="invalid_json"``).
    """
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
        _check_unicode(value)
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise InvalidParameter(
            "We could not parse the JSON body of your request. The ChatKit API expects a JSON "
            "payload (UTF-8, Content-Type: application/json), but what was sent was not valid "
            "JSON.",
            code="invalid_json",
        ) from exc
    return value


def _check_unicode(value: Any) -> None:
    """Raise ``UnicodeError`` if any string in ``value`` holds a lone surrogate.

    ``json.loads`` accepts ``"\\ud800"`` escapes, which cannot be encoded back to UTF-8: left in,
    they would fail the response (or the Redis write) far from the cause. Iterative, so a deep
    document cannot exhaust the stack.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_create_session(body: Any) -> CreateSessionRequest:
    """Validate a decoded create-session body and resolve its defaults.

    Checks run in a fixed order (unknown names, then required ones, then each field in schema
    order) and the first problem is raised, as OpenAI reports one error at a time.

    Raises:
        InvalidParameter: naming the parameter path and an OpenAI error code.
    """
    if not isinstance(body, dict):
        raise InvalidParameter(
            f"Invalid type for request body: expected an object, but got {type_name(body)} "
            "instead.",
            code="invalid_type",
        )
    _check_known_with_hints(body)
    require(body, "user", "")
    workflow_raw = check_object(require(body, "workflow", ""), "workflow")
    user = check_str(body["user"], "user", min_length=1)
    workflow = _parse_workflow(workflow_raw)
    expires_after_s = MAX_EXPIRES_AFTER_S
    if "expires_after" in body:
        expires = body["expires_after"]
        if isinstance(expires, int | float) and not isinstance(expires, bool):
            raise InvalidParameter(
                f"Invalid type for 'expires_after': expected an object, but got "
                f"{type_name(expires)} instead. Send "
                '{"anchor": "created_at", "seconds": N} with N from 1 to '
                f"{MAX_EXPIRES_AFTER_S}.",
                param="expires_after",
                code="invalid_type",
            )
        expires = check_object(expires, "expires_after")
        check_known(expires, "expires_after", ("anchor", "seconds"))
        check_enum(require(expires, "anchor", "expires_after"), "expires_after.anchor", _ANCHORS)
        expires_after_s = check_int(
            require(expires, "seconds", "expires_after"),
            "expires_after.seconds",
            minimum=1,
            maximum=MAX_EXPIRES_AFTER_S,
        )
    limit = 10
    if "rate_limits" in body:
        rate_limits = check_object(body["rate_limits"], "rate_limits")
        check_known(rate_limits, "rate_limits", ("max_requests_per_1_minute",))
        if "max_requests_per_1_minute" in rate_limits:
            limit = check_int(
                rate_limits["max_requests_per_1_minute"],
                "rate_limits.max_requests_per_1_minute",
                minimum=1,
                maximum=MAX_JSON_INT,
            )
    titling, file_upload, history = _parse_configuration(body.get("chatkit_configuration", {}))
    return CreateSessionRequest(
        user=user,
        workflow=workflow,
        expires_after_s=expires_after_s,
        max_requests_per_1_minute=limit,
        automatic_thread_titling=titling,
        file_upload=file_upload,
        history=history,
    )


def _check_known_with_hints(body: dict[str, Any]) -> None:
    """Raise ``unknown_parameter`` naming every unknown top-level name at once, with hints."""
    unknown = [key for key in body if key not in _BODY_KEYS]
    if not unknown:
        return
    described = []
    for key in unknown[:8]:
        hint = _MOVED.get(key)
        name = f"'{key[:64]}'"
        described.append(f"{name} (did you mean '{hint}'?)" if hint else name)
    noun = "parameter" if len(unknown) == 1 else "parameters"
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    raise InvalidParameter(
        f"Unknown {noun}: {', '.join(described)}{more}.",
        param=unknown[0][:128],
        code="unknown_parameter",
    )


def _parse_workflow(raw: dict[str, Any]) -> WorkflowSettings:
    check_known(raw, "workflow", _WORKFLOW_KEYS)
    workflow_id = check_str(require(raw, "id", "workflow"), "workflow.id")
    version = check_str(raw["version"], "workflow.version") if "version" in raw else None
    state: dict[str, str | int | float | bool] | None = None
    if "state_variables" in raw:
        state = _parse_state_variables(raw["state_variables"])
    tracing = True
    if "tracing" in raw:
        tracing_raw = check_object(raw["tracing"], "workflow.tracing")
        check_known(tracing_raw, "workflow.tracing", ("enabled",))
        if "enabled" in tracing_raw:
            tracing = check_bool(tracing_raw["enabled"], "workflow.tracing.enabled")
    return WorkflowSettings(workflow_id, version, state, tracing)


def _parse_state_variables(raw: Any) -> dict[str, str | int | float | bool]:
    param = "workflow.state_variables"
    variables = check_object(raw, param)
    if len(variables) > MAX_STATE_VARIABLES:
        raise InvalidParameter(
            f"Invalid '{param}': too many entries. Expected at most {MAX_STATE_VARIABLES}, "
            f"but got {len(variables)} instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, value in variables.items():
        if len(key) > MAX_STATE_VARIABLE_KEY:
            raise InvalidParameter(
                f"Invalid '{param}': keys may be at most {MAX_STATE_VARIABLE_KEY} characters, "
                f"but got a key of length {len(key)}.",
                param=param,
                code="string_above_max_length",
            )
        path = f"{param}.{key}"
        if isinstance(value, str):
            check_str(value, path, max_length=MAX_STATE_VARIABLE_STRING)
        elif not isinstance(value, int | float | bool) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise InvalidParameter(
                f"Invalid type for '{path}': expected a string, a number or a boolean, but got "
                f"{type_name(value)} instead.",
                param=path,
                code="invalid_type",
            )
    return dict(variables)


def _parse_configuration(raw: Any) -> tuple[bool, FileUploadLimits, HistoryLimits]:
    prefix = "chatkit_configuration"
    config = check_object(raw, prefix)
    check_known(config, prefix, _CONFIG_KEYS)
    titling = True
    if "automatic_thread_titling" in config:
        path = f"{prefix}.automatic_thread_titling"
        titling_raw = check_object(config["automatic_thread_titling"], path)
        check_known(titling_raw, path, ("enabled",))
        if "enabled" in titling_raw:
            titling = check_bool(titling_raw["enabled"], f"{path}.enabled")
    file_upload = FileUploadLimits()
    if "file_upload" in config:
        path = f"{prefix}.file_upload"
        upload = check_object(config["file_upload"], path)
        check_known(upload, path, ("enabled", "max_file_size", "max_files"))
        file_upload = FileUploadLimits(
            enabled=check_bool(upload.get("enabled", False), f"{path}.enabled"),
            max_file_size=check_int(
                upload.get("max_file_size", MAX_FILE_SIZE_MB),
                f"{path}.max_file_size",
                minimum=1,
                maximum=MAX_FILE_SIZE_MB,
            ),
            max_files=check_int(
                upload.get("max_files", 10),
                f"{path}.max_files",
                minimum=1,
                maximum=MAX_JSON_INT,
            ),
        )
    history = HistoryLimits()
    if "history" in config:
        path = f"{prefix}.history"
        history_raw = check_object(config["history"], path)
        check_known(history_raw, path, ("enabled", "recent_threads"))
        recent = None
        if "recent_threads" in history_raw:
            recent = check_int(
                history_raw["recent_threads"],
                f"{path}.recent_threads",
                minimum=1,
                maximum=MAX_JSON_INT,
            )
        history = HistoryLimits(
            enabled=check_bool(history_raw.get("enabled", True), f"{path}.enabled"),
            recent_threads=recent,
        )
    return titling, file_upload, history


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The validated query string of a list endpoint.

    Attributes:
        limit: page size, 0..100 (default 20).
        order: ``"asc"`` or ``"desc"`` by creation time (default ``"desc"``).
        after: return the entries that follow this id in ``order``.
        before: return the entries that precede this id in ``order``.
        user: only threads of this user (thread listing only).
    """

    limit: int = DEFAULT_LIST_LIMIT
    order: Literal["asc", "desc"] = "desc"
    after: str | None = None
    before: str | None = None
    user: str | None = None


def parse_list_query(params: Mapping[str, str], *, with_user: bool) -> ListQuery:
    """Validate a list endpoint's query parameters (``user`` only when ``with_user``).

    Raises:
        InvalidParameter: an unknown, malformed or out-of-range parameter.
    """
    known = _THREAD_QUERY if with_user else _ITEM_QUERY
    check_known(dict(params), "", known)
    limit = DEFAULT_LIST_LIMIT
    if "limit" in params:
        limit = check_int(
            _query_int(params["limit"], "limit"), "limit", minimum=0, maximum=MAX_LIST_LIMIT
        )
    order: Literal["asc", "desc"] = "desc"
    if "order" in params and check_enum(params["order"], "order", ("asc", "desc")) == "asc":
        order = "asc"
    after = check_str(params["after"], "after", min_length=1) if "after" in params else None
    before = check_str(params["before"], "before", min_length=1) if "before" in params else None
    user = None
    if "user" in params:
        user = check_str(params["user"], "user", min_length=1, max_length=MAX_USER_FILTER)
    return ListQuery(limit, order, after, before, user)


def _query_int(raw: str, param: str) -> int:
    """Parse a query-string integer; anything but optional ``-`` and digits is a type error."""
    text = raw.strip()
    digits = text[1:] if text.startswith("-") else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 1000:
        raise InvalidParameter(
            f"Invalid type for '{param}': expected an integer, but got a string instead.",
            param=param,
            code="invalid_type",
        )
    return int(text)
