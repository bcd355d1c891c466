"""``Authorization: Bearer <token>``: the one home of how a token is read from the header.

Every HTTP edge reads its credential here: the ASGI middleware (:mod:`ratekeeper.middleware`)
from the raw scope headers, the service's API-key check (:mod:`ratekeeper.server.auth`) and the
ChatKit gateway helpers (:mod:`ratekeeper.chatkit.gateway`) from a header value. The rule: the
first ``Authorization`` header; the scheme matched case-insensitively, separated from the token
by a space; surrounding whitespace ignored; any other scheme, or an empty token, gives ``None``.
Header bytes are read as latin-1, as Starlette reads them, so no header value ever fails to
decode. Pure functions: safe across threads.
"""

from __future__ import annotations

from collections.abc import Iterable


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization`` header value, or ``None``."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def bearer_token_in(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Return the token of the first ``Authorization`` header of raw ASGI headers, or ``None``."""
    for name, value in headers:
        # ASGI servers send names in lower case: the plain comparison nearly always decides.
        if name == b"authorization" or name.lower() == b"authorization":
            if value.startswith(b"Bearer "):  # the usual spelling, with less work; same result
                return value[7:].decode("latin-1").strip() or None
            return bearer_token(value.decode("latin-1"))
    return None
