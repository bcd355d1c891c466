"""A minimal in-memory ``AttachmentStore`` with two-phase uploads.

openai-chatkit handles ``attachments.create`` by asking the ``AttachmentStore`` for the
attachment's metadata; in two-phase mode that metadata carries an ``upload_descriptor`` and the
client then POSTs the bytes (``multipart/form-data``, field ``file``) to its URL. Here the URL
is the protocol endpoint's own upload route, with a single-use random token standing in for a
presigned URL's signature (the client secret never appears in a URL).

The session's ``file_upload`` limits are checked before the attachment exists (by the route,
through the backend's ``reserve_upload``); this store checks only that the bytes that arrive
are no more than the size the client declared, and keeps them within ``max_total_bytes``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from chatkit.store import AttachmentStore, NotFoundError
from chatkit.types import (
    Attachment,
    AttachmentCreateParams,
    AttachmentUploadDescriptor,
    FileAttachment,
)

from .._secrets import new_id
from .context import ChatKitContext

__all__ = ("MemoryAttachmentStore", "PendingUpload", "UploadRefused")

#: Default cap on the bytes held by one :class:`MemoryAttachmentStore`.
DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024


class UploadRefused(Exception):
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


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """An attachment created by ``attachments.create`` whose bytes have not arrived yet.

    Attributes:
        attachment_id: the attachment.
        session_id: the session that created it (its status is checked at upload).
        user: the session's user, the attachment's owner.
        size_bytes: the size the client declared, and the most it may upload.
    """

    attachment_id: str
    session_id: str
    user: str
    size_bytes: int
    token_digest: bytes


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class MemoryAttachmentStore(AttachmentStore[ChatKitContext]):
    """Attachment bytes in memory, uploaded in two phases.

    Args:
        max_total_bytes: most bytes held at once across all attachments; an upload past it
            is refused (507) rather than growing without bound.

    Not thread-safe: use it from the event loop serving the protocol endpoint.
    """

    def __init__(self, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> None:
        if max_total_bytes < 0:
            raise ValueError(f"max_total_bytes must be >= 0, got {max_total_bytes!r}")
        self.max_total_bytes = max_total_bytes
        self._pending: dict[str, PendingUpload] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._total = 0

    def generate_attachment_id(self, mime_type: str, context: ChatKitContext) -> str:
        """Return a new attachment id, ``atc_`` and 128 random bits (the default has 32)."""
        return new_id("atc")

    async def create_attachment(
        self, input: AttachmentCreateParams, context: ChatKitContext
    ) -> Attachment:
        """Create the metadata of a new attachment, with where to upload its bytes."""
        attachment_id = self.generate_attachment_id(input.mime_type, context)
        token = secrets.token_urlsafe(32)
        self._pending[attachment_id] = PendingUpload(
            attachment_id, context.session_id, context.user, input.size, _digest(token)
        )
        return FileAttachment(
            id=attachment_id,
            name=input.name,
            mime_type=input.mime_type,
            upload_descriptor=AttachmentUploadDescriptor.model_validate(
                {"url": context.upload_url(attachment_id, token), "method": "POST"}
            ),
        )

    def pending(self, attachment_id: str, token: str) -> PendingUpload | None:
        """Return the pending upload ``token`` opens, or ``None`` (compared in constant time)."""
        upload = self._pending.get(attachment_id)
        if upload is None or not hmac.compare_digest(upload.token_digest, _digest(token)):
            return None
        return upload

    def accept(self, upload: PendingUpload, data: bytes) -> None:
        """Keep the bytes of a pending upload; the token is used up.

        Raises:
            UploadRefused: the upload is no longer pending (404: another upload with the same
                token finished first, or the attachment was deleted meanwhile), more bytes than
                declared (413), or the store is full (507).
        """
        if self._pending.get(upload.attachment_id) is not upload:
            # Checked again here: the bytes were read between `pending()` and now.
            raise UploadRefused(
                404,
                "upload_not_found",
                "No upload is pending for this attachment, or its upload URL is not valid.",
            )
        if len(data) > upload.size_bytes:
            raise UploadRefused(
                413,
                "file_too_large",
                f"The file is larger than the {upload.size_bytes} bytes declared when the "
                "attachment was created.",
            )
        if self._total + len(data) > self.max_total_bytes:
            raise UploadRefused(
                507,
                "attachment_storage_full",
                "The attachment store is full. Delete attachments or try again later.",
            )
        del self._pending[upload.attachment_id]
        self._files[upload.attachment_id] = (upload.user, data)
        self._total += len(data)

    async def read(self, attachment_id: str, context: ChatKitContext) -> bytes:
        """Return the bytes of the user's uploaded attachment (for ``respond``).

        Raises:
            NotFoundError: no such attachment for this user, or its bytes have not arrived.
        """
        entry = self._files.get(attachment_id)
        if entry is None or entry[0] != context.user:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        return entry[1]

    async def delete_attachment(self, attachment_id: str, context: ChatKitContext) -> None:
        """Forget an attachment's bytes (or its pending upload); other users' are not found."""
        upload = self._pending.get(attachment_id)
        if upload is not None and upload.user == context.user:
            del self._pending[attachment_id]
            return
        entry = self._files.get(attachment_id)
        if entry is None or entry[0] != context.user:
            raise NotFoundError(f"Attachment {attachment_id} not found")
        del self._files[attachment_id]
        self._total -= len(entry[1])

    @property
    def total_bytes(self) -> int:
        """Bytes held now."""
        return self._total

    def __repr__(self) -> str:
        return (
            f"MemoryAttachmentStore(files={len(self._files)}, pending={len(self._pending)}, "
            f"total_bytes={self._total})"
        )
