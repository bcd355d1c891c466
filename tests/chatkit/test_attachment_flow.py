"""Attachments end to end: create, upload, preview, attach, delete, over the real service.

``attachments.*`` and ``threads.*`` go to ``POST /chatkit`` with a session's client secret;
bytes go to the upload URL ``attachments.create`` returned, previews are plain GETs (as an
``<img>`` makes them, with no credentials); REST reads and deletes use the ``openai`` SDK.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import httpx
import pytest

from ratekeeper.store import AttachmentNotFound
from tests.server.conftest import Live, Schemas

from .conftest import Protocol, Session, user_input


def _png() -> bytes:
    """A valid 1x1 PNG (one transparent pixel), built here rather than kept as a blob."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    pixels = zlib.compress(b"\x00" + b"\x00\x00\x00\x00")  # filter byte, one pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = _png()


def uploader(protocol: Protocol) -> Session:
    """A session that may upload files."""
    return protocol.mint(
        chatkit_configuration={"file_upload": {"enabled": True}},
        rate_limits={"max_requests_per_1_minute": 100},
    )


def create(
    protocol: Protocol, session: Session, name: str, mime_type: str, size: int
) -> dict[str, Any]:
    """``attachments.create``; return the attachment."""
    response = protocol.post(
        session.secret, "attachments.create", {"name": name, "size": size, "mime_type": mime_type}
    )
    assert response.status_code == 200, response.text
    attachment: dict[str, Any] = response.json()
    return attachment


def upload(protocol: Protocol, attachment: dict[str, Any], data: bytes) -> dict[str, Any]:
    """POST the bytes to the attachment's upload URL; return the uploaded attachment."""
    response = protocol.http.post(
        attachment["upload_descriptor"]["url"],
        files={"file": (attachment["name"], data, attachment["mime_type"])},
    )
    assert response.status_code == 200, response.text
    uploaded: dict[str, Any] = response.json()
    return uploaded


def uploaded_image(protocol: Protocol, session: Session) -> dict[str, Any]:
    """An image attachment with its bytes uploaded."""
    return upload(protocol, create(protocol, session, "pixel.png", "image/png", len(PNG)), PNG)


def preview(url: str) -> httpx.Response:
    """GET a preview URL with no credentials at all, as an ``<img>`` tag does."""
    return httpx.get(url, timeout=10.0)


def with_token(url: str, token: str) -> str:
    return f"{url.split('?')[0]}?token={token}"


def test_an_uploaded_image_is_previewed_with_exactly_its_bytes(
    live: Live, protocol: Protocol
) -> None:
    """attachments.create gives an image a preview_url; once uploaded it serves the bytes."""
    session = uploader(protocol)
    created = create(protocol, session, "pixel.png", "image/png", len(PNG))
    url = created["preview_url"]
    assert url.startswith(f"{live.url}/chatkit/attachments/{created['id']}/preview?token=")
    assert session.secret not in url
    assert url != created["upload_descriptor"]["url"]
    assert preview(url).status_code == 404  # no bytes yet

    uploaded = upload(protocol, created, PNG)
    assert uploaded["preview_url"] == url
    assert "upload_descriptor" not in uploaded
    shown = preview(url)
    assert shown.status_code == 200
    assert shown.content == PNG
    assert shown.headers["content-type"] == "image/png"
    assert shown.headers["content-length"] == str(len(PNG))
    assert shown.headers["x-content-type-options"] == "nosniff"


def test_a_wrong_preview_token_is_a_404_in_openais_error_shape(
    protocol: Protocol, schemas: Schemas
) -> None:
    """Another token, the upload token, no token, another attachment's id: 404 not_found."""
    session = uploader(protocol)
    created = create(protocol, session, "pixel.png", "image/png", len(PNG))
    upload_token = created["upload_descriptor"]["url"].split("token=")[1]
    url = upload(protocol, created, PNG)["preview_url"]
    other = uploaded_image(protocol, session)
    for wrong in (
        with_token(url, "not-the-token"),
        with_token(url, upload_token),
        url.split("?")[0],
        url.replace(created["id"], other["id"]),
    ):
        response = preview(wrong)
        assert response.status_code == 404, wrong
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        schemas.check("ErrorResponse", body)
        assert (body["error"]["code"], body["error"]["type"]) == (
            "not_found",
            "invalid_request_error",
        )
        assert "not-the-token" not in response.text
    assert preview(url).content == PNG


def test_a_file_has_no_preview_url(protocol: Protocol) -> None:
    """A non-image attachment gets no preview_url, before or after its upload."""
    session = uploader(protocol)
    created = create(protocol, session, "notes.txt", "text/plain", 5)
    assert created["type"] == "file"
    assert "preview_url" not in created
    uploaded = upload(protocol, created, b"notes")
    assert "preview_url" not in uploaded
    token = created["upload_descriptor"]["url"].split("token=")[1]
    guessed = created["upload_descriptor"]["url"].replace("/upload?", "/preview?")
    assert preview(with_token(guessed, token)).status_code == 404


