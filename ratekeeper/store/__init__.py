"""Conversation state: threads, items and attachments, shared by every worker and host.

Sessions are short-lived and hot, and live in the session backend (memory or Redis);
conversation state is long-lived and must survive restarts, and lives here. One interface,
:class:`ConversationStore`, serves the REST surface (``/v1/chatkit/threads…``) and
openai-chatkit's ``Store``/``AttachmentStore`` (see :class:`ratekeeper.chatkit.ChatKitStore`).
Nothing here imports a web framework or openai-chatkit.

Pick an implementation with :func:`store_from_url`:

* ``memory``: :class:`MemoryStore`, one process (tests and the library);
* ``sqlite:///PATH``: :class:`SQLStore` on a SQLite file, shared by the workers of one host;
* ``postgresql://…``: :class:`SQLStore` on PostgreSQL, shared by several hosts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._base import UNSET, ConversationStore, Order, PageRequest, PurgeResult, Unset, UploadEnd
from ._memory import MemoryStore
from ._values import (
    ACTIVE,
    ITEM_TYPES,
    AttachmentNotFound,
    AttachmentTooLarge,
    Page,
    StoredAttachment,
    StoredItem,
    StoredThread,
    StoreSchemaError,
    StoreUnavailable,
    ThreadNotFound,
    ThreadStatus,
    UnstorableValue,
    assistant_message,
    check_content,
    user_message,
)

if TYPE_CHECKING:  # imported on first use at run time (see __getattr__ below)
    from .._clock import Clock
    from ._sql import SQLStore

__all__ = (
    "ACTIVE",
    "DEFAULT_TIMEOUT_S",
    "ITEM_TYPES",
    "UNSET",
    "AttachmentNotFound",
    "AttachmentTooLarge",
    "ConversationStore",
    "MemoryStore",
    "Order",
    "Page",
    "PageRequest",
    "PurgeResult",
    "SQLStore",
    "StoreSchemaError",
    "StoreUnavailable",
    "StoredAttachment",
    "StoredItem",
    "StoredThread",
    "ThreadNotFound",
    "ThreadStatus",
    "Unset",
    "UnstorableValue",
    "UploadEnd",
    "assistant_message",
    "check_content",
    "store_from_url",
    "user_message",
)

#: Longest a store operation waits on its database before :class:`StoreUnavailable`.
DEFAULT_TIMEOUT_S = 10.0


def store_from_url(
    url: str, *, clock: Clock | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ConversationStore:
    """Return the store a URL names (not opened yet: call ``await store.open()``).

    Args:
        url: ``memory``, ``sqlite:///PATH`` (attachment bytes go to ``PATH.attachments/``
            beside the file), or ``postgresql://user@host:port/db`` (``postgres://`` too).
        clock: gives ``created_at`` when a caller does not.
        timeout_s: longest wait on the database for one operation.

    Raises:
        ValueError: the URL names no store this release knows, or a store whose driver is
            not installed (``pip install 'ratekeeper[store]'``).
    """
    if url == "memory":
        return MemoryStore(clock)
    scheme = url.partition(":")[0].lower()
    if scheme.partition("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(
            f"unknown store URL scheme {scheme!r}: use 'memory', 'sqlite:///PATH' or "
            "'postgresql://…'"
        )
    try:
        from ._sql import SQLStore
    except ModuleNotFoundError as exc:
        # Only a missing package is an installation matter; any other ImportError is a bug,
        # and must say so.
        if (exc.name or "").partition(".")[0] not in ("sqlalchemy", "asyncpg", "greenlet"):
            raise
        raise ValueError(
            f"the SQL stores need SQLAlchemy and a driver ({exc}); install 'ratekeeper[store]'"
        ) from None
    return SQLStore(url, clock=clock, timeout_s=timeout_s)


def __getattr__(name: str) -> object:
    # SQLStore needs SQLAlchemy and a driver: imported on first use, so `memory` works without.
    if name == "SQLStore":
        from ._sql import SQLStore

        return SQLStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
