"""Validation of parameters: the one home of every range and type rule.

:class:`~ratekeeper.SessionSpec` applies them to a session's parameters when it is
built, and nothing validates a spec again.

Errors name the parameter by its path in ChatKit's create-session body
(``expires_after.seconds``) and carry OpenAI's error codes, so the HTTP service can return them
as they are.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._errors import InvalidParameter

MAX_EXPIRES_AFTER_S = 600
MAX_FILE_SIZE_MB = 512
#: A megabyte of ``max_file_size``, in bytes (binary, as ``redis/upload.lua`` counts it too).
BYTES_PER_MB = 1024 * 1024
MAX_USER_LENGTH = 512
#: Largest integer a count may be: the schema sets no maximum, but JSON clients (the ChatKit
#: front end is JavaScript) and Redis's Lua lose precision beyond 2**53 - 1, and a limit that
#: changes silently is worse than a clear error (RFC 7493, I-JSON, section 2.2).
MAX_JSON_INT = 2**53 - 1

_T = TypeVar("_T")

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


def check_type(value: Any, param: str, kind: type[_T], expected: str) -> _T:
    """Return ``value`` if it is a ``kind`` (``expected`` says so in words), else raise."""
    if not isinstance(value, kind):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    return value


def check_bool(value: Any, param: str) -> bool:
    """Return ``value`` if it is a boolean, else raise :class:`InvalidParameter`."""
    return check_type(value, param, bool, "a boolean")


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


def check_user(user: Any) -> str:
    """Return ``user`` if it is a valid ``user`` (1..512 characters), else raise."""
    return check_str(user, "user", min_length=1, max_length=MAX_USER_LENGTH)
