"""OpenAI-shaped JSON responses and the translation of every failure into one.

Route handlers raise; the handlers registered here turn each exception into the status and the
``{"error": {"message", "type", "param", "code"}}`` body OpenAI would send. The body itself is
built by :func:`ratekeeper._ratelimit_headers.error_body`, the one home of that shape.

Every error leaves through :func:`error_response`, which hides client secrets and the service's
API keys (:func:`redactor_of` the app) in the message and the param, whatever raised it: a
message that quotes a client's input (a path, a thread id, a field name) needs no care of its
own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pydantic_core
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import (
    BackendError,
    CapacityExceeded,
    InvalidParameter,
    RatekeeperError,
    SessionNotFound,
)
from .._ratelimit_headers import error_body, refusal_headers
from .._redact import SHAPES, Redactor
from ..store import ThreadNotFound, UnstorableValue

#: Where the request-id middleware puts the id in the scope.
REQUEST_ID_KEY = "ratekeeper.request_id"

_logger = logging.getLogger("ratekeeper.server")


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


class ApiError(RatekeeperError):
    """Raised by route handlers to answer with an OpenAI-shaped error.

    Attributes:
        status_code: the HTTP status.
        message: the error's ``message`` (never holding a secret).
        type: the error's ``type``, e.g. ``"invalid_request_error"``.
        code: the error's ``code``, or ``None``.
        param: the error's ``param``, or ``None``.
        headers: extra response headers.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})


def error_response(
    status_code: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    redactor: Redactor = SHAPES,
) -> JSONResponse:
    """Return an OpenAI-shaped error response, with ``redactor`` applied to its message and
    param (shapes of secrets only by default: the handlers here pass the app's).

    A 401 gets ``x-should-retry: false`` and a 503 ``retry-after`` and ``retry-after-ms``
    (:func:`~ratekeeper.refusal_headers`), unless ``headers`` set them.
    """
    message = redactor.text(message)
    param = None if param is None else redactor.echo(param)
    retry = refusal_headers(status_code)
    if retry:
        headers = {**dict(retry), **(headers or {})}
    return JSONResponse(
        error_body(message, type, code, param), status_code=status_code, headers=headers
    )


def _answer(request: Request, status_code: int, message: str, **options: Any) -> JSONResponse:
    """:func:`error_response` with the redactor of the app serving ``request``."""
    return error_response(status_code, message, redactor=redactor_of(request.app), **options)


def _echo(request: Request, text: str) -> str:
    """Client input quoted in a message: hidden, then cut short."""
    return redactor_of(request.app).echo(text)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _answer(
        request,
        exc.status_code,
        exc.message,
        type=exc.type,
        code=exc.code,
        param=exc.param,
        headers=exc.headers,
    )


async def _invalid_parameter(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidParameter)
    # The param can be a name the client made up (an unknown field): it may hold a secret too.
    return _answer(request, 400, _echo(request, exc.message), code=exc.code, param=exc.param)


async def _session_not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SessionNotFound)
    return _answer(request, 404, _echo(request, str(exc)))


async def _thread_not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ThreadNotFound)
    return _answer(request, 404, _echo(request, exc.message))


async def _backend_error(request: Request, exc: Exception) -> Response:
    # The session backend or the conversation store: the cause may name hosts or keys, so it
    # is logged by its type only, never answered.
    assert isinstance(exc, BackendError)
    _logger.warning("ratekeeper: %s: %s", exc.code, type(exc.__cause__).__name__)
    return _answer(request, 503, exc.public_message, type="server_error", code=exc.code)


async def _unstorable_value(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UnstorableValue)
    return _answer(request, 400, exc.public_message, code="invalid_value")


async def _capacity_exceeded(request: Request, exc: Exception) -> Response:
    return _answer(
        request,
        503,
        "The service holds as many active sessions as it is configured for. Cancel sessions "
        "or raise RATEKEEPER_MAX_SESSIONS.",
        type="server_error",
        code="capacity_exceeded",
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
        ApiError: _api_error,
        InvalidParameter: _invalid_parameter,
        SessionNotFound: _session_not_found,
        ThreadNotFound: _thread_not_found,
        UnstorableValue: _unstorable_value,
        BackendError: _backend_error,
        CapacityExceeded: _capacity_exceeded,
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
