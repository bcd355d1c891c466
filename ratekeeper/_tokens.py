"""Attachment upload and preview tokens, derived from a server key and never stored.

An attachment's upload URL and an image's ``preview_url`` carry a token
(``…/attachments/{id}/upload?token=…``, ``…/attachments/{id}/preview?token=…``). The token is

    token = HMAC-SHA256(key, purpose + "\\0" + attachment id)   (base64url)

with ``purpose`` ``upload`` or ``preview``, so any process that has the key can rebuild it.
What is stored (the attachment's metadata, the items that show it, the REST content) holds
these URLs *without* their token; the token is put back when they are handed to a client
(:meth:`AttachmentTokens.issue_url`) and taken out before they are written
(:meth:`AttachmentTokens.strip_url`). A dump of the conversation store therefore holds nothing
that opens a preview or an upload; the key lives outside it (``--token-key`` /
``RATEKEEPER_TOKEN_KEY``, or a ``token.key`` file in the data directory).

An upload stays single-use: the store keeps the SHA-256 digest of the upload token while the
upload is pending and drops it when the bytes arrive. Pure standard library: the REST surface
uses it without openai-chatkit.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

#: Shortest key accepted (characters): 32 base64url characters hold 192 bits.
MIN_KEY_LENGTH = 32
_PURPOSES = ("upload", "preview")
KEY_FILE_NAME = "token.key"


class AttachmentTokens:
    """Derives attachment tokens from a key, and puts them into and out of URLs.

    Args:
        key: the server key (text, at least :data:`MIN_KEY_LENGTH` characters). Every worker
            and host that serves the same conversation store needs the same key; with a new
            key the URLs handed out earlier stop working (stored URLs are rebuilt with it).

    Immutable and stateless beyond the key: safe to share across tasks and threads.
    """

    __slots__ = ("_key",)

    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"the token key must have at least {MIN_KEY_LENGTH} characters")
        self._key = key.encode("utf-8", "surrogatepass")

    @classmethod
    def random(cls) -> AttachmentTokens:
        """Return tokens under a fresh random key: good for one process only."""
        return cls(secrets.token_urlsafe(32))

    @staticmethod
    def for_this_process() -> AttachmentTokens:
        """Return the tokens under this process's own random key (made on first use).

        What stores built without a key share, so they agree with each other in one process;
        processes (workers, restarts) that share a store need a key of their own instead.
        """
        global _PROCESS_TOKENS
        if _PROCESS_TOKENS is None:
            _PROCESS_TOKENS = AttachmentTokens.random()
        return _PROCESS_TOKENS

    def token(self, purpose: str, attachment_id: str) -> str:
        """Return the ``upload`` or ``preview`` token of an attachment."""
        message = f"{purpose}\0{attachment_id}".encode("utf-8", "surrogatepass")
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def check(self, purpose: str, attachment_id: str, token: str) -> bool:
        """Whether ``token`` is the attachment's token for ``purpose`` (constant time)."""
        expected = self.token(purpose, attachment_id).encode("ascii")
        return hmac.compare_digest(expected, token.encode("utf-8", "surrogatepass"))

    # -- URLs ------------------------------------------------------------------------------

    @staticmethod
    def _ours(url: str) -> tuple[SplitResult, str, str] | None:
        """The split URL, purpose and attachment id of an upload or preview URL, else None."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        segments = parts.path.split("/")
        if len(segments) < 4 or segments[-3] != "attachments" or segments[-1] not in _PURPOSES:
            return None
        return parts, segments[-1], unquote(segments[-2])

    def strip_url(self, url: str) -> str:
        """Return an upload or preview URL without its token (any other URL unchanged)."""
        ours = self._ours(url)
        if ours is None:
            return url
        parts = ours[0]
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))

    def issue_url(self, url: str) -> str:
        """Return an upload or preview URL with its token (any other URL unchanged)."""
        ours = self._ours(url)
        if ours is None:
            return url
        parts, purpose, attachment_id = ours
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
        query.append(("token", self.token(purpose, attachment_id)))
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))

    # -- JSON: an attachment, and the items that list attachments ---------------------------

    def strip_attachment(self, attachment: Mapping[str, Any]) -> dict[str, Any]:
        """An attachment's JSON (ChatKit's or REST's) with its URLs' tokens taken out."""
        return _rewrite_attachment(attachment, self.strip_url)

    def issue_attachment(self, attachment: Mapping[str, Any]) -> dict[str, Any]:
        """An attachment's JSON with its URLs' tokens put back."""
        return _rewrite_attachment(attachment, self.issue_url)

    def strip_item(self, item: Mapping[str, Any] | None) -> Any:
        """An item's JSON (ChatKit's or REST's) with its attachments' tokens taken out."""
        return _rewrite_item(item, self.strip_attachment)

    def issue_item(self, item: Mapping[str, Any] | None) -> Any:
        """An item's JSON with its attachments' tokens put back."""
        return _rewrite_item(item, self.issue_attachment)

    def __repr__(self) -> str:
        return "AttachmentTokens(<key>)"


_PROCESS_TOKENS: AttachmentTokens | None = None


def _rewrite_attachment(attachment: Mapping[str, Any], rewrite: Any) -> dict[str, Any]:
    result = dict(attachment)
    preview = result.get("preview_url")
    if isinstance(preview, str):
        result["preview_url"] = rewrite(preview)
    descriptor = result.get("upload_descriptor")
    if isinstance(descriptor, Mapping) and isinstance(descriptor.get("url"), str):
        result["upload_descriptor"] = {**descriptor, "url": rewrite(descriptor["url"])}
    return result


def _rewrite_item(item: Mapping[str, Any] | None, rewrite: Any) -> Any:
    if not isinstance(item, Mapping):
        return item
    attachments = item.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return item
    return {
        **item,
        "attachments": [rewrite(a) if isinstance(a, Mapping) else a for a in attachments],
    }


def load_or_create_key_file(directory: Path) -> str:
    """Return the key in ``directory/token.key``, creating the file (mode 0600) if missing.

    Workers starting together agree: the file appears whole or not at all (written aside,
    then hard-linked into place, which fails if another worker was first).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / KEY_FILE_NAME
    if not path.exists():
        aside = directory / f".{KEY_FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="ascii") as file:
                file.write(secrets.token_urlsafe(32) + "\n")
            with contextlib.suppress(FileExistsError):  # another worker was first: use theirs
                os.link(aside, path)
        finally:
            aside.unlink(missing_ok=True)
    return path.read_text(encoding="utf-8").strip()
