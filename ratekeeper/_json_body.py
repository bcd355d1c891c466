"""Reading a JSON request body: the one home of the content-type rule and the size cap, for
the REST surface and the ChatKit endpoint alike.

A body is accepted when it declares no content type, ``application/json`` or an
``application/*+json`` type (parameters such as ``charset`` ignored); anything else is 415.
More than ``max_bytes``, declared or sent, is 413; a client hanging up mid-body is 400. Each
refusal is an :class:`~ratekeeper.server.ApiError` the edge answers like any other.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from ._http_errors import ApiError


async def read_json_body(request: Request, max_bytes: int) -> bytes:
    """Return the request's body, refusing a non-JSON content type or more than allowed.

    Raises:
        ApiError: 415 for a non-JSON content type, 413 for a body over ``max_bytes``, 400
            ``client_disconnected`` when the client hangs up before the body is complete.
    """
    _check_head(request.scope["headers"], max_bytes)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            if chunk:
                chunks.append(chunk)
    except ClientDisconnect:
        raise _disconnected() from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one chunk: no copy


async def receive_json_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """:func:`read_json_body` for a plain ASGI endpoint: the same checks and answers, the body
    read straight from ``receive`` (as Starlette's ``Request.stream`` reads it) rather than
    through a :class:`~starlette.requests.Request`.

    Raises:
        ApiError: as :func:`read_json_body`.
    """
    _check_head(scope["headers"], max_bytes)
    chunks = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise _disconnected()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one chunk: no copy


def _check_head(headers: Iterable[tuple[bytes, bytes]], max_bytes: int) -> None:
    """Refuse a non-JSON content type (415) or a declared length over ``max_bytes`` (413)."""
    # One pass over the raw headers (names are lower case in ASGI), the first of each kept,
    # as Starlette's ``request.headers.get`` would, without decoding every name twice.
    content_type = declared = None
    for name, value in headers:
        if name == b"content-type":
            if content_type is None:
                content_type = value.decode("latin-1")
        elif name == b"content-length" and declared is None:
            declared = value.decode("latin-1")
    if content_type is not None:
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type != "application/json" and not (
            media_type.startswith("application/") and media_type.endswith("+json")
        ):
            raise ApiError(
                415,
                "Unsupported content type: the ChatKit API expects a JSON body with "
                "'Content-Type: application/json'.",
                code="unsupported_media_type",
            )
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)


def _disconnected() -> ApiError:
    # Nobody will read this answer; it only keeps a client's hang-up from being logged as
    # "Exception in ASGI application" and answered as a 500.
    return ApiError(
        400,
        "The client closed the connection before the request body was complete.",
        code="client_disconnected",
    )


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"Request body too large: at most {max_bytes} bytes are accepted.",
        code="request_too_large",
    )
