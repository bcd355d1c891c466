"""The request context every ChatKit call of the protocol endpoint carries: its session."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from starlette.requests import Request

from .._types import Decision, FileUploadLimits, HistoryLimits, Session


@dataclass(frozen=True, slots=True)
class ChatKitContext:
    """What a ``ChatKitServer`` (and its stores) learn about the request they serve.

    The protocol endpoint builds one per admitted request and passes it as ``context`` to
    ``ChatKitServer.process``, so ``respond``, the ``Store`` and the ``AttachmentStore`` all see
    the session behind the client secret (never the secret itself).

    Attributes:
        session: the session the request was admitted on (``client_secret`` is ``None``).
        decision: the admission decision (``remaining`` and so on), ``None`` when the gate
            failed open.
        upload_url_base: absolute URL that attachment upload URLs start with (ends in ``/``).
        request: the Starlette request, for servers that need its headers; ``None`` in tests
            that call a server directly.

    Immutable, so safe to share across tasks and threads.
    """

    session: Session
    decision: Decision | None = None
    upload_url_base: str = "http://127.0.0.1/chatkit/attachments/"
    request: Request | None = field(default=None, compare=False, repr=False)

    @property
    def user(self) -> str:
        """The end user the session belongs to: threads and attachments are scoped by it."""
        return self.session.user

    @property
    def session_id(self) -> str:
        """The session's id (``cksess_…``)."""
        return self.session.id

    @property
    def file_upload(self) -> FileUploadLimits:
        """The session's ``chatkit_configuration.file_upload``."""
        return self.session.file_upload

    @property
    def history(self) -> HistoryLimits:
        """The session's ``chatkit_configuration.history``."""
        return self.session.history

    @property
    def automatic_thread_titling(self) -> bool:
        """The session's ``chatkit_configuration.automatic_thread_titling.enabled``."""
        return self.session.spec.automatic_thread_titling

    def preview_url(self, attachment_id: str, token: str) -> str:
        """Return the URL an image attachment's preview is served from."""
        return self._attachment_url(attachment_id, "preview", token)

    def upload_url(self, attachment_id: str, token: str) -> str:
        """Return the URL a client uploads an attachment's bytes to (two-phase upload)."""
        return self._attachment_url(attachment_id, "upload", token)

    def _attachment_url(self, attachment_id: str, action: str, token: str) -> str:
        return (
            f"{self.upload_url_base}{quote(attachment_id, safe='')}/{action}"
            f"?token={quote(token, safe='')}"
        )
