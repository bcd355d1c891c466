"""Reading request bodies: content type, a size cap, and strict JSON."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request

from .responses import ApiError
from .validation import parse_json

__all__ = ("read_json",)


async def read_json(request: Request, max_bytes: int) -> Any:
    """Return the request's JSON body, refusing what is not JSON or is larger than allowed.

    Raises:
        ApiError: 415 for a non-JSON content type, 413 for a body over ``max_bytes``, 400
            ``client_disconnected`` when the client hangs up before the body is complete.
        InvalidParameter: the body is empty or not valid JSON (400 ``invalid_json``).
    """
    content_type = request.headers.get("content-type")
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
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        # Nobody will read this answer; it only keeps a client's hang-up from being logged
        # as "Exception in ASGI application" and answered as a 500.
        raise ApiError(
            400,
            "The client closed the connection before the request body was complete.",
            code="client_disconnected",
        ) from None
    return parse_json(b"".join(chunks))


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(
        413,
        f"Request body too large: at most {max_bytes} bytes are accepted.",
        code="request_too_large",
    )
