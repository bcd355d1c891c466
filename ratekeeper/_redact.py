"""Redaction: the one home of what a credential looks like in text, and of how it is hidden.

Every exit of the service goes through a :class:`Redactor`: error bodies (REST and
``POST /chatkit``, including messages that quote a client's input), every log record whatever
its arguments' types (:class:`ratekeeper.server.RedactSecrets`), tracebacks, and the rule
that refuses to echo an incoming ``x-request-id`` shaped like a credential.

It hides:

- the **configured API keys**, as written and in the forms they take on their way into a log
  or a body: their characters outside ``A-Za-z0-9._~-`` percent-encoded (a query string, a raw
  path, in either case of hex digits) or backslash-escaped (a ``repr`` of ``str`` or ``bytes``,
  a JSON string);
- anything **shaped like a client secret** (``ek_`` and base64url, even one no session has)
  or **like a generated API key** (``rk-`` and base64url, at the start of a word);
- the values of **credential-named parameters** (``token=``, ``api_key=``,
  ``client_secret=``, …: an attachment's upload and preview URLs carry their authorization in
  ``token=``) and the token of a ``Bearer`` credential.

Cost: a text is first tested for a dozen short substrings every match must contain (``ek_``,
``rk-``, ``token=``, each key's longest run of plain characters, …); ``str.__contains__`` does
that at memory speed, and only a text that holds one is searched with the two precompiled
patterns (the keys', the shapes'). Immutable, so safe to share across threads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: What replaces a hidden value.
MASK = "…"
#: The longest text echoed back from a client's input (after redaction), by default.
MAX_ECHO = 200

# Characters that no URL encoder, repr() or JSON escapes: a key's plain characters.
_PLAIN = re.compile(r"[A-Za-z0-9._~\-]+")
# The characters of a base64url token: the body of client secrets and generated API keys.
_B64URL = r"[A-Za-z0-9_\-]"
# A parameter's value (not the mask: a redacted text must hold nothing more to hide), and a
# Bearer token.
_PARAM_VALUE = r"[^&#\s\"'…]"
_HTTP_TOKEN = r"[A-Za-z0-9._~+/=\-]"  # noqa: S105 - a character class, not a password
# Parameters whose value is a credential, whatever else is in the URL or the text.
_PARAMS = ("token", "access_token", "api_key", "apikey", "api-key", "client_secret", "secret")
# What every match of a shape contains. A parameter's name ends in one of the `=` anchors.
_SHAPE_ANCHORS = (
    *("ek_", "ek%5", "rk-"),
    *("token=", "_key=", "apikey=", "-key=", "secret="),
    *("earer", "EARER"),
)


def _hex(value: int, width: int = 2) -> str:
    """A pattern for ``value`` in hex, with either case of digits."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{value:0{width}x}")


def _char_forms(char: str) -> str:
    """A pattern for one character of a key, in every form it can take in a log or a body."""
    if _PLAIN.fullmatch(char):
        return re.escape(char)
    encoded = char.encode("utf-8", "surrogatepass")
    forms = [re.escape(char), "".join(f"%{_hex(byte)}" for byte in encoded)]
    if char in "\\'\"/":
        forms.append(re.escape("\\" + char))  # repr() and JSON escapes
    if not char.isascii() or not char.isprintable():
        forms.append("".join(rf"\\x{_hex(byte)}" for byte in encoded))  # repr() of bytes
        forms.append(rf"\\u{_hex(ord(char), 4)}" if ord(char) <= 0xFFFF else "(?!)")  # JSON
        forms.append(rf"\\U{_hex(ord(char), 8)}")  # repr() of str
    return "(?:" + "|".join(forms) + ")"


def _keys_pattern(keys: tuple[str, ...]) -> re.Pattern[str] | None:
    """The configured keys, longest first (a key that contains another is hidden whole)."""
    if not keys:
        return None
    forms = ("".join(_char_forms(char) for char in key) for key in sorted(keys, key=len)[::-1])
    return re.compile("|".join(forms))


