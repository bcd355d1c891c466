"""Validation of session parameters: the one home of every range and type rule.

Errors name the parameter by its path in ChatKit's create-session body
(``expires_after.seconds``) and carry OpenAI's error codes, so the HTTP service can return them
as they are.
"""

from __future__ import annotations

from typing import Any

from ._errors import InvalidParameter
from ._types import FileUploadLimits, HistoryLimits

#: The limits a session gets when none are given: one shared, frozen (so valid once, valid
#: always) value each, which :func:`validate_limits` recognises without looking inside.
DEFAULT_FILE_UPLOAD = FileUploadLimits()
DEFAULT_HISTORY = HistoryLimits()
MAX_EXPIRES_AFTER_S = 600
MAX_FILE_SIZE_MB = 512
#: A megabyte of ``max_file_size``, in bytes (binary, as ``redis/upload.lua`` counts it too).
BYTES_PER_MB = 1024 * 1024
MAX_USER_LENGTH = 512
#: Largest integer a count may be: the schema sets no maximum, but JSON clients (the ChatKit
#: front end is JavaScript) and Redis's Lua lose precision beyond 2**53 - 1, and a limit that
#: changes silently is worse than a clear error (RFC 7493, I-JSON, section 2.2).
MAX_JSON_INT = 2**53 - 1

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def type_name(value: object) -> str:
    """Describe a value's JSON type the way OpenAI's error messages do."""
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def check_int(
    value: Any, param: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an integer within bounds, else raise :class:`InvalidParameter`.

    ``True``/``False`` are not integers here, although Python says they are.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected an integer, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    if minimum is not None and value < minimum:
        raise InvalidParameter(
            f"Invalid '{param}': integer below minimum value. "
            f"Expected a value >= {minimum}, but got {value} instead.",
            param=param,
            code="integer_below_min_value",
        )
    if maximum is not None and value > maximum:
        raise InvalidParameter(
            f"Invalid '{param}': integer above maximum value. "
            f"Expected a value <= {maximum}, but got {value} instead.",
            param=param,
            code="integer_above_max_value",
        )
    return value


def check_bool(value: Any, param: str) -> bool:
    """Return ``value`` if it is a boolean, else raise :class:`InvalidParameter`."""
    if not isinstance(value, bool):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected a boolean, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    return value


def check_str(value: Any, param: str, *, min_length: int = 0, max_length: int | None = None) -> str:
    """Return ``value`` if it is a string of acceptable length, else raise."""
    if not isinstance(value, str):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected a string, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    if len(value) < min_length:
        raise InvalidParameter(
            f"Invalid '{param}': string too short. "
            f"Expected a string with minimum length {min_length}, but got a string with "
            f"length {len(value)} instead.",
            param=param,
            code="string_below_min_length",
        )
    if max_length is not None and len(value) > max_length:
        raise InvalidParameter(
            f"Invalid '{param}': string too long. "
            f"Expected a string with maximum length {max_length}, but got a string with "
            f"length {len(value)} instead.",
            param=param,
            code="string_above_max_length",
        )
    return value


def check_object(value: Any, param: str) -> dict[str, Any]:
    """Return ``value`` if it is a JSON object (a ``dict``), else raise."""
    if not isinstance(value, dict):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected an object, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    return value


def check_enum(value: Any, param: str, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the ``allowed`` strings, else raise."""
    if not isinstance(value, str):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected a string, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    if value not in allowed:
        names = [repr(a) for a in allowed]
        supported = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        raise InvalidParameter(
            f"Invalid value for '{param}': {value[:64]!r}. Supported values are: {supported}.",
            param=param,
            code="invalid_value",
        )
    return value


def check_known(obj: dict[str, Any], prefix: str, known: tuple[str, ...]) -> None:
    """Raise ``unknown_parameter`` for the first key of ``obj`` not in ``known``.

    ``prefix`` is the path of ``obj`` itself (``""`` for the top level of a body).
    """
    for key in obj:
        if key not in known:
            path = f"{prefix}.{key}" if prefix else key
            raise InvalidParameter(
                f"Unknown parameter: '{path[:128]}'.", param=path[:128], code="unknown_parameter"
            )


def require(obj: dict[str, Any], key: str, prefix: str) -> Any:
    """Return ``obj[key]``, or raise ``missing_required_parameter`` naming its full path."""
    if key not in obj:
        path = f"{prefix}.{key}" if prefix else key
        raise InvalidParameter(
            f"Missing required parameter: '{path}'.",
            param=path,
            code="missing_required_parameter",
        )
    return obj[key]


def validate_limits(
    user: Any,
    expires_after_s: Any,
    max_requests_per_1_minute: Any,
    file_upload: Any,
    history: Any,
) -> None:
    """Check every engine-level session parameter; raise :class:`InvalidParameter` on the first."""
    # The fast path: one expression that accepts only what the checks below accept (exact
    # types, the same bounds), so a valid session costs a fifth of running them all; anything
    # else, valid or not, goes through them for the precise error.
    if (
        type(user) is str
        and 0 < len(user) <= MAX_USER_LENGTH
        and type(expires_after_s) is int
        and 1 <= expires_after_s <= MAX_EXPIRES_AFTER_S
        and type(max_requests_per_1_minute) is int
        and 1 <= max_requests_per_1_minute <= MAX_JSON_INT
        and (file_upload is DEFAULT_FILE_UPLOAD or _file_upload_ok(file_upload))
        and (history is DEFAULT_HISTORY or _history_ok(history))
    ):
        return
    check_str(user, "user", min_length=1, max_length=MAX_USER_LENGTH)
    check_int(expires_after_s, "expires_after.seconds", minimum=1, maximum=MAX_EXPIRES_AFTER_S)
    check_int(
        max_requests_per_1_minute,
        "rate_limits.max_requests_per_1_minute",
        minimum=1,
        maximum=MAX_JSON_INT,
    )
    if not isinstance(file_upload, FileUploadLimits):
        raise InvalidParameter(
            "Invalid type for 'chatkit_configuration.file_upload': expected FileUploadLimits.",
            param="chatkit_configuration.file_upload",
            code="invalid_type",
        )
    check_bool(file_upload.enabled, "chatkit_configuration.file_upload.enabled")
    check_int(
        file_upload.max_file_size,
        "chatkit_configuration.file_upload.max_file_size",
        minimum=1,
        maximum=MAX_FILE_SIZE_MB,
    )
    check_int(
        file_upload.max_files,
        "chatkit_configuration.file_upload.max_files",
        minimum=1,
        maximum=MAX_JSON_INT,
    )
    if not isinstance(history, HistoryLimits):
        raise InvalidParameter(
            "Invalid type for 'chatkit_configuration.history': expected HistoryLimits.",
            param="chatkit_configuration.history",
            code="invalid_type",
        )
    check_bool(history.enabled, "chatkit_configuration.history.enabled")
    if history.recent_threads is not None:
        check_int(
            history.recent_threads,
            "chatkit_configuration.history.recent_threads",
            minimum=1,
            maximum=MAX_JSON_INT,
        )


def _file_upload_ok(limits: Any) -> bool:
    """Whether ``limits`` passes :func:`validate_limits`' checks (exact types only)."""
    return (
        type(limits) is FileUploadLimits
        and type(limits.enabled) is bool
        and type(limits.max_file_size) is int
        and 1 <= limits.max_file_size <= MAX_FILE_SIZE_MB
        and type(limits.max_files) is int
        and 1 <= limits.max_files <= MAX_JSON_INT
    )


def _history_ok(limits: Any) -> bool:
    """Whether ``limits`` passes :func:`validate_limits`' checks (exact types only)."""
    recent = limits.recent_threads if type(limits) is HistoryLimits else 0
    return (
        type(limits) is HistoryLimits
        and type(limits.enabled) is bool
        and (recent is None or (type(recent) is int and 1 <= recent <= MAX_JSON_INT))
    )
