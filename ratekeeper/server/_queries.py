"""The list endpoints' query strings as strict pydantic models, with the create body's errors.

``GET /v1/chatkit/threads`` and ``GET /v1/chatkit/threads/{id}/items`` take ``limit``,
``order``, ``after`` and ``before`` (and the thread listing ``user``). The models hold every
rule; pydantic's errors become OpenAI's ``code``/``param``/message through the same translation
the create-session body uses (:func:`ratekeeper.server._models._field_error`), with unknown
names reported first, as they always were.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from .._errors import InvalidParameter
from ._models import _field_error

#: Default and bounds of a list endpoint's ``limit``.
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
MAX_USER_FILTER = 512


def _query_int(raw: Any) -> Any:
    """A query-string integer: optional ``-`` and ASCII digits (no ``+``, ``1.0`` or ``1_0``)."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    digits = text[1:] if text.startswith("-") else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 1000:
        raise PydanticCustomError("int_type", "not an integer")
    return int(text)


_Id = Annotated[str, Field(min_length=1)]


class ListQuery(BaseModel):
    """The validated query string of a list endpoint.

    Attributes:
        limit: page size, 0..100 (default 20).
        order: ``"asc"`` or ``"desc"`` by creation time (default ``"desc"``).
        after: return the entries that follow this id in ``order``.
        before: return the entries that precede this id in ``order``.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    limit: Annotated[int, BeforeValidator(_query_int), Field(ge=0, le=MAX_LIST_LIMIT)] = (
        DEFAULT_LIST_LIMIT
    )
    order: Literal["asc", "desc"] = "desc"
    after: _Id | None = None
    before: _Id | None = None


class ThreadListQuery(ListQuery):
    """:class:`ListQuery` of the thread listing, which may filter by ``user`` too.

    Attributes:
        user: only threads of this user (``None``: every user's).
    """

    user: Annotated[str, Field(min_length=1, max_length=MAX_USER_FILTER)] | None = None


# OpenAI lists the supported values with "and"; pydantic's own text joins them with "or".
_SUPPORTED = {"order": "'asc' and 'desc'"}
_validate_items = ListQuery.__pydantic_validator__.validate_python
_validate_threads = ThreadListQuery.__pydantic_validator__.validate_python


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """Validate the query parameters of a thread's item listing.

    Raises:
        InvalidParameter: the first unknown parameter, else the first malformed or
            out-of-range one, in the order ``limit``, ``order``, ``after``, ``before``.
    """
    try:
        query: ListQuery = _validate_items(dict(params))
    except ValidationError as exc:
        raise _first_error(exc) from None
    return query


def parse_thread_list_query(params: Mapping[str, str]) -> ThreadListQuery:
    """Validate the query parameters of the thread listing (:func:`parse_list_query`, and
    ``user`` last)."""
    try:
        query: ThreadListQuery = _validate_threads(dict(params))
    except ValidationError as exc:
        raise _first_error(exc) from None
    return query


def _first_error(exc: ValidationError) -> InvalidParameter:
    errors = exc.errors(include_url=False, include_context=True)
    # pydantic reports fields in model order, then unknown names in the order they were sent.
    unknown = [error for error in errors if error["type"] == "extra_forbidden"]
    error = unknown[0] if unknown else errors[0]
    param = str(error["loc"][0])
    if error["type"] == "literal_error" and param in _SUPPORTED:
        error = {**error, "ctx": {"expected": _SUPPORTED[param]}}
    return _field_error(param, error)
