"""``ratekeeper._json_body``: one content-type rule and one size cap for every JSON body."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from starlette.requests import Request

from ratekeeper._http_errors import ApiError
from ratekeeper._json_body import read_json_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """asyncio, as the service serves requests (uvicorn); trio finalizes the request stream
    left open by a refusal mid-body as an unraisable warning."""
    return "asyncio"


def _request(headers: Sequence[tuple[bytes, bytes]], chunks: Sequence[bytes]) -> Request:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": list(headers)}
    return Request(scope, receive)


@pytest.mark.parametrize(
    "content_type",
    [None, b"application/json", b"application/json; charset=utf-8", b"application/vnd.x+json"],
)
async def test_json_content_types_are_read(content_type: bytes | None) -> None:
    """No content type, application/json (with parameters) and application/*+json are JSON."""
    headers = [] if content_type is None else [(b"content-type", content_type)]
    assert await read_json_body(_request(headers, [b'{"a":', b" 1}"]), 100) == b'{"a": 1}'


@pytest.mark.parametrize("content_type", [b"text/plain", b"text/x+json", b"multipart/form-data"])
async def test_other_content_types_are_415(content_type: bytes) -> None:
    """Anything else is refused before the body is read."""
    with pytest.raises(ApiError) as caught:
        await read_json_body(_request([(b"content-type", content_type)], [b"{}"]), 100)
    assert (caught.value.status_code, caught.value.code) == (415, "unsupported_media_type")


async def test_declared_or_sent_bytes_over_the_cap_are_413() -> None:
    """The cap holds for a declared length and for what is actually sent."""
    for request in (
        _request([(b"content-length", b"101")], [b"{}"]),
        _request([], [b"x" * 60, b"x" * 60]),
    ):
        with pytest.raises(ApiError) as caught:
            await read_json_body(request, 100)
        assert (caught.value.status_code, caught.value.code) == (413, "request_too_large")


async def test_a_hang_up_mid_body_is_400() -> None:
    """A client that disconnects before the body is complete gets client_disconnected."""
    request = _request([], [])
    with pytest.raises(ApiError) as caught:
        await read_json_body(request, 100)
    assert (caught.value.status_code, caught.value.code) == (400, "client_disconnected")
