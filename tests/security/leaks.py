"""Finding a secret or a key in captured text, in every form it could be written."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable

__all__ = ("forms", "leaks", "needles")

_LOWER_HEX = re.compile(r"%[0-9A-F]{2}")


def forms(needle: str) -> set[str]:
    """``needle`` as written, and as URL encoders, ``repr()`` and JSON would write it."""
    return {
        needle,
        urllib.parse.quote(needle, safe=""),
        _LOWER_HEX.sub(lambda m: m.group().lower(), urllib.parse.quote(needle, safe="")),
        urllib.parse.quote(needle),
        urllib.parse.quote_plus(needle),
        repr(needle)[1:-1],
        repr(needle.encode())[2:-1],
        json.dumps(needle)[1:-1],
        json.dumps(needle, ensure_ascii=False)[1:-1],
        json.dumps(needle).replace("/", "\\/")[1:-1],
    }


def needles(needle: str) -> set[str]:
    """What to search captured text for: :func:`forms`, and a secret's or a generated key's
    random part alone (should its prefix be all that was hidden)."""
    found = forms(needle)
    for prefix in ("ek_", "rk-"):
        if needle.startswith(prefix) and len(needle) > 16:
            found.add(needle[len(prefix) :])
    return found


def leaks(searched: Iterable[str], texts: dict[str, str]) -> list[str]:
    """Every place (``name: context``) where a form of a needle occurs in ``texts``."""
    hits = []
    for needle in searched:
        for form in needles(needle):
            for name, text in texts.items():
                start = text.find(form)
                if start >= 0:
                    hits.append(f"{name}: …{text[max(0, start - 80) : start + 80]!r}…")
    return hits
