"""The values a conversation store holds, in the shapes of ChatKit's REST schema.

``chatkit.thread`` (:class:`StoredThread`), ``chatkit.thread_item`` (:class:`StoredItem`), a
thread's ``status`` (:class:`ThreadStatus`), attachment metadata (:class:`StoredAttachment`), a
listing :class:`Page`, builders for the commonest item contents, and the store's errors. All
immutable, so safe to share across threads.

``extra`` slots hold JSON-compatible data only (dicts, lists, strings, numbers, booleans,
``None``): every store keeps them as JSON, so what an in-memory store accepts a database does
too.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from .._errors import BackendError, RatekeeperError

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


class ThreadNotFound(RatekeeperError, LookupError):
    """Raised when a thread (or an item of it) does not exist."""

    def __init__(self, thread_id: str, item_id: str | None = None) -> None:
        if item_id is None:
            message = f"Chatkit Thread with id '{thread_id}' not found."
        else:
            message = f"Chatkit Thread item with id '{item_id}' not found in thread '{thread_id}'."
        super().__init__(message)
        self.message = message
        self.thread_id = thread_id
        self.item_id = item_id


class AttachmentNotFound(RatekeeperError, LookupError):
    """Raised when an attachment (or its bytes) does not exist."""

    def __init__(self, attachment_id: str) -> None:
        message = f"Attachment with id '{attachment_id}' not found."
        super().__init__(message)
        self.message = message
        self.attachment_id = attachment_id


class AttachmentTooLarge(RatekeeperError, ValueError):
    """Raised when more bytes arrive for an attachment than it may hold.

    Attributes:
        max_bytes: the most it may hold.
    """

    def __init__(self, attachment_id: str, max_bytes: int) -> None:
        super().__init__(f"Attachment '{attachment_id}' is larger than {max_bytes} bytes.")
        self.attachment_id = attachment_id
        self.max_bytes = max_bytes


class StoreSchemaError(RatekeeperError):
    """Raised when a database holds a schema this release cannot use (a newer one, say)."""


class UnstorableValue(RatekeeperError, ValueError):
    """Raised when the database refuses a value (PostgreSQL keeps no NUL character in text).

    A client's bad input, not a failure: the service answers 400 with :attr:`public_message`
    (the database's own words may quote the input).
    """

    public_message = (
        "The request holds a value the conversation store cannot keep (such as a NUL character)."
    )


class StoreUnavailable(BackendError):
    """Raised when the conversation store's database cannot be reached or times out.

    A :class:`~ratekeeper.BackendError`, so the service answers it as it answers a
    failing session backend: 503, never a 500. The driver's error is the cause.
    """

    code = "store_unavailable"
    public_message = "The conversation store is unavailable. Please retry shortly."


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
        extra: JSON data an adapter keeps beside the thread (e.g. a ChatKit
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
            ``None`` for an item the REST schema has no shape for (a ChatKit hidden-context
            item, say): kept in its place for the protocol, never listed by REST.
        extra: JSON data an adapter keeps beside the item (e.g. a ChatKit ``ThreadItem``).
    """

    id: str
    thread_id: str
    created_at: int
    content: Mapping[str, Any] | None
    extra: Any = field(default=None, compare=False, repr=False)

    @property
    def type(self) -> str | None:
        """The item's REST ``type``, e.g. ``"chatkit.user_message"``; ``None`` when hidden."""
        return None if self.content is None else str(self.content["type"])

    @property
    def hidden(self) -> bool:
        """Whether REST never lists this item (it has no REST shape)."""
        return self.content is None

    def to_json(self) -> dict[str, Any]:
        """Return the ``chatkit.thread_item`` object of the REST schema.

        Raises:
            ValueError: the item is hidden (it has no REST shape).
        """
        if self.content is None:
            raise ValueError(f"item {self.id!r} has no REST shape")
        return {
            "id": self.id,
            "object": "chatkit.thread_item",
            "created_at": self.created_at,
            "thread_id": self.thread_id,
            **self.content,
        }


@dataclass(frozen=True, slots=True)
class StoredAttachment:
    """An attachment's metadata as stored; its bytes live beside it in the same store.

    Attributes:
        id: ``atc_…`` (or any id the caller chose).
        user: the end user who owns it.
        created_at: integer Unix time of creation.
        data: JSON data of the attachment (a ChatKit ``Attachment`` dumped, say).
        thread_id: the thread whose message carries it, once there is one; deleting that
            thread deletes the attachment and its bytes.
        session_id: the session that created it (checked again at upload).
        declared_bytes: the size the client declared: the most its upload may carry.
        upload_token_digest: SHA-256 of the single-use upload token while an upload is
            pending; ``None`` once the bytes arrived (or for an attachment never uploaded here).
        size_bytes: how many bytes are stored, ``None`` until they arrive.
    """

    id: str
    user: str
    created_at: int
    data: Mapping[str, Any]
    thread_id: str | None = None
    session_id: str | None = None
    declared_bytes: int | None = None
    upload_token_digest: bytes | None = field(default=None, repr=False)
    size_bytes: int | None = None

    @property
    def pending(self) -> bool:
        """Whether an upload is still awaited."""
        return self.upload_token_digest is not None


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


def check_content(content: Mapping[str, Any] | None) -> None:
    """Raise ``ValueError`` unless ``content`` is a valid item content (see :class:`StoredItem`).

    ``None`` (a hidden item) is valid.
    """
    if content is None:
        return
    if not isinstance(content, Mapping) or content.get("type") not in ITEM_TYPES:
        raise ValueError(f"item content needs a 'type' among {ITEM_TYPES}")
    for reserved in ("id", "object", "created_at", "thread_id"):
        if reserved in content:
            raise ValueError(f"item content must not set {reserved!r}: the store does")


def json_copy(value: Any) -> Any:
    """Return a deep copy of JSON data, refusing what a database store could not keep.

    Every store keeps ``extra`` and ``data`` as JSON, so every store refuses the same values.

    Raises:
        ValueError: ``value`` is not JSON-compatible (NaN and infinities included).
    """
    if value is None:
        return None
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"extra data must be JSON-compatible: {exc}") from None


def checked_created_at(created_at: int | None, now: float) -> int:
    """Return ``created_at``, or ``now`` rounded down when it is ``None``.

    Raises:
        ValueError: ``created_at`` is not an integer Unix time.
    """
    if created_at is None:
        return math.floor(now)
    if isinstance(created_at, bool) or not isinstance(created_at, int):
        raise ValueError(f"created_at must be an integer Unix time, got {created_at!r}")
    return created_at
