"""API keys for the REST surface, and the ``OpenAI-Beta`` header check.

API keys authenticate the REST surface; client secrets (``ek_…``) authenticate session-scoped
requests only. Neither is accepted in the other's place, and neither is ever echoed or logged.
"""

from __future__ import annotations

import hmac
import secrets
import sys
from collections.abc import Iterable, Sequence

from starlette.requests import Request

from .._bearer import bearer_token_in
from .._http_errors import ApiError
from .._secrets import secret_digest

#: The ``OpenAI-Beta`` token every ChatKit REST request carries (the SDKs send it).
BETA_HEADER_VALUE = "chatkit_beta=v1"
_SECRET_PREFIX = "ek_"  # noqa: S105 - a prefix, not a secret
_KEY_PREFIX = "rk-"
_CHALLENGE = {"www-authenticate": 'Bearer realm="ratekeeper"'}


def new_api_key() -> str:
    """Return a fresh API key: ``rk-`` followed by 256 random bits (base64url)."""
    return _KEY_PREFIX + secrets.token_urlsafe(32)


def announce_generated_key(key: str) -> None:
    """Print a key generated because none was configured, once, to stderr (never a log)."""
    print(
        "ratekeeper: no API key configured (--api-key / RATEKEEPER_API_KEYS); generated one "
        f"for this run:\n\n    {key}\n\nSend it as 'Authorization: Bearer <key>'.",
        file=sys.stderr,
        flush=True,
    )


def bearer_token(request: Request) -> str | None:
    """Return the token of the request's ``Authorization: Bearer <token>`` header, or ``None``."""
    return bearer_token_in(request.scope["headers"])


class ApiKeys:
    """The configured API keys, held only as SHA-256 digests and compared in constant time.

    Args:
        keys: the keys; at least one, none empty, none containing whitespace, none starting
            with ``ek_`` (that prefix is reserved for client secrets).

    Raises:
        ValueError: a key breaks one of those rules (the message never shows the key).

    Immutable after construction, so safe to share across threads.
    """

    __slots__ = ("_digests",)

    def __init__(self, keys: Iterable[str]) -> None:
        digests = []
        for index, key in enumerate(keys, start=1):
            if not key or any(ch.isspace() for ch in key):
                raise ValueError(f"API key #{index} is empty or contains whitespace")
            if key.startswith(_SECRET_PREFIX):
                raise ValueError(
                    f"API key #{index} starts with {_SECRET_PREFIX!r}, which is reserved for "
                    "client secrets; choose another key"
                )
            digests.append(secret_digest(key))
        if not digests:
            raise ValueError("at least one API key is needed")
        self._digests = tuple(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def matches(self, presented: str) -> bool:
        """Return whether ``presented`` is one of the keys.

        Every configured key is compared, each in constant time, so the time taken says
        nothing about which key (or how much of one) matched.
        """
        digest = secret_digest(presented)
        found = False
        for candidate in self._digests:
            found |= hmac.compare_digest(digest, candidate)
        return found

    def require(self, request: Request) -> None:
        """Return if the request carries a valid API key, else raise a 401 :class:`ApiError`."""
        self.require_token(bearer_token(request))

    def require_token(self, token: str | None) -> None:
        """:meth:`require` for the token of the request's ``Authorization`` header (``None``:
        none, or not ``Bearer``)."""
        if token is None:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                headers=_CHALLENGE,
            )
        if token.startswith(_SECRET_PREFIX):
            raise ApiError(
                401,
                "Incorrect API key provided: a ChatKit client secret (ek_…) authenticates "
                "session requests only. Use an API key for the REST API.",
                code="invalid_api_key",
                headers=_CHALLENGE,
            )
        if not self.matches(token):
            raise ApiError(
                401,
                "Incorrect API key provided. Use one of the keys the service was started with "
                "(--api-key or RATEKEEPER_API_KEYS).",
                code="invalid_api_key",
                headers=_CHALLENGE,
            )

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._digests)} key(s)>)"


def check_beta(request: Request) -> None:
    """Raise a 400 ``invalid_beta`` :class:`ApiError` unless ``OpenAI-Beta`` opts into ChatKit.

    The header may list several betas separated by commas, as OpenAI accepts.
    """
    check_beta_values(request.headers.getlist("openai-beta"))


def check_beta_values(values: Sequence[str]) -> None:
    """:func:`check_beta` for the values of the request's ``OpenAI-Beta`` headers, in order."""
    if len(values) == 1 and values[0] == BETA_HEADER_VALUE:
        return  # what the SDKs send: the same answer as below, with less work
    tokens = {token.strip() for value in values for token in value.split(",")}
    if BETA_HEADER_VALUE in tokens:
        return
    if not values:
        message = (
            "You must provide the 'OpenAI-Beta' header to access the ChatKit API. Please try "
            f"again by setting the header 'OpenAI-Beta: {BETA_HEADER_VALUE}'."
        )
    else:
        message = (
            "Invalid 'OpenAI-Beta' header for the ChatKit API: it must include "
            f"'{BETA_HEADER_VALUE}'."
        )
    raise ApiError(400, message, code="invalid_beta")
