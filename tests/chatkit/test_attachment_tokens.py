"""Attachment tokens derived from the server key: never stored, refused when legacy or foreign.

The stores are called as openai-chatkit and the endpoint's routes call them, over each
conversation store (``conftest.STORES``); what they write is read back raw from the store.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chatkit.types import AttachmentCreateParams, ImageAttachment

from ratekeeper._tokens import AttachmentTokens, load_or_create_key_file
from ratekeeper.chatkit import ChatKitAttachmentStore, ChatKitStore
from ratekeeper.server._settings import SETTINGS, ServerSettings, SettingsError, setting_value
from ratekeeper.store import ConversationStore

from .conftest import context

KEY = "a-key-of-these-tests-that-is-long-enough-0123456789"


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _token(url: object) -> str:
    return str(url).partition("?token=")[2]


@pytest.mark.anyio
async def test_stored_metadata_has_no_token_and_what_is_returned_has_it(
    conversations: ConversationStore,
) -> None:
    """The store keeps the URLs bare; the attachment handed back carries working tokens."""
    tokens = AttachmentTokens(KEY)
    store = ChatKitStore(conversations, tokens=tokens)
    attachments = ChatKitAttachmentStore(conversations, tokens=tokens)
    ctx = context()
    params = AttachmentCreateParams(name="p.png", size=8, mime_type="image/png")
    created = await attachments.create_attachment(params, ctx)
    await store.save_attachment(created, ctx)
    assert isinstance(created, ImageAttachment)
    assert created.upload_descriptor is not None
    upload, preview = _token(created.upload_descriptor.url), _token(created.preview_url)
    assert upload == tokens.token("upload", created.id)
    assert preview == tokens.token("preview", created.id)

    raw = json.dumps((await conversations.get_attachment(created.id)).data)
    assert upload not in raw
    assert preview not in raw
    assert f"{created.id}/preview" in raw

    loaded = await store.load_attachment(created.id, ctx)
    assert loaded == created
    pending = await attachments.pending(created.id, upload)
    assert pending is not None
    accepted = await attachments.accept(pending, _chunks(b"\x89PNG", b"data"))
    assert isinstance(accepted, ImageAttachment)
    assert str(accepted.preview_url) == str(created.preview_url)
    raw = json.dumps((await conversations.get_attachment(created.id)).data)
    assert preview not in raw
    assert await attachments.preview(created.id, preview) is not None
    # Another key (another deployment, or a rotated key) opens nothing.
    other = ChatKitAttachmentStore(conversations, tokens=AttachmentTokens("x" * 40))
    assert await other.preview(created.id, preview) is None


@pytest.mark.anyio
async def test_a_legacy_preview_token_is_refused_and_its_url_rebuilt(
    conversations: ConversationStore,
) -> None:
    """A row an earlier version wrote (a random preview token, its digest and its URL) keeps
    its image, under a derived token; the random token stored in the row opens nothing."""
    tokens = AttachmentTokens(KEY)
    store = ChatKitStore(conversations, tokens=tokens)
    attachments = ChatKitAttachmentStore(conversations, tokens=tokens)
    ctx = context()
    params = AttachmentCreateParams(name="p.png", size=4, mime_type="image/png")
    created = await attachments.create_attachment(params, ctx)
    pending = await attachments.pending(created.id, tokens.token("upload", created.id))
    assert pending is not None
    await attachments.accept(pending, _chunks(b"data"))
    # Rewrite the row as an earlier version left it.
    legacy = secrets.token_urlsafe(32)
    stored = await conversations.get_attachment(created.id)
    url = f"{ctx.upload_url_base}{created.id}/preview?token={legacy}"
    await conversations.update_attachment(
        created.id,
        data={
            **stored.data,
            "preview_token_sha256": hashlib.sha256(legacy.encode()).hexdigest(),
            "attachment": {**stored.data["attachment"], "preview_url": url},
        },
    )
    assert await attachments.preview(created.id, legacy) is None
    loaded = await store.load_attachment(created.id, ctx)
    assert isinstance(loaded, ImageAttachment)
    assert _token(loaded.preview_url) == tokens.token("preview", created.id)
    assert await attachments.preview(created.id, _token(loaded.preview_url)) is not None


def test_urls_not_of_the_service_are_left_alone() -> None:
    """A ChatKit server's own preview URL (a CDN's, say) is stored and returned as it is."""
    tokens = AttachmentTokens(KEY)
    for url in (
        "https://cdn.example.com/p.png?token=t",
        "https://cdn.example.com/attachments/x/download?token=t",
        "not a url",
    ):
        assert tokens.strip_url(url) == url
        assert tokens.issue_url(url) == url
    ours = "https://h/chatkit/attachments/atc_1/preview?token=old&x=1"
    assert tokens.strip_url(ours) == "https://h/chatkit/attachments/atc_1/preview?x=1"
    assert tokens.issue_url(tokens.strip_url(ours)) == (
        f"https://h/chatkit/attachments/atc_1/preview?x=1&token={tokens.token('preview', 'atc_1')}"
    )


def test_the_key_file_is_made_once_and_private(tmp_path: Path) -> None:
    """token.key is created with mode 0600 and read back the same by every later caller."""
    directory = tmp_path / "data"
    key = load_or_create_key_file(directory)
    path = directory / "token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 32
    assert load_or_create_key_file(directory) == key
    assert sorted(p.name for p in directory.iterdir()) == ["token.key"]
    AttachmentTokens(key)  # long enough to be used


def test_a_short_key_is_refused_without_being_quoted() -> None:
    """--token-key is a secret: a bad one is named, never shown, and never in repr."""
    setting = next(s for s in SETTINGS if s.field == "token_key")
    with pytest.raises(SettingsError) as caught:
        setting_value(setting, "short-secret-key")
    assert "short-secret-key" not in str(caught.value)
    assert "RATEKEEPER_TOKEN_KEY" in str(caught.value)
    with pytest.raises(ValueError, match="at least 32 characters"):
        AttachmentTokens("short-secret-key")
    settings = ServerSettings(token_key=KEY)
    assert KEY not in repr(settings)
    assert ServerSettings.from_env({"RATEKEEPER_TOKEN_KEY": KEY}).token_key == KEY
