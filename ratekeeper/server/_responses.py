"""OpenAI-shaped JSON responses and the translation of every failure into one.

Route handlers raise; the handlers registered here turn each exception into the status and the
``{"error": {"message", "type", "param", "code"}}`` body OpenAI would send, through the table
the ChatKit endpoint shares (:data:`ratekeeper._http_errors.ANSWERS`) and the one response
builder, :func:`error_response`.

Every error leaves through :func:`error_response`, which hides client secrets and the service's
API keys (:func:`redactor_of` the app) in the message and the param, whatever raised it: a
message that quotes a client's input (a path, a thread id, a field name) needs no care of its
own.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from .._http_errors import ANSWERS, ErrorAnswer, answer_for, error_response
from .._redact import SHAPES, Redactor

#: Where the request-id middleware puts the id in the scope.
REQUEST_ID_KEY = "ratekeeper.request_id"


def redactor_of(app: Any) -> Redactor:
    """Return the redactor of the service ``app`` is: the one rule for what may be echoed or
    logged, with the service's API keys (shapes only, for any other app).

    Error handlers and the request-id middleware reach it through the scope's ``app``.
    """
    context = getattr(getattr(app, "state", None), "ratekeeper", None)
    redactor = getattr(context, "redactor", None)
    return redactor if isinstance(redactor, Redactor) else SHAPES


def hide_secrets(text: str) -> str:
    """Return ``text`` with what is shaped like a secret or a credential hidden (no key
    known: prefer :func:`redactor_of` the app)."""
    return SHAPES.text(text)


def redact(text: str) -> str:
    """Return ``text`` safe to echo: shaped like secrets hidden, length capped."""
    return SHAPES.echo(text)


def _answer(request: Request, status_code: int, message: str, **options: Any) -> JSONResponse:
    """:func:`error_response` with the redactor of the app serving ``request``."""
    return error_response(ErrorAnswer(status_code, message, **options), redactor_of(request.app))


def _echo(request: Request, text: str) -> str:
    """Client input quoted in a message: hidden, then cut short."""
    return redactor_of(request.app).echo(text)


async def _mapped(request: Request, exc: Exception) -> Response:
    # Every exception with a row in the shared table (ratekeeper._http_errors.ANSWERS).
    answer = answer_for(exc)
    assert answer is not None
    message = _echo(request, answer.message) if answer.quotes_input else answer.message
    return _answer(
        request,
        answer.status_code,
        message,
        type=answer.type,
        code=answer.code,
        param=answer.param,
        headers=answer.headers,
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    where = _echo(request, f"{request.method} {request.url.path}")
    if exc.status_code == 404:
        return _answer(request, 404, f"Invalid URL ({where}).", code="unknown_url")
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return _answer(
            request,
            405,
            f"Method not allowed ({where}). Allowed: {allow}.",
            code="method_not_allowed",
            headers=exc.headers,
        )
    return _answer(request, exc.status_code, _echo(request, str(exc.detail)), headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    # Runs outside the request-id middleware, so the id is added here from the scope.
    request_id = request.scope.get(REQUEST_ID_KEY)
    headers = {"x-request-id": request_id} if isinstance(request_id, str) else None
    return _answer(
        request,
        500,
        "The server had an error while processing your request. Sorry about that! Quote the "
        "x-request-id header when reporting it.",
        type="server_error",
        headers=headers,
    )


def exception_handlers() -> dict[Any, Any]:
    """Return Starlette's ``exception_handlers`` mapping for the service."""
    return {
        **dict.fromkeys(ANSWERS, _mapped),
        HTTPException: _http_exception,
        Exception: _server_error,
    }


class _JsonBytes(Response):
    """A 200 ``application/json`` response of ready bytes.

    Sets what Starlette's ``Response`` constructor would (as Starlette's own ``FileResponse``
    does) without its general header-building path: the same two headers, in the same order.
    """

    media_type = "application/json"

    def __init__(self, body: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
        ]


def json_response(content: Any) -> Response:
    """Return a 200 JSON response of ``content`` (plain JSON values: dicts, lists, str, ...).

    The bytes are those of Starlette's ``JSONResponse`` (compact, UTF-8, not ASCII-escaped),
    made by pydantic-core's serializer: about 2x faster than ``json.dumps`` for a session object.
    A float is written in the shortest form that reads back the same (``1e16``, where
    ``json.dumps`` writes ``1e+16``); both are JSON for the same number.
    """
    return _JsonBytes(pydantic_core.to_json(content))


async def send_json(send: Send, content: Any) -> None:
    """Send what :func:`json_response` of ``content`` sends (its two messages, the same
    headers and bytes), from a plain ASGI endpoint."""
    body = pydantic_core.to_json(content)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-length", b"%d" % len(body)),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
