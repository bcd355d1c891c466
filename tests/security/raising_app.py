"""A uvicorn factory for the leak tests: the service with a ChatKit server whose answer fails
with the user's words in the exception (so a traceback quotes whatever the client sent).

``uvicorn --factory tests.security.raising_app:app_from_env``, configured like
:func:`ratekeeper.server.app_from_env` by ``RATEKEEPER_*`` variables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatkit.server import ChatKitServer
from chatkit.types import ThreadMetadata, ThreadStreamEvent, UserMessageItem
from starlette.applications import Starlette

from ratekeeper.chatkit import (
    ChatKitAttachmentStore,
    ChatKitContext,
    ChatKitStore,
    EchoChatKitServer,
    echo_text,
)
from ratekeeper.server import ServerSettings, create_app


class RaisingServer(EchoChatKitServer):
    """Fails every answer, quoting the user's message in the exception."""

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        raise RuntimeError(f"the model refused {echo_text(input_user_message)!r}")
        yield  # an async generator, as ChatKit expects


def _raising(
    store: ChatKitStore, attachments: ChatKitAttachmentStore
) -> ChatKitServer[ChatKitContext]:
    return RaisingServer(store, attachments)


def app_from_env() -> Starlette:
    """The service from ``RATEKEEPER_*`` variables, with :class:`RaisingServer`."""
    return create_app(ServerSettings.from_env(), chatkit_server_factory=_raising)
