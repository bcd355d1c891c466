"""What a decision looks like over HTTP: status, rate-limit headers and OpenAI-shaped errors.

This is the one home of those rules. :meth:`ratekeeper.Gate.check` returns a
:class:`Verdict` built here, the ASGI middleware sends it as it is, and gateways in other
frameworks copy its fields onto their own responses.

Header formats (documented in ``docs/gate.md``):

* ``x-ratelimit-limit-requests``: the session's ``max_requests_per_1_minute``.
* ``x-ratelimit-remaining-requests``: admissions left in the window after this request.
* ``x-ratelimit-reset-requests``: time until the window holds no admission at all, in the Go
  duration style OpenAI uses (:func:`format_duration`: ``0s``, ``250ms``, ``1.5s``, ``6m0s``),
  rounded *up* to the whole millisecond so a client that waits that long is never early.
* ``RateLimit-Policy: "session";q=<limit>;w=60`` and ``RateLimit: "session";r=<remaining>;t=<s>``
  per draft-ietf-httpapi-ratelimit-headers-11, ``t`` being the same reset time in whole seconds,
  rounded up.
* ``Retry-After`` (429 and 503): seconds until a request could be admitted, an integer >= 1,
  rounded up; ``1`` on a 503.
* ``retry-after-ms`` (beside every ``Retry-After``): the same wait in whole milliseconds,
  rounded up, >= 1 (``1000`` on a 503). The openai SDKs read it before ``Retry-After``, so a
  429's client waits the precise time rather than up to a second more.
* ``x-should-retry: false`` (401): the secret is missing, unknown or ended, and no retry will
  change that; the openai SDKs obey the header.

Pure functions and values only: no I/O, no clock, nothing imported from anyio.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from ._errors import BackendError
from ._types import WINDOW_S, Decision, Reason

#: The policy name in the IETF ``RateLimit`` / ``RateLimit-Policy`` fields.
POLICY_NAME = "session"

Headers = tuple[tuple[str, str], ...]

_new = tuple.__new__  # builds a Verdict without NamedTuple's Python-level __new__


def format_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's ``x-ratelimit-reset-*`` headers do (Go style).

    The value is rounded up to the whole millisecond, then written like Go's
    ``time.Duration.String``: ``0s``, ``250ms``, ``1s``, ``1.5s``, ``59.001s``, ``1m0s``,
    ``6m0s``, ``1h2m3.5s``. Negative values read as ``0s``; infinity is not a duration.

    Raises:
        ValueError: ``seconds`` is infinite or NaN.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {seconds!r}")
    # The tiny tolerance keeps float noise (60.000000000001) from rounding up a whole ms.
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    sec = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


def _whole_seconds_up(seconds: float) -> int:
    return max(0, math.ceil(seconds - 1e-9))


def retry_after_seconds(retry_after: float) -> int:
    """Return the ``Retry-After`` value for a wait of ``retry_after`` seconds: ceil, >= 1."""
    return max(1, _whole_seconds_up(retry_after))


def retry_after_ms(retry_after: float) -> int:
    """Return the ``retry-after-ms`` value for a wait of ``retry_after`` seconds: ceil, >= 1.

    Rounded up to the whole millisecond (with :func:`format_duration`'s tolerance for float
    noise), so a client that waits that long is never early.
    """
    return max(1, math.ceil(retry_after * 1000 - 1e-6))


def retry_headers(retry_after: float) -> Headers:
    """Return ``retry-after`` (whole seconds) and ``retry-after-ms`` for a wait in seconds."""
    return (
        ("retry-after", str(retry_after_seconds(retry_after))),
        ("retry-after-ms", str(retry_after_ms(retry_after))),
    )


#: A 503's retry headers: try again in a second (the backend or store may be back by then).
UNAVAILABLE_RETRY: Headers = retry_headers(1.0)

#: A 401's: the openai SDKs retry nothing that carries ``x-should-retry: false``, so a dead
#: client secret is not sent again; only a new session helps.
DO_NOT_RETRY: Headers = (("x-should-retry", "false"),)


def refusal_headers(status_code: int) -> Headers:
    """Return the retry headers every refusal with ``status_code`` carries.

    :data:`DO_NOT_RETRY` for a 401, :data:`UNAVAILABLE_RETRY` for a 503, nothing otherwise
    (a 429's depend on its wait: :func:`retry_headers`). Error responses built outside a
    :class:`Verdict` add these, so every 401 and 503 of the service says the same.
    """
    if status_code == 401:
        return DO_NOT_RETRY
    if status_code == 503:
        return UNAVAILABLE_RETRY
    return ()


_WINDOW_DURATION = format_duration(WINDOW_S)
_WINDOW_WHOLE_S = _whole_seconds_up(WINDOW_S)


class EncodedHeaders(tuple[tuple[str, str], ...]):
    """``(name, value)`` pairs that also carry their ASGI encoding, made once with them.

    Equal to, and used as, the plain tuple of pairs (:attr:`Verdict.headers`); ``raw`` is the
    same pairs as latin-1 bytes, so the middleware sends them without encoding them again.
    Never changed after :func:`_encoded` builds it, so safe to share across threads.
    """

    raw: tuple[tuple[bytes, bytes], ...]


def _encoded(pairs: Headers) -> EncodedHeaders:
    headers = EncodedHeaders(pairs)
    headers.raw = tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs)
    return headers


@lru_cache(maxsize=1024)
def _limit_fields(limit: int) -> tuple[tuple[str, str], tuple[str, str], tuple[bytes, bytes]]:
    # The two pairs that depend on the limit alone, and their encoding.
    text = str(limit)
    policy = f'"{POLICY_NAME}";q={limit};w={int(WINDOW_S)}'
    return (
        ("x-ratelimit-limit-requests", text),
        ("ratelimit-policy", policy),
        (text.encode(), policy.encode()),
    )


_RESET_PAIR = ("x-ratelimit-reset-requests", _WINDOW_DURATION)
_RESET_RAW = (b"x-ratelimit-reset-requests", _WINDOW_DURATION.encode())
_RATELIMIT = f'"{POLICY_NAME}";r=%d;t={_WINDOW_WHOLE_S}'
_RATELIMIT_RAW = _RATELIMIT.encode()

#: Admitted headers are cached for sessions whose limit is at most this (a session has at most
#: ``limit`` distinct ``remaining`` values) ...
_CACHED_LIMIT_MAX = 1024
#: ... and the cache holds at most this many ``(limit, remaining)`` entries (emptied when full,
#: like the ``re`` module's cache): about 1 KB each.
_CACHE_SIZE = 2048
_allowed_cache: dict[tuple[int, int], EncodedHeaders] = {}


def _allowed_pairs(limit: int, remaining: int) -> Headers:
    # An admitted request's window empties exactly WINDOW_S later, so only ``remaining``
    # varies between requests of a session; the rest is computed once per limit. Same values
    # as rate_limit_headers(limit, remaining, WINDOW_S), which a property test checks.
    limit_pair, policy_pair, _ = _limit_fields(limit)
    return (
        limit_pair,
        ("x-ratelimit-remaining-requests", str(remaining)),
        _RESET_PAIR,
        policy_pair,
        ("ratelimit", _RATELIMIT % remaining),
    )


def _allowed_raw(limit: int, remaining: int) -> tuple[tuple[bytes, bytes], ...]:
    # _allowed_pairs as ASGI bytes, built directly rather than encoded from the strings.
    _, _, (limit_raw, policy_raw) = _limit_fields(limit)
    return (
        (b"x-ratelimit-limit-requests", limit_raw),
        (b"x-ratelimit-remaining-requests", b"%d" % remaining),
        _RESET_RAW,
        (b"ratelimit-policy", policy_raw),
        (b"ratelimit", _RATELIMIT_RAW % remaining),
    )


def _allowed_headers(limit: int, remaining: int) -> Headers:
    """Return the headers of an admitted decision, with their ASGI bytes.

    An admitted decision's headers depend on nothing else, and a session with the default
    limit of 10 has only 10 distinct ones, so for small limits they are built once and
    cached. For larger limits (few repeats) they are built per call, the strings and the
    bytes together from one formatting of ``remaining``. Safe across threads: a race can only
    build the same value twice.
    """
    if limit > _CACHED_LIMIT_MAX:
        return _allowed_uncached(limit, remaining)
    key = (limit, remaining)
    headers = _allowed_cache.get(key)
    if headers is None:
        headers = EncodedHeaders(_allowed_pairs(limit, remaining))
        headers.raw = _allowed_raw(limit, remaining)
        if len(_allowed_cache) >= _CACHE_SIZE:
            _allowed_cache.clear()
        _allowed_cache[key] = headers
    return headers


def _allowed_uncached(limit: int, remaining: int) -> EncodedHeaders:
    # _allowed_pairs and _allowed_raw in one: the varying two values formatted once, and
    # encoded (ASCII digits and quotes) rather than formatted again as bytes.
    (limit_pair, policy_pair, (limit_raw, policy_raw)) = _limit_fields(limit)
    left = str(remaining)
    now = _RATELIMIT % remaining
    headers = EncodedHeaders(
        (
            limit_pair,
            ("x-ratelimit-remaining-requests", left),
            _RESET_PAIR,
            policy_pair,
            ("ratelimit", now),
        )
    )
    headers.raw = (
        (b"x-ratelimit-limit-requests", limit_raw),
        (b"x-ratelimit-remaining-requests", left.encode()),
        _RESET_RAW,
        (b"ratelimit-policy", policy_raw),
        (b"ratelimit", now.encode()),
    )
    return headers


def rate_limit_headers(limit: int, remaining: int, reset_after: float) -> Headers:
    """Return the five rate-limit headers for a session's window (names in lower case).

    Args:
        limit: the session's ``max_requests_per_1_minute``.
        remaining: admissions left in the window.
        reset_after: seconds until the window holds no admission at all.
    """
    window = int(WINDOW_S)
    return (
        ("x-ratelimit-limit-requests", str(limit)),
        ("x-ratelimit-remaining-requests", str(remaining)),
        ("x-ratelimit-reset-requests", format_duration(reset_after)),
        ("ratelimit-policy", f'"{POLICY_NAME}";q={limit};w={window}'),
        ("ratelimit", f'"{POLICY_NAME}";r={remaining};t={_whole_seconds_up(reset_after)}'),
    )


def error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    """Return an error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class Verdict(NamedTuple):
    """How to answer one request, as HTTP: the single source of status, headers and body.

    A ``NamedTuple``, immutable like a frozen dataclass but built at a fraction of the cost,
    for the same hot-path reason as :class:`~ratekeeper.Decision`.

    Attributes:
        allowed: whether the request may proceed to the handler.
        status_code: 200 when allowed; 401 (no usable secret), 429 (rate limited) or 503
            (backend unavailable, failing closed) otherwise.
        headers: ``(name, value)`` pairs to send, names in lower case. An admitted verdict
            carries the rate-limit headers; a 429 adds ``retry-after`` and ``retry-after-ms``; a
            401 carries ``www-authenticate`` and ``x-should-retry: false``; a 503
            ``retry-after: 1`` and ``retry-after-ms: 1000``. Empty when failing open.
        error: the OpenAI-shaped error body for a refusal, ``None`` when allowed.
        decision: the engine's decision behind the verdict (``None`` when no decision could
            be made: missing secret, or backend failure while failing closed).

    Immutable and safe to share across threads (treat ``error`` as read-only).
    """

    allowed: bool
    status_code: int
    headers: Headers
    error: Mapping[str, Any] | None
    decision: Decision | None

    def body(self) -> bytes:
        """Return the JSON error body as UTF-8 bytes (``b""`` when allowed)."""
        if self.error is None:
            return b""
        return json.dumps(self.error, separators=(",", ":")).encode()

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """Return :attr:`headers` encoded for ASGI (latin-1 bytes pairs)."""
        return list(encoded_headers(self))


def encoded_headers(verdict: Verdict) -> tuple[tuple[bytes, bytes], ...]:
    """Return the verdict's headers as ASGI bytes pairs (shared: do not change them).

    The encoding made with the headers when there is one (cached admissions, refusals),
    else the admitted headers built as bytes from the decision, else each pair encoded.
    """
    headers = verdict.headers
    if type(headers) is EncodedHeaders:
        return headers.raw
    decision = verdict.decision
    if verdict.allowed and decision is not None and headers:
        return _allowed_raw(decision.limit, decision.remaining)
    return tuple((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers)


_MISSING = Verdict(
    False,
    401,
    _encoded((("www-authenticate", 'Bearer realm="ratekeeper"'), *DO_NOT_RETRY)),
    error_body(
        "You didn't provide a client secret. Send the session's client secret in an "
        "Authorization header using Bearer auth (i.e. Authorization: Bearer ek_...).",
        "invalid_request_error",
        "missing_client_secret",
    ),
    None,
)

_UNAVAILABLE = Verdict(
    False,
    503,
    _encoded(UNAVAILABLE_RETRY),
    # The one 503 of a failing session store, on every edge (the REST surface answers a
    # BackendError with the same body).
    error_body(BackendError.public_message, "server_error", BackendError.code),
    None,
)

_REJECT_401 = {
    Reason.UNKNOWN_SESSION: (
        "Invalid client secret: it matches no session. Create a new session to get a valid "
        "client secret.",
        "invalid_client_secret",
    ),
    Reason.EXPIRED: (
        "The session for this client secret has expired. Create a new session to continue.",
        "session_expired",
    ),
    Reason.CANCELLED: (
        "The session for this client secret was cancelled. Create a new session to continue.",
        "session_cancelled",
    ),
}

_INVALID_TOKEN = _encoded(
    (
        ("www-authenticate", 'Bearer realm="ratekeeper", error="invalid_token"'),
        *DO_NOT_RETRY,
    )
)


def missing_secret_verdict() -> Verdict:
    """Return the 401 verdict for a request that carries no client secret."""
    return _MISSING


def backend_unavailable_verdict() -> Verdict:
    """Return the 503 verdict for a backend failure while failing closed."""
    return _UNAVAILABLE


def fail_open_verdict(decision: Decision) -> Verdict:
    """Return the verdict admitting a request because the backend failed and we fail open.

    No rate-limit headers: nothing is known about the session's window.
    """
    return Verdict(True, 200, (), None, decision)


def verdict_for(decision: Decision) -> Verdict:
    """Translate an engine :class:`~ratekeeper.Decision` into a :class:`Verdict`."""
    if decision.allowed:
        headers = _allowed_headers(decision.limit, decision.remaining)
        return _new(Verdict, (True, 200, headers, None, decision))
    reason = decision.reason
    if reason is Reason.RATE_LIMITED:
        headers = _encoded(
            (
                *rate_limit_headers(decision.limit, decision.remaining, decision.reset_after),
                *retry_headers(decision.retry_after),
            )
        )
        message = (
            f"Rate limit reached for this session on requests per min (RPM): "
            f"Limit {decision.limit}. Please try again in {format_duration(decision.retry_after)}."
        )
        return Verdict(
            False, 429, headers, error_body(message, "requests", "rate_limit_exceeded"), decision
        )
    message, code = _REJECT_401[Reason(reason)]
    return Verdict(
        False, 401, _INVALID_TOKEN, error_body(message, "invalid_request_error", code), decision
    )
