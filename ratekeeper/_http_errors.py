"""Errors over HTTP: the one home of the OpenAI-shaped error response and of which exception
answers with which status, for every HTTP edge (the REST surface and the ChatKit endpoint).

:func:`answer_for` maps an exception to an :class:`ErrorAnswer` through a table looked up along
the exception's MRO (as Starlette's ``exception_handlers`` are); :data:`ANSWERS` is the table
both surfaces share, and the ChatKit endpoint adds its own rows to it. :func:`error_response`
builds the one response shape (``{"error": {"message", "type", "param", "code"}}``, from
:func:`ratekeeper._ratelimit_headers.error_body`), hiding secrets with a
:class:`~ratekeeper._redact.Redactor` in whatever message and param it sends;
:func:`refusal_response` answers a gate's refusal as the gate made it. Stateless: safe across
threads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import NamedTuple

from starlette.responses import JSONResponse, Response

from ._errors import (
    BackendError,
    CapacityExceeded,
    InvalidParameter,
    RatekeeperError,
    SessionNotFound,
)
from ._ratelimit_headers import Verdict, error_body, refusal_headers
from ._redact import SHAPES, Redactor
from .store import ThreadNotFound, UnstorableValue

_logger = logging.getLogger("ratekeeper.server")


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


class ErrorAnswer(NamedTuple):
    """The HTTP answer to one exception, before redaction.

    Attributes:
        status_code: the HTTP status.
        message: the error's ``message``.
        type: the error's ``type``.
        code: the error's ``code``, or ``None``.
        param: the error's ``param``, or ``None``.
        headers: extra response headers.
        quotes_input: whether the message may quote a client's input (then it is cut short
            too, after redaction).
    """

    status_code: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: Mapping[str, str] | None = None
    quotes_input: bool = False


def error_response(answer: ErrorAnswer, redactor: Redactor = SHAPES) -> JSONResponse:
    """Return the OpenAI-shaped error response of ``answer``, with ``redactor`` applied to its
    message and param (shapes of secrets only by default: the HTTP edges pass their own).

    A 401 gets ``x-should-retry: false`` and a 503 ``retry-after`` and ``retry-after-ms``
    (:func:`~ratekeeper.refusal_headers`), unless ``answer.headers`` set them.
    """
    status_code, message, type_, code, param, headers, _ = answer
    message = redactor.text(message)
    param = None if param is None else redactor.echo(param)
    retry = refusal_headers(status_code)
    if retry:
        headers = {**dict(retry), **(headers or {})}
    return JSONResponse(
        error_body(message, type_, code, param), status_code=status_code, headers=headers
    )


def refusal_response(verdict: Verdict) -> Response:
    """Return the Starlette response of a gate's refusal: its status, body and headers as
    :meth:`Gate.check <ratekeeper.Gate.check>` made them (the ASGI middleware sends the
    same on the wire)."""
    return Response(
        verdict.body(),
        status_code=verdict.status_code,
        headers=dict(verdict.headers),
        media_type="application/json",
    )


def _api_error(exc: Exception) -> ErrorAnswer:
    assert isinstance(exc, ApiError)
    return ErrorAnswer(exc.status_code, exc.message, exc.type, exc.code, exc.param, exc.headers)


def _invalid_parameter(exc: Exception) -> ErrorAnswer:
    assert isinstance(exc, InvalidParameter)
    # The param can be a name the client made up (an unknown field): it may hold a secret too.
    return ErrorAnswer(400, exc.message, code=exc.code, param=exc.param, quotes_input=True)


def _session_not_found(exc: Exception) -> ErrorAnswer:
    return ErrorAnswer(404, str(exc), quotes_input=True)


def _thread_not_found(exc: Exception) -> ErrorAnswer:
    assert isinstance(exc, ThreadNotFound)
    return ErrorAnswer(404, exc.message, quotes_input=True)


def _unstorable_value(exc: Exception) -> ErrorAnswer:
    assert isinstance(exc, UnstorableValue)
    return ErrorAnswer(400, exc.public_message, code="invalid_value")


def _backend_error(exc: Exception) -> ErrorAnswer:
    # The session backend or the conversation store: the cause may name hosts or keys, so it
    # is logged by its type only, never answered.
    assert isinstance(exc, BackendError)
    _logger.warning("ratekeeper: %s: %s", exc.code, type(exc.__cause__).__name__)
    return ErrorAnswer(503, exc.public_message, "server_error", exc.code)


def _capacity_exceeded(exc: Exception) -> ErrorAnswer:
    return ErrorAnswer(
        503,
        "The service holds as many active sessions as it is configured for. Cancel sessions "
        "or raise RATEKEEPER_MAX_SESSIONS.",
        "server_error",
        "capacity_exceeded",
    )


Answer = Callable[[Exception], ErrorAnswer]

#: Which exception answers how, on every HTTP edge (looked up along the exception's MRO).
ANSWERS: Mapping[type[Exception], Answer] = {
    ApiError: _api_error,
    InvalidParameter: _invalid_parameter,
    SessionNotFound: _session_not_found,
    ThreadNotFound: _thread_not_found,
    UnstorableValue: _unstorable_value,
    BackendError: _backend_error,
    CapacityExceeded: _capacity_exceeded,
}


def answer_for(
    exc: Exception, answers: Mapping[type[Exception], Answer] = ANSWERS
) -> ErrorAnswer | None:
    """Return the answer of the first class in ``type(exc).__mro__`` with a row in
    ``answers``, or ``None`` (an unexpected failure: a 500, the caller's to log)."""
    for cls in type(exc).__mro__:
        answer = answers.get(cls)
        if answer is not None:
            return answer(exc)
    return None
