"""``ratekeeper._bearer``: one rule for reading ``Authorization: Bearer <token>``."""

from __future__ import annotations

import pytest

from ratekeeper._bearer import bearer_token, bearer_token_in

CASES: list[tuple[str | None, str | None]] = [
    (None, None),
    ("", None),
    ("Bearer ek_1", "ek_1"),
    ("bearer   ek_2 ", "ek_2"),
    ("  BEARER ek_3", "ek_3"),
    ("Bearer", None),
    ("Bearer    ", None),
    ("Basic abc", None),
    ("Bearer\tek_4", None),
    ("Bearer a b", "a b"),
]


@pytest.mark.parametrize(("header", "token"), CASES)
def test_header_value_and_raw_headers_agree(header: str | None, token: str | None) -> None:
    """The value rule and the raw ASGI-header rule give the same token for every header."""
    assert bearer_token(header) == token
    raw = [] if header is None else [(b"authorization", header.encode("latin-1"))]
    assert bearer_token_in(raw) == token


def test_first_authorization_header_wins_whatever_its_case() -> None:
    """The first ``Authorization`` header decides, its name matched case-insensitively."""
    headers = [(b"host", b"x"), (b"Authorization", b"Basic a"), (b"authorization", b"Bearer b")]
    assert bearer_token_in(headers) is None
    assert bearer_token_in(headers[::-1][:2]) == "b"


def test_bytes_are_read_as_latin_1() -> None:
    """A non-ASCII byte never fails to decode."""
    assert bearer_token_in([(b"authorization", b"Bearer \xff")]) == "\xff"