# Every alternative starts with a plain character (no group, no lookbehind, no class), so the
# regex engine skips most positions with one table lookup (its "charset prefix"): about six
# times faster than the same pattern written with its groups first. The empty group after
# that first character says which shape matched (see _KINDS, _hide).
_SHAPES = re.compile(
    "|".join(
        [
            # 1: a client secret: `ek_` (its `_` perhaps percent-encoded) and its token.
            rf"e()k(?:_|%5[fF]){_B64URL}+",
            # 2: a generated API key's shape, at the start of a word (not the "rk-" of
            # "work-item"; nor after a mask: what was no word's start before hiding must not
            # become one).
            rf"r()(?<![A-Za-z0-9…]r)k-{_B64URL}+",
            # 3-9: a credential-named parameter's value, in a URL or a "name=value" text (a
            # secret's prefix is kept: "client_secret=ek_…").
            *(
                rf"{name[0]}()(?<![A-Za-z0-9_\-…]{name[0]}){re.escape(name[1:])}="
                rf"(?:ek_)?+{_PARAM_VALUE}+"
                for name in _PARAMS
            ),
            # 10, 11: an HTTP credential: "Bearer <token>".
            rf"B()(?:earer|EARER)\s+{_HTTP_TOKEN}+",
            rf"b()earer\s+{_HTTP_TOKEN}+",
        ]
    )
)
# What each numbered group of the pattern marks: the shape whose prefix is kept.
_KINDS = (None, "secret", "key", *("parameter",) * len(_PARAMS), "bearer", "bearer")
_BEARER = re.compile(r"\S+\s+")


def _hide(match: re.Match[str]) -> str:
    """The replacement of one match: the shape's prefix (none for a known key), then the mask."""
    kind = _KINDS[match.lastindex or 0]
    text = match.group()
    if kind == "secret":
        kept = text[:5] if text[2] == "%" else text[:3]
    elif kind == "key":
        kept = "rk-"
    elif kind == "parameter":
        kept = text[: text.index("=") + 1]
        if text.startswith("ek_", len(kept)):
            kept += "ek_"
    elif kind == "bearer":
        found = _BEARER.match(text)
        kept = found.group() if found is not None else ""
    else:
        kept = ""
    return kept + MASK


def _anchors(keys: tuple[str, ...]) -> tuple[str, ...]:
    # A key in any of its forms contains its longest run of plain characters, which no
    # encoding touches. A key without one (all punctuation) makes every text a candidate.
    runs = [max(_PLAIN.findall(key), key=len, default="") for key in keys]
    if not all(runs):
        return ("",)
    return tuple(dict.fromkeys((*_SHAPE_ANCHORS, *runs)))


class Redactor:
    """Hides client secrets, API keys and credentials in text (see the module's docstring).

    Args:
        keys: the API keys the service accepts: any strings, each hidden wherever it appears
            (so a very short key would hide much else too).

    The keys are held in the compiled pattern, as the settings that name them hold them in
    the process anyway. Immutable, so safe to share across threads.
    """

    __slots__ = ("_anchors", "_keys", "_known")

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = tuple(dict.fromkeys(key for key in keys if key))
        self._known = _keys_pattern(self._keys)
        self._anchors = _anchors(self._keys)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys hidden besides the shapes."""
        return self._keys

    def may_hold(self, text: str) -> bool:
        """Return ``False`` if ``text`` surely holds nothing to hide (a fast test: ``True``
        means "search it")."""
        for anchor in self._anchors:  # noqa: SIM110 - a plain loop is faster than any()
            if anchor in text:
                return True
        return False

    def finds(self, text: str) -> bool:
        """Return whether ``text`` holds anything this redactor hides."""
        if not self.may_hold(text):
            return False
        if self._known is not None and self._known.search(text) is not None:
            return True
        return _SHAPES.search(text) is not None

    def text(self, text: str) -> str:
        """Return ``text`` with every secret, key and credential replaced by :data:`MASK`
        (after a kept prefix such as ``ek_``, ``rk-``, ``token=`` or ``Bearer ``)."""
        if not self.may_hold(text):
            return text
        # Keys first: a shape must not take the start of a key and leave the rest (a value
        # ends at a '&', which a configured key may hold).
        if self._known is not None:
            text = self._known.sub(MASK, text)
        return _SHAPES.sub(_hide, text)

    def echo(self, text: str, limit: int = MAX_ECHO) -> str:
        """Return ``text`` safe to echo back to a client: hidden, then cut to ``limit``."""
        text = self.text(text)
        return text if len(text) <= limit else text[: limit - 1] + MASK

    def with_keys(self, keys: Iterable[str]) -> Redactor:
        """Return a redactor hiding this one's keys and ``keys``."""
        return Redactor((*self._keys, *keys))

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._keys)} key(s)>)"


#: Hides what is shaped like a credential; knows no key.
SHAPES = Redactor()
