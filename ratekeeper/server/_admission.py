"""``/ratekeeper/admit``: one admission decision over HTTP, for gateways in front of ChatKit.

Not part of OpenAI's surface. A reverse proxy (nginx ``auth_request``, Traefik ``ForwardAuth``,
Envoy ``ext_authz``) or any gateway sends the end user's ``Authorization: Bearer <client
secret>`` here before forwarding a ChatKit request: 200 means admitted (and counted), anything
else is the answer to give the client, with the rate-limit headers. The decision and its HTTP
form come from :meth:`ratekeeper.Gate.check`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._http_errors import ApiError, refusal_response
from ._auth import bearer_token
from ._service_context import ServiceContext


async def admit(request: Request) -> Response:
    """Admit one session request by its client secret, or say why not."""
    ctx = ServiceContext.of(request)
    secret = bearer_token(request)
    if secret is not None and ctx.api_keys.matches(secret):
        raise ApiError(
            401,
            "API keys authenticate the REST API only. Send the session's client secret "
            "(ek_…) as 'Authorization: Bearer <client secret>'.",
            code="invalid_client_secret",
            headers={"www-authenticate": 'Bearer realm="ratekeeper", error="invalid_token"'},
        )
    verdict = await ctx.gate.check(secret)
    if not verdict.allowed:
        return refusal_response(verdict)
    decision = verdict.decision
    body = {
        "object": "ratekeeper.admission",
        "allowed": True,
        "session_id": decision.session_id if decision is not None else None,
        "limit": decision.limit if decision is not None else None,
        "remaining": decision.remaining if decision is not None else None,
    }
    return JSONResponse(body, headers=dict(verdict.headers))
