"""The one redaction (:mod:`ratekeeper._redact`): what it hides, in which forms, and that a
redacted text holds nothing more to hide."""

from __future__ import annotations

import json
import logging
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratekeeper._redact import MASK, SHAPES, Redactor
from ratekeeper._secrets import new_client_secret
from ratekeeper.server._auth import new_api_key
from ratekeeper.server._logs import RedactSecrets, install_redaction

from .leaks import forms, needles

GENERATED_KEY = new_api_key()
# A configured key with every kind of character an encoder or repr() rewrites.
ODD_KEY = "Odd.Key~with/slash+plus=eq&amp'quote\"dq\\bs%pc,é✓-0123456789"
SECRET = new_client_secret()
REDACTOR = Redactor([GENERATED_KEY, ODD_KEY])


@pytest.mark.parametrize(
    "needle", [SECRET, GENERATED_KEY, ODD_KEY], ids=["secret", "generated_key", "odd_key"]
)
@pytest.mark.parametrize("where", ["{}", "/v1/chatkit/threads/{}/items", "x={}&y=1", "'{}'"])
def test_every_form_of_a_secret_or_key_is_hidden(needle: str, where: str) -> None:
    """Plain, percent-encoded (either case), repr() of str and bytes, JSON: all hidden."""
    for form in forms(needle):
        text = where.format(form)
        hidden = REDACTOR.text(text)
        assert all(f not in hidden for f in needles(needle)), (form, hidden)
        assert MASK in hidden


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /admit?client_secret=ek_abc-_9&x=1", "GET /admit?client_secret=ek_…&x=1"),
        ("/chatkit/atc_1/preview?token=abc.def", "/chatkit/atc_1/preview?token=…"),
        ("?api_key=anything-at-all&b=2", "?api_key=…&b=2"),
        ("Authorization: Bearer sk-proj-abcdefgh", "Authorization: Bearer …"),
        ("key rk-unknown_but_shaped here", "key rk-… here"),
        ("b'/v1/chatkit/threads/ek_abc'", "b'/v1/chatkit/threads/ek_…'"),
        ("x=ek%5Fabc", "x=ek%5F…"),
        # Not credentials: kept as they are.
        ("work-item fork-join cksess_0123 ek_ seek", "work-item fork-join cksess_0123 ek_ seek"),
        ("rate limit 10/min, token bucket", "rate limit 10/min, token bucket"),
    ],
)  # fmt: skip
def test_shapes_and_credential_parameters(text: str, expected: str) -> None:
    assert SHAPES.text(text) == expected


_PIECES = st.sampled_from(
    [SECRET, GENERATED_KEY, ODD_KEY, "ek_", "rk-", "token=", "api_key=", "Bearer ", "/", "?", "&",
     "=", "'", '"', "\\", "%", "%2F", "…", " ", "a", "Z", "9", "-", "_", "é"]
)  # fmt: skip


@settings(max_examples=2000)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_a_redacted_text_holds_nothing_more_to_hide(text: str) -> None:
    """Hiding is idempotent and complete, whatever surrounds a secret or a key."""
    hidden = REDACTOR.text(text)
    assert not REDACTOR.finds(hidden)
    assert REDACTOR.text(hidden) == hidden
    assert SECRET[3:] not in hidden
    assert GENERATED_KEY[3:] not in hidden


@given(st.text(max_size=40))
def test_texts_without_anything_to_hide_come_back_unchanged(text: str) -> None:
    if not REDACTOR.finds(text):
        assert REDACTOR.text(text) is text


def test_echo_hides_before_it_cuts() -> None:
    """A cut first could leave half a key, no longer recognisable, in the message."""
    text = "x" * 190 + GENERATED_KEY
    echoed = REDACTOR.echo(text)
    assert GENERATED_KEY[:10] not in echoed
    assert len(echoed) <= 200


def test_a_redactor_never_shows_its_keys() -> None:
    assert GENERATED_KEY not in repr(REDACTOR)
    assert repr(REDACTOR) == "Redactor(<2 key(s)>)"


def _record(msg: object, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = None if exc is None else (type(exc), exc, exc.__traceback__)
    return logging.LogRecord("t", logging.INFO, __file__, 1, msg, args or None, exc_info)


@pytest.mark.parametrize(
    "record",
    [
        _record("%s", f"/x?api_key={GENERATED_KEY}"),
        _record("scope=%s", {"path": f"/{SECRET}", "raw_path": f"/{SECRET}".encode()}),
        _record("%r", [urllib.parse.quote(ODD_KEY, safe="").encode()]),
        _record("%s%s", "ek_", SECRET[3:]),  # a secret split between the format and an argument
        _record(ValueError(f"bad {SECRET}")),
        _record("%(path)s", {"path": f"/{GENERATED_KEY}"}),
        _record("%s %s", "only one argument: " + SECRET),
        _record("failed", exc=ValueError(f"with {GENERATED_KEY} and {json.dumps(ODD_KEY)}")),
    ],
    ids=["str", "dict-bytes", "list-quoted", "split", "msg-object", "mapping", "bad-args", "exc"],
)
def test_a_log_record_is_redacted_whatever_its_arguments(record: logging.LogRecord) -> None:
    RedactSecrets(REDACTOR).filter(record)
    written = logging.Formatter().format(record)
    for needle in (SECRET, GENERATED_KEY, ODD_KEY):
        assert all(form not in written for form in needles(needle)), written


def test_an_access_record_keeps_its_five_arguments() -> None:
    """uvicorn's access formatter unpacks them: redaction must not flatten the record."""
    record = _record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET", f"/{SECRET}", "1.1", 404)
    RedactSecrets(REDACTOR).filter(record)
    assert record.args == ("127.0.0.1:1", "GET", "/ek_…", "1.1", 404)


def test_install_reaches_every_handler_and_undo_forgets_the_keys() -> None:
    """The app's lifespan installs it: the root's and named loggers' handlers, and Python's
    last resort, whatever configured them."""
    named = logging.getLogger("tests.security.install")
    handler = logging.NullHandler()
    named.addHandler(handler)
    try:
        undo = install_redaction(Redactor([ODD_KEY]))
        try:
            for h in (handler, logging.lastResort):
                assert h is not None
                [redact] = [f for f in h.filters if isinstance(f, RedactSecrets)]
                assert redact.redactor.finds(ODD_KEY)
        finally:
            undo()
        [redact] = [f for f in handler.filters if isinstance(f, RedactSecrets)]
        assert not redact.redactor.finds(ODD_KEY)
        assert redact.redactor.finds(SECRET)
    finally:
        named.removeHandler(handler)
