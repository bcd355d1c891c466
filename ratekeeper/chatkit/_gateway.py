"""One call for gateways that serve ChatKit from their own framework (FastAPI, Starlette, …).

:meth:`ratekeeper.Gate.check` decides and says how to answer over HTTP; these helpers only
take the secret out of the ``Authorization`` header and turn a refusal into a response::

    verdict = await check_authorization(gate, request.headers.get("authorization"))
    if not verdict.allowed:
        return verdict_response(verdict)  # 401 / 429 / 503, OpenAI-shaped, with headers
    ...  # serve the request; send dict(verdict.headers) with the response
"""

from __future__ import annotations

from starlette.responses import Response

from .._bearer import bearer_token
from .._gate import Gate
from .._http_errors import refusal_response
from .._ratelimit_headers import Verdict
from .._types import Session


def bearer_secret(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer <token>`` header value, or ``None``.

    The scheme is matched case-insensitively; anything else (no header, another scheme, an
    empty token) gives ``None``, which :meth:`Gate.check <ratekeeper.Gate.check>` answers
    with 401 ``missing_client_secret``.
    """
    return bearer_token(authorization)


async def check_authorization(gate: Gate, authorization: str | None) -> Verdict:
    """Admit (and count) one request carrying ``authorization``, or say why not.

    Args:
        gate: the gate holding the sessions.
        authorization: the request's ``Authorization`` header value (``None`` if absent).

    Returns:
        The gate's :class:`~ratekeeper.Verdict`: ``allowed``,
        ``status_code``, ``headers`` (send them on the response either way) and ``error``.
        Never raises for a refusal or a backend failure.
    """
    return await gate.check(bearer_secret(authorization))


async def admit_authorization(
    gate: Gate, authorization: str | None
) -> tuple[Verdict, Session | None]:
    """Admit one request like :func:`check_authorization`, and return its session too.

    One backend call (one Redis round trip) gives both the verdict and the session's ChatKit
    limits and attributes, for a handler that serves the request as the session's user. The
    session is ``None`` unless the verdict admits the request; a backend failure is a 503
    verdict whatever the gate's failure mode (see :meth:`Gate.check_session
    <ratekeeper.Gate.check_session>`).
    """
    return await gate.check_session(bearer_secret(authorization))


def verdict_response(verdict: Verdict) -> Response:
    """Return the Starlette (hence FastAPI) response for a refused verdict.

    Raises:
        ValueError: the verdict admitted the request; there is nothing to refuse.
    """
    if verdict.allowed:
        raise ValueError("the request was admitted: serve it, sending verdict.headers")
    return refusal_response(verdict)