def test_a_deleted_attachment_has_no_preview(live: Live, protocol: Protocol) -> None:
    """attachments.delete removes the bytes: its preview URL is 404 at once."""
    session = uploader(protocol)
    image = uploaded_image(protocol, session)
    assert preview(image["preview_url"]).status_code == 200
    deleted = protocol.post(session.secret, "attachments.delete", {"attachment_id": image["id"]})
    assert deleted.status_code == 200, deleted.text
    assert preview(image["preview_url"]).status_code == 404
    with pytest.raises(AttachmentNotFound):
        live.threads.get_attachment(image["id"])


def test_a_thread_deleted_through_rest_takes_its_attachments_bytes(
    live: Live, protocol: Protocol
) -> None:
    """The SDK's threads.delete deletes the thread's attachments and their bytes too."""
    session = uploader(protocol)
    image = uploaded_image(protocol, session)
    kept = uploaded_image(protocol, session)  # never attached: not the thread's
    thread_id, _ = protocol.create_thread(session, "see the picture")
    sent = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("", [image["id"]])},
    )
    assert sent.status_code == 200
    assert live.threads.get_attachment(image["id"]).thread_id == thread_id
    assert preview(image["preview_url"]).status_code == 200

    with live.client() as client:
        client.beta.chatkit.threads.delete(thread_id)
    assert preview(image["preview_url"]).status_code == 404
    with pytest.raises(AttachmentNotFound):
        live.threads.get_attachment(image["id"])
    gone = protocol.post(session.secret, "attachments.delete", {"attachment_id": image["id"]})
    assert gone.status_code == 404
    assert preview(kept["preview_url"]).content == PNG


def test_a_message_with_an_attachment_lists_it_through_the_protocol(
    live: Live, protocol: Protocol, schemas: Schemas
) -> None:
    """threads.add_user_message with an image: items.list and the REST items both show it."""
    session = uploader(protocol)
    image = uploaded_image(protocol, session)
    thread_id, _ = protocol.create_thread(session, "first")
    sent = protocol.stream(
        session.secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": user_input("look", [image["id"]])},
    )
    assert sent.status_code == 200
    assert sent.events[-1]["item"]["content"][0]["text"] == "look"

    listed = protocol.post(session.secret, "items.list", {"thread_id": thread_id, "order": "asc"})
    assert listed.status_code == 200, listed.text
    messages = [item for item in listed.json()["data"] if item["type"] == "user_message"]
    assert [m["content"][0]["text"] for m in messages] == ["first", "look"]
    assert messages[1]["attachments"] == [
        {
            "type": "image",
            "id": image["id"],
            "name": "pixel.png",
            "mime_type": "image/png",
            "preview_url": image["preview_url"],
            "thread_id": thread_id,
        }
    ]
    assert messages[0]["attachments"] == []

    with live.client() as client:
        raw = client.beta.chatkit.threads.with_raw_response.list_items(thread_id, order="asc")
    rest = raw.http_response.json()
    schemas.check("ThreadItemListResource", rest)
    users = [item for item in rest["data"] if item["type"] == "chatkit.user_message"]
    assert users[1]["attachments"] == [
        {
            "type": "image",
            "id": image["id"],
            "name": "pixel.png",
            "mime_type": "image/png",
            "preview_url": image["preview_url"],
        }
    ]
    assert preview(users[1]["attachments"][0]["preview_url"]).content == PNG


def test_a_preview_is_served_so_that_it_can_run_nothing_and_leak_no_token(
    protocol: Protocol,
) -> None:
    """An SVG may hold a script: opened as a page (not an <img>), the preview must not run it
    in the service's origin, nor send its token-bearing URL on as a Referer."""
    session = uploader(protocol)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    created = create(protocol, session, "x.svg", "image/svg+xml", len(svg))
    shown = preview(upload(protocol, created, svg)["preview_url"])
    assert shown.status_code == 200
    assert shown.content == svg
    policy = shown.headers["content-security-policy"]
    assert "sandbox" in policy
    assert "default-src 'none'" in policy
    assert shown.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    "mime_type", ["image/png\r\nSet-Cookie: session=stolen", "image/pngé", "image/png; q=\x01"]
)
def test_a_preview_of_a_malformed_image_type_is_served_as_plain_bytes(
    protocol: Protocol, mime_type: str
) -> None:
    """The client declares the MIME type: one that is no valid header value (a header
    injection, non-ASCII) is served as application/octet-stream, never a broken response."""
    session = uploader(protocol)
    created = create(protocol, session, "x.png", mime_type, len(PNG))
    shown = preview(upload(protocol, created, PNG)["preview_url"])
    assert shown.status_code == 200
    assert shown.content == PNG
    assert shown.headers["content-type"] == "application/octet-stream"
    assert "set-cookie" not in shown.headers
