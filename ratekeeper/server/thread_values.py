"""The values the thread store holds, in the shapes of ChatKit's REST schema.

``chatkit.thread`` (:class:`StoredThread`), ``chatkit.thread_item`` (:class:`StoredItem`), a
thread's ``status`` (:class:`ThreadStatus`), a listing :class:`Page`, and builders for the
commonest item contents. All immutable, so safe to share across threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

__all__ = (
    "ACTIVE",
    "ITEM_TYPES",
    "Page",
    "StoredItem",
    "StoredThread",
    "ThreadStatus",
    "assistant_message",
    "check_content",
    "user_message",
)

#: The ``type`` of every thread item the REST schema knows.
ITEM_TYPES = (
    "chatkit.user_message",
    "chatkit.assistant_message",
    "chatkit.widget",
    "chatkit.client_tool_call",
    "chatkit.task",
    "chatkit.task_group",
)
_THREAD_STATUSES = ("active", "locked", "closed")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ThreadStatus:
    """A thread's ``status``: ``active``, or ``locked``/``closed`` with an optional reason.

    Attributes:
        type: ``"active"``, ``"locked"`` or ``"closed"``.
        reason: why it was locked or closed (always ``None`` when active).
    """

    type: Literal["active", "locked", "closed"] = "active"
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _THREAD_STATUSES:
            raise ValueError(f"thread status must be one of {_THREAD_STATUSES}, got {self.type!r}")
        if self.type == "active" and self.reason is not None:
            raise ValueError("an active thread has no status reason")

    def to_json(self) -> dict[str, Any]:
        """Return the REST form: ``{"type": "active"}`` or ``{"type", "reason"}``."""
        if self.type == "active":
            return {"type": "active"}
        return {"type": self.type, "reason": self.reason}


ACTIVE = ThreadStatus()


@dataclass(frozen=True, slots=True)
class StoredThread:
    """A thread as stored.

    Attributes:
        id: ``cthr_…`` (or any id the caller chose).
        user: the end user the thread belongs to.
        created_at: integer Unix time of creation.
        title: the title, ``None`` until one is set.
        status: active, locked or closed.
        extra: opaque data an adapter keeps beside the thread (e.g. a ChatKit
            ``ThreadMetadata``); never shown by the REST surface.
    """

    id: str
    user: str
    created_at: int
    title: str | None = None
    status: ThreadStatus = ACTIVE
    extra: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """Return the ``chatkit.thread`` object of the REST schema."""
        return {
            "id": self.id,
            "object": "chatkit.thread",
            "created_at": self.created_at,
            "title": self.title,
            "status": self.status.to_json(),
            "user": self.user,
        }


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A thread item as stored.

    Attributes:
        id: ``cthi_…`` (or any id the caller chose).
        thread_id: the thread it belongs to.
        created_at: integer Unix time of creation.
        content: the type-specific fields of the REST ``ThreadItem``, ``type`` included
            (e.g. ``{"type": "chatkit.user_message", "content": [...], "attachments": [],
            "inference_options": None}``); see :func:`user_message`, :func:`assistant_message`.
        extra: opaque data an adapter keeps beside the item (e.g. a ChatKit ``ThreadItem``).
    """

    id: str
    thread_id: str
    created_at: int
    content: Mapping[str, Any]
    extra: Any = field(default=None, compare=False, repr=False)

    @property
    def type(self) -> str:
        """The item's ``type``, e.g. ``"chatkit.user_message"``."""
        return str(self.content["type"])

    def to_json(self) -> dict[str, Any]:
        """Return the ``chatkit.thread_item`` object of the REST schema."""
        return {
            "id": self.id,
            "object": "chatkit.thread_item",
            "created_at": self.created_at,
            "thread_id": self.thread_id,
            **self.content,
        }


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing.

    Attributes:
        data: the entries, in the requested order.
        has_more: whether more entries lie beyond this page in the direction of travel.
    """

    data: list[T]
    has_more: bool

    @property
    def first_id(self) -> str | None:
        """Id of the first entry, ``None`` for an empty page."""
        return _id_of(self.data[0]) if self.data else None

    @property
    def last_id(self) -> str | None:
        """Id of the last entry, ``None`` for an empty page."""
        return _id_of(self.data[-1]) if self.data else None


def _id_of(entry: Any) -> str:
    return str(entry.id)


def user_message(
    text: str, *, attachments: Iterable[Mapping[str, Any]] = (), quoted_text: str | None = None
) -> dict[str, Any]:
    """Return the ``content`` of a ``chatkit.user_message`` item holding ``text``."""
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    if quoted_text is not None:
        content.append({"type": "quoted_text", "text": quoted_text})
    return {
        "type": "chatkit.user_message",
        "content": content,
        "attachments": [dict(a) for a in attachments],
        "inference_options": None,
    }


def assistant_message(text: str) -> dict[str, Any]:
    """Return the ``content`` of a ``chatkit.assistant_message`` item holding ``text``."""
    return {
        "type": "chatkit.assistant_message",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def check_content(content: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``content`` is a valid item content (see :class:`StoredItem`)."""
    if not isinstance(content, Mapping) or content.get("type") not in ITEM_TYPES:
        raise ValueError(f"item content needs a 'type' among {ITEM_TYPES}")
    for reserved in ("id", "object", "created_at", "thread_id"):
        if reserved in content:
            raise ValueError(f"item content must not set {reserved!r}: the store does")
