"""The built-in ``ChatKitServer``: a deterministic echo, so the service works with no model.

It answers every user message with an assistant message whose text is the user's text
(attachments named, when there is no text), streamed word by word through the same events a
model-backed server would send. Useful as a local stand-in for ChatKit, and in tests.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

from chatkit.server import ChatKitServer
from chatkit.store import AttachmentStore, Store
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageContentPartAdded,
    AssistantMessageContentPartDone,
    AssistantMessageContentPartTextDelta,
    AssistantMessageItem,
    ThreadItemAddedEvent,
    ThreadItemDoneEvent,
    ThreadItemUpdatedEvent,
    ThreadMetadata,
    ThreadStreamEvent,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
)

from .._clock import Clock, SystemClock
from ._context import ChatKitContext

_WORDS = re.compile(r"\S+\s*")


def echo_text(message: UserMessageItem | None) -> str:
    """Return the reply to ``message``: its text, or the names of its attachments."""
    if message is None:
        return "(nothing to echo)"
    parts = [
        part.text
        for part in message.content
        if isinstance(part, UserMessageTextContent | UserMessageTagContent)
    ]
    text = " ".join(parts).strip()
    if text:
        return text
    if message.attachments:
        return "Attached: " + ", ".join(a.name for a in message.attachments)
    return "(empty message)"


async def adopt_stored_title(
    store: Store[ChatKitContext], thread: ThreadMetadata, context: ChatKitContext
) -> None:
    """Give ``thread`` the title the store holds for it, if it has none yet.

    Automatic titles are set by the store when a thread's first message is saved, so the copy
    of the thread a ``ChatKitServer`` streams does not have it. openai-chatkit saves the thread
    and emits ``thread.updated`` when ``respond`` changes it: call this first in ``respond``
    and the client shows the title at once.
    """
    if thread.title is None:
        stored = await store.load_thread(thread.id, context)
        if stored.title is not None:
            thread.title = stored.title


class EchoChatKitServer(ChatKitServer[ChatKitContext]):
    """A ``ChatKitServer`` whose assistant repeats the user.

    Args:
        store: the thread store (the protocol endpoint passes its
            :class:`~ratekeeper.chatkit.ChatKitStore`).
        attachment_store: where attachment bytes go, ``None`` to refuse ``attachments.*``.
        clock: timestamps of the assistant's items; the system clock by default.

    Automatic titling is done by the store when the first message is saved; this server
    copies that title into the thread it streams, so the client hears of it through a
    ``thread.updated`` event right away. Servers of your own can do the same with
    :func:`adopt_stored_title`.

    Holds no per-request state, so one instance serves every request of its event loop.
    """

    def __init__(
        self,
        store: Store[ChatKitContext],
        attachment_store: AttachmentStore[ChatKitContext] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(store, attachment_store)
        self.clock: Clock = clock if clock is not None else SystemClock()

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        """Stream the echo of ``input_user_message`` as an assistant message."""
        await adopt_stored_title(self.store, thread, context)
        text = echo_text(input_user_message)
        item = AssistantMessageItem(
            id=self.store.generate_item_id("message", thread, context),
            thread_id=thread.id,
            created_at=datetime.fromtimestamp(self.clock.time()),
            content=[],
        )
        yield ThreadItemAddedEvent(item=item)
        yield ThreadItemUpdatedEvent(
            item_id=item.id,
            update=AssistantMessageContentPartAdded(
                content_index=0, content=AssistantMessageContent(text="")
            ),
        )
        for word in _WORDS.findall(text):
            yield ThreadItemUpdatedEvent(
                item_id=item.id,
                update=AssistantMessageContentPartTextDelta(content_index=0, delta=word),
            )
        done = AssistantMessageContent(text=text)
        yield ThreadItemUpdatedEvent(
            item_id=item.id,
            update=AssistantMessageContentPartDone(content_index=0, content=done),
        )
        yield ThreadItemDoneEvent(item=item.model_copy(update={"content": [done]}))
