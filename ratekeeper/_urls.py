"""Secrets in URLs: database and Redis URLs carry passwords that no message may show.

One home for hiding them, used by the service's settings and the conversation store alike.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

# redis-py and libpq also read a password from the query string (unix:///path?password=...).
_PASSWORD_QUERY = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def hide_password(url: str) -> str:
    """Return ``url`` with its password (``user:password@``, ``?password=``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    cut = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:***@{host}"
    path = _PASSWORD_QUERY.sub(r"\1***", path)
    return f"{scheme}://{authority}{path}"


def hide_url_secrets(text: str, url: str) -> str:
    """Return ``text`` with every password ``url`` carries (``user:password@``,
    ``?password=``, as written or percent-decoded) replaced by ``***``.

    For messages that quote a URL in a form :func:`hide_password` does not see (a driver's
    rendering of it, say).
    """
    parts = urlsplit(url)
    try:
        found = [parts.password or ""]
    except ValueError:  # a malformed port: the password is still there to hide
        found = [parts.netloc.rpartition("@")[0].partition(":")[2]]
    found += [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    found += re.findall(r"[?&]password=([^&#]*)", url, flags=re.IGNORECASE)
    for secret in sorted({v for f in found for v in (f, unquote(f)) if v}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
