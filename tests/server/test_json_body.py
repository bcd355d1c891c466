"""``ratekeeper._json_body``: one content-type rule and one size cap for every JSON body.

Both readers, :func:`read_json_body` (a Starlette ``Request``) and :func:`receive_json_body`
(a plain ASGI endpoint's scope and ``receive``), give every answer alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from starlette.requests import Request

from ratekeeper._http_errors import ApiError
from ratekeeper._json_body import read_json_body, receive_json_body

pytestmark = pytest.mark.anyio

Reader = Callable[[Sequence[tuple[bytes, bytes]], Sequence[Any], int], Awaitable[bytes]]


@pytest.fixture
def anyio_backend() -> str:
    """asyncio, as the service serves requests (uvicorn); trio finalizes the request stream
    left open by a refusal mid-body as an unraisable warning."""
    return "asyncio"


def _messages(chunks: Sequence[Any]) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``receive`` of a request whose body comes in ``chunks`` (bytes, or whole messages),
    then a hang-up."""
    messages = [
        chunk
        if isinstance(chunk, dict)
        else {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


def _scope(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/", "headers": list(headers)}


async def _through_request(
    headers: Sequence[tuple[bytes, bytes]], chunks: Sequence[Any], cap: int
) -> bytes:
    return await read_json_body(Request(_scope(headers), _messages(chunks)), cap)


async def _through_receive(
    headers: Sequence[tuple[bytes, bytes]], chunks: Sequence[Any], cap: int
) -> bytes:
    return await receive_json_body(_scope(headers), _messages(chunks), cap)


@pytest.fixture(params=[_through_request, _through_receive], ids=["request", "receive"])
def read(request: pytest.FixtureRequest) -> Reader:
    reader: Reader = request.param
    return reader


@pytest.mark.parametrize(
    "content_type",
    [None, b"application/json", b"application/json; charset=utf-8", b"application/vnd.x+json"],
)
async def test_json_content_types_are_read(read: Reader, content_type: bytes | None) -> None:
    """No content type, application/json (with parameters) and application/*+json are JSON."""
    headers = [] if content_type is None else [(b"content-type", content_type)]
    assert await read(headers, [b'{"a":', b" 1}"], 100) == b'{"a": 1}'


async def test_empty_pieces_and_other_messages_are_skipped(read: Reader) -> None:
    """Empty pieces add nothing; a message of another type is passed over, as Starlette's
    stream passes it over; the one-piece body comes back as it is."""
    assert await read([], [b"", {"type": "http.other"}, b"{}", b""], 100) == b"{}"
    assert await read([], [b""], 100) == b""
    piece = b'{"a": 1}'
    assert await read([], [piece], 100) is piece


@pytest.mark.parametrize("content_type", [b"text/plain", b"text/x+json", b"multipart/form-data"])
async def test_other_content_types_are_415(read: Reader, content_type: bytes) -> None:
    """Anything else is refused before the body is read."""
    with pytest.raises(ApiError) as caught:
        await read([(b"content-type", content_type)], [b"{}"], 100)
    assert (caught.value.status_code, caught.value.code) == (415, "unsupported_media_type")


async def test_declared_or_sent_bytes_over_the_cap_are_413(read: Reader) -> None:
    """The cap holds for a declared length and for what is actually sent."""
    for headers, chunks in (
        ([(b"content-length", b"101")], [b"{}"]),
        ([], [b"x" * 60, b"x" * 60]),
    ):
        with pytest.raises(ApiError) as caught:
            await read(headers, chunks, 100)
        assert (caught.value.status_code, caught.value.code) == (413, "request_too_large")


async def test_a_hang_up_mid_body_is_400(read: Reader) -> None:
    """A client that disconnects before the body is complete gets client_disconnected."""
    for chunks in ([], [{"type": "http.request", "body": b"{", "more_body": True}]):
        with pytest.raises(ApiError) as caught:
            await read([], chunks, 100)
        assert (caught.value.status_code, caught.value.code) == (400, "client_disconnected")
