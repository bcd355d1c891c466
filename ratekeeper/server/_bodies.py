"""Reading JSON request bodies: :func:`~ratekeeper._json_body.read_json_body` (content type and a
size cap, shared with the ChatKit endpoint) then strict JSON."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from .._json_body import read_json_body
from ._models import parse_json


async def read_json(request: Request, max_bytes: int) -> Any:
    """Return the request's body parsed as strict JSON; the refusals of :func:`read_json_body`.

    For routes without a model of their own (the dev routes).

    Raises:
        ApiError: as :func:`read_json_body`.
        InvalidParameter: the body is empty or not valid JSON (400 ``invalid_json``).
    """
    return parse_json(await read_json_body(request, max_bytes))
