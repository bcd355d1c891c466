"""openai-chatkit's ``AttachmentStore`` over a conversation store, with two-phase uploads.

openai-chatkit handles ``attachments.create`` by asking the ``AttachmentStore`` for the
attachment's metadata; in two-phase mode that metadata carries an ``upload_descriptor`` and the
client then POSTs the bytes (``multipart/form-data``, field ``file``) to its URL. Here the URL
is the protocol endpoint's own upload route, with a single-use token standing in for a
presigned URL's signature (the client secret never appears in a URL). The pending upload, the
bytes and the metadata all live in the conversation store, so the upload may reach any worker or
host, and the bytes are streamed into it, never held whole in memory.

Images also get a ``preview_url``: the endpoint's preview route with a second token that
only opens that image (an ``<img>`` cannot send an ``Authorization`` header).

Both tokens are derived from the server's key (:class:`~ratekeeper.chatkit.AttachmentTokens`)
and never stored: the stored metadata keeps the URLs without them, and they are put back
whenever an attachment is handed to a client. A token of the random kind earlier versions
stored in the URLs is refused for previews; such a pending upload may still be finished until
``--upload-timeout`` purges it.

The session's ``file_upload`` limits are checked before the attachment exists (by the route,
through the backend's ``reserve_upload``); this store checks that the bytes that arrive are no
more than the size the client declared.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from chatkit.store import AttachmentStore, NotFoundError
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
    ImageAttachment,
)
from pydantic import AnyUrl

from .._errors import RatekeeperError
from .._secrets import new_id, secret_digest
from ..store import (
    AttachmentNotFound,
    AttachmentTooLarge,
    StoredAttachment,
)
from ._context import ChatKitContext
from ._store import OverConversations, attachment_from_json, attachment_json, owned_attachment

# Present in a stored image attachment's data: its preview may be served. (Earlier versions
# kept the digest of a random preview token here; any value now only marks the image.)
_PREVIEW_KEY = "preview_token_sha256"


class UploadRefused(RatekeeperError):
    """Raised when uploaded bytes cannot be accepted.

    Attributes:
        status_code: the HTTP status to answer with.
        code: OpenAI-style error code.
        message: what went wrong.
    """

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def _no_upload() -> UploadRefused:
    return UploadRefused(
        404,
        "upload_not_found",
        "No upload is pending for this attachment, or its upload URL is not valid.",
    )


class ChatKitAttachmentStore(OverConversations, AttachmentStore[ChatKitContext]):
    """Attachment bytes in the conversation store, uploaded in two phases.

    Args:
        conversations: the conversation store (the same one the ``ChatKitStore`` uses).
        clock: stamps new attachments (stale pending uploads are purged by age).
        tokens: derives the upload and preview tokens; the same key on every worker and host
            that shares the store (this process's own random key when ``None``).

    Holds no state of its own, so every worker may have one over the same shared store.
    """

    def generate_attachment_id(self, mime_type: str, context: ChatKitContext) -> str:
        """Return a new attachment id, ``atc_`` and 128 random bits (the default has 32)."""
        return new_id("atc")

    async def create_attachment(
        self, input: AttachmentCreateParams, context: ChatKitContext
    ) -> Attachment:
        """Create the metadata of a new attachment, with where to upload its bytes."""
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        token = self.tokens.token("upload", attachment_id)
        descriptor = AttachmentUploadDescriptor.model_validate(
            {"url": context.upload_url(attachment_id, token), "method": "POST"}
        )
        data: dict[str, Any] = {}
        attachment: Attachment
        if input.mime_type.lower().startswith("image/"):
            preview = self.tokens.token("preview", attachment_id)
            data[_PREVIEW_KEY] = secret_digest(preview).hex()
            attachment = ImageAttachment(
                id=attachment_id,
                name=input.name,
                mime_type=input.mime_type,
                upload_descriptor=descriptor,
                preview_url=AnyUrl(context.preview_url(attachment_id, preview)),
            )
        else:
            attachment = FileAttachment(
                id=attachment_id,
                name=input.name,
                mime_type=input.mime_type,
                upload_descriptor=descriptor,
            )
        data["attachment"] = self.tokens.strip_attachment(attachment_json(attachment))
        await self.conversations.save_attachment(
            StoredAttachment(
                attachment_id,
                context.user,
                self._now(),
                data,
                session_id=context.session_id,
                declared_bytes=input.size,
                upload_token_digest=secret_digest(token),
            )
        )
        return attachment

    async def pending(self, attachment_id: str, token: str) -> StoredAttachment | None:
        """Return the pending upload ``token`` opens, or ``None`` (compared in constant time)."""
        try:
            stored = await self.conversations.get_attachment(attachment_id)
        except AttachmentNotFound:
            return None
        expected = stored.upload_token_digest
        if expected is None or not hmac.compare_digest(expected, secret_digest(token)):
            return None
        return stored

    async def accept(self, pending: StoredAttachment, chunks: AsyncIterable[bytes]) -> Attachment:
        """Store the bytes of a pending upload, streamed; the token is used up.

        Returns:
            The attachment's metadata, without its upload descriptor.

        Raises:
            UploadRefused: the upload is no longer pending (404: another upload with the same
                token finished first, or the attachment was deleted meanwhile), or more bytes
                arrived than declared (413).
        """
        limit = pending.declared_bytes if pending.declared_bytes is not None else 0
        attachment = attachment_from_json(pending, self.tokens).model_copy(
            update={"upload_descriptor": None}
        )
        try:
            # One atomic step ends the upload: the token is checked (single use), the bytes
            # switched in, and the metadata loses its upload descriptor.
            await self.conversations.write_attachment_bytes(
                pending.id,
                chunks,
                max_bytes=limit,
                upload_token_digest=pending.upload_token_digest,
                data={
                    **pending.data,
                    "attachment": self.tokens.strip_attachment(attachment_json(attachment)),
                },
            )
        except AttachmentNotFound:
            raise _no_upload() from None
        except AttachmentTooLarge:
            raise UploadRefused(
                413,
                "file_too_large",
                f"The file is larger than the {limit} bytes declared when the attachment was "
                "created.",
            ) from None
        return attachment

    async def preview(self, attachment_id: str, token: str) -> StoredAttachment | None:
        """Return the uploaded image ``token`` opens for preview, or ``None``.

        The token must be the one derived from the key (compared in constant time, before the
        store is asked): a random token an earlier version stored in a URL opens nothing.
        """
        if not self.tokens.check("preview", attachment_id, token):
            return None
        try:
            stored = await self.conversations.get_attachment(attachment_id)
        except AttachmentNotFound:
            return None
        if _PREVIEW_KEY not in stored.data or stored.size_bytes is None:
            return None
        return stored

    async def open(self, attachment_id: str, context: ChatKitContext) -> AsyncIterator[bytes]:
        """Stream the bytes of the user's uploaded attachment (for ``respond``).

        Raises:
            NotFoundError: no such attachment for this user, or its bytes have not arrived.
        """
        stored = await owned_attachment(self.conversations, attachment_id, context)
        if stored.size_bytes is None:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        try:
            async for chunk in self.conversations.read_attachment_bytes(attachment_id):
                yield chunk
        except AttachmentNotFound:
            raise NotFoundError(f"Attachment {attachment_id} not found") from None

    async def read(self, attachment_id: str, context: ChatKitContext) -> bytes:
        """Return the bytes of the user's uploaded attachment, whole (small files only).

        Raises:
            NotFoundError: no such attachment for this user, or its bytes have not arrived.
        """
        return b"".join([chunk async for chunk in self.open(attachment_id, context)])

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        """Check that the user may delete this attachment.

        openai-chatkit calls this and then ``Store.delete_attachment``, which deletes the
        metadata and the bytes together (:class:`~ratekeeper.chatkit.ChatKitStore`).

        Raises:
            NotFoundError: no such attachment for this user.
        """
        await owned_attachment(self.conversations, attachment_id, context)

    def __repr__(self) -> str:
        return f"ChatKitAttachmentStore({self.conversations!r})"
