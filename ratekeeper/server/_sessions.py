"""``POST /v1/chatkit/sessions`` and ``POST /v1/chatkit/sessions/{session_id}/cancel``.

Sessions are created, read and cancelled only through the :class:`~ratekeeper.Gate`, so
its metrics and its expiry sweeper see every one. A body becomes one
:class:`~ratekeeper.SessionSpec`, workflow and ``automatic_thread_titling`` included,
from which the full ``chatkit.session`` object is rebuilt on cancel.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._http_errors import ApiError
from .._json_body import read_json_body, receive_json_body
from .._types import Session, Workflow
from ._models import parse_create_session
from ._responses import json_response, send_json
from ._service_context import ServiceContext

#: ``client_secret`` of a session returned by cancel: only a hash of the secret is kept.
REDACTED_SECRET = "ek_redacted"  # noqa: S105 - a placeholder, not a secret


#: ``workflow`` of a session created without one (straight through the gate).
_NO_WORKFLOW = Workflow("")


def workflow_json(workflow: Workflow | None) -> dict[str, Any]:
    """Return the ``ChatkitWorkflow`` object of the REST schema for ``workflow``."""
    workflow = workflow or _NO_WORKFLOW
    variables = workflow.state_variables
    return {
        "id": workflow.id,
        "version": workflow.version,
        "state_variables": None if variables is None else dict(variables),
        "tracing": {"enabled": workflow.tracing_enabled},
    }


def session_json(session: Session) -> dict[str, Any]:
    """Return the ``chatkit.session`` object for ``session``, every field resolved.

    The secret is shown only on the value returned by creation; afterwards only its hash
    exists, and :data:`REDACTED_SECRET` stands in.
    """
    spec = session.spec
    limit = spec.max_requests_per_1_minute
    upload = spec.file_upload
    history = spec.history
    return {
        "id": session.id,
        "object": "chatkit.session",
        "expires_at": session.expires_at,
        "client_secret": session.client_secret or REDACTED_SECRET,
        "workflow": workflow_json(spec.workflow),
        "user": session.user,
        "rate_limits": {"max_requests_per_1_minute": limit},
        "max_requests_per_1_minute": limit,
        "status": session.status.value,
        "chatkit_configuration": {
            "automatic_thread_titling": {"enabled": spec.automatic_thread_titling},
            "file_upload": {
                "enabled": upload.enabled,
                "max_file_size": upload.max_file_size,
                "max_files": upload.max_files,
            },
            "history": {"enabled": history.enabled, "recent_threads": history.recent_threads},
        },
    }


async def create_session(request: Request) -> Response:
    """Create a ChatKit session (``CreateChatSessionMethod``)."""
    ctx = ServiceContext.of(request)
    ctx.authorize(request)
    parsed = parse_create_session(await read_json_body(request, ctx.settings.max_body_bytes))
    session = await ctx.gate.create_session(parsed.user, parsed.to_spec())
    return json_response(session_json(session))


class SessionCreation:
    """:func:`create_session` as a plain ASGI endpoint of one service: the same checks, errors
    and response, without Starlette's per-request wrappers (a ``Request``, its headers, a
    ``Response`` object, and a second layer of exception handling: whatever it raises is
    answered by the app's handlers, as the route's would be).

    The route the service serves; the busiest of its REST surface. Holds only its service's
    context, so safe to share across threads.
    """

    __slots__ = ("context",)

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Create a ChatKit session (``CreateChatSessionMethod``)."""
        ctx = self.context
        ctx.authorize_scope(scope)
        body = await receive_json_body(scope, receive, ctx.settings.max_body_bytes)
        parsed = parse_create_session(body)
        session = await ctx.gate.create_session(parsed.user, parsed.to_spec())
        await send_json(send, session_json(session))


async def cancel_session(request: Request) -> Response:
    """Cancel a session (``CancelChatSessionMethod``): idempotent; expired stays expired."""
    ctx = ServiceContext.of(request)
    ctx.authorize(request)
    session_id: str = request.path_params["session_id"]
    if session_id.startswith("ek_"):
        raise ApiError(
            404,
            "Chatkit Session with id 'ek_…' not found. That is a client secret: cancel takes "
            "the session's id (cksess_…).",
        )
    session = await ctx.gate.cancel(session_id)
    return json_response(session_json(session))
