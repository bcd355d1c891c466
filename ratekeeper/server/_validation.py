"""Validation of the list endpoints' query strings, into resolved values.

Every range and type rule comes from :mod:`ratekeeper._params` (the one home of those rules);
this module knows only the *shape* of the query strings. Errors are
:class:`~ratekeeper.InvalidParameter` with OpenAI's codes. Request bodies are validated
by the pydantic models of :mod:`ratekeeper.server.models`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .._errors import InvalidParameter
from .._params import check_enum, check_int, check_known, check_str

#: Default and bounds of a list endpoint's ``limit``.
DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 100
MAX_USER_FILTER = 512

_ITEM_QUERY = ("limit", "order", "after", "before")
_THREAD_QUERY = (*_ITEM_QUERY, "user")


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
