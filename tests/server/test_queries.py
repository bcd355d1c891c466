"""The list endpoints' query strings (``ratekeeper.server._queries``): values and errors."""

from __future__ import annotations

import pytest

from ratekeeper._errors import InvalidParameter
from ratekeeper.server._queries import parse_list_query, parse_thread_list_query


def test_defaults() -> None:
    """No query: 20 entries, newest first, no cursor, every user."""
    query = parse_thread_list_query({})
    assert (query.limit, query.order, query.after, query.before, query.user) == (
        20,
        "desc",
        None,
        None,
        None,
    )


def test_values_are_resolved() -> None:
    """``limit`` is read as an integer (whitespace around it ignored), the rest as given."""
    query = parse_thread_list_query(
        {"limit": " 7 ", "order": "asc", "after": "a", "before": "b", "user": "u"}
    )
    assert (query.limit, query.order, query.after, query.before, query.user) == (
        7,
        "asc",
        "a",
        "b",
        "u",
    )


# (query, message, param, code)
BAD: list[tuple[dict[str, str], str, str, str]] = [
    (
        {"limit": "101"},
        "Invalid 'limit': integer above maximum value. Expected a value <= 100, but got 101 "
        "instead.",
        "limit",
        "integer_above_max_value",
    ),
    (
        {"limit": "-1"},
        "Invalid 'limit': integer below minimum value. Expected a value >= 0, but got -1 instead.",
        "limit",
        "integer_below_min_value",
    ),
    *(
        (
            {"limit": raw},
            "Invalid type for 'limit': expected an integer, but got a string instead.",
            "limit",
            "invalid_type",
        )
        for raw in ("ten", "1.5", "1.0", "+3", "1_0", "\uff11", "", "9" * 1001)
    ),
    (
        {"order": "sideways"},
        "Invalid value for 'order': 'sideways'. Supported values are: 'asc' and 'desc'.",
        "order",
        "invalid_value",
    ),
    (
        {"after": ""},
        "Invalid 'after': string too short. Expected a string with minimum length 1, but got "
        "a string with length 0 instead.",
        "after",
        "string_below_min_length",
    ),
    (
        {"user": "u" * 513},
        "Invalid 'user': string too long. Expected a string with maximum length 512, but got "
        "a string with length 513 instead.",
        "user",
        "string_above_max_length",
    ),
    ({"page": "2", "zz": "1"}, "Unknown parameter: 'page'.", "page", "unknown_parameter"),
]


@pytest.mark.parametrize(("query", "message", "param", "code"), BAD)
def test_bad_query_is_invalid_parameter(
    query: dict[str, str], message: str, param: str, code: str
) -> None:
    """Each rule gives OpenAI's message, param and code."""
    with pytest.raises(InvalidParameter) as caught:
        parse_thread_list_query(query)
    assert (caught.value.message, caught.value.param, caught.value.code) == (message, param, code)


def test_unknown_names_come_first() -> None:
    """An unknown name is reported before a bad value sent ahead of it."""
    with pytest.raises(InvalidParameter) as caught:
        parse_thread_list_query({"limit": "ten", "order": "up", "page": "2"})
    assert caught.value.param == "page"


def test_fields_are_checked_in_order() -> None:
    """Among bad values, ``limit`` is reported first, then ``order``, ``after``, ``before``."""
    with pytest.raises(InvalidParameter) as caught:
        parse_thread_list_query({"before": "", "order": "up", "limit": "x"})
    assert caught.value.param == "limit"
    with pytest.raises(InvalidParameter) as caught:
        parse_thread_list_query({"before": "", "order": "up"})
    assert caught.value.param == "order"


def test_items_listing_has_no_user_filter() -> None:
    """``user`` is an unknown parameter of a thread's item listing."""
    assert parse_list_query({"limit": "3"}).limit == 3
    with pytest.raises(InvalidParameter) as caught:
        parse_list_query({"user": "u"})
    assert (caught.value.param, caught.value.code) == ("user", "unknown_parameter")
