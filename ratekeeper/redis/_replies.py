"""Script replies turned into the package's values."""

from __future__ import annotations

import json
from typing import Any

from ..types import FileUploadLimits, HistoryLimits, Session, SessionStatus

__all__ = ("US", "snapshot", "text")

#: Microseconds per second: every time in Redis is an integer number of microseconds.
US = 1_000_000


def text(value: bytes | str) -> str:
    """Return a reply string as ``str`` (clients built with ``decode_responses`` give str)."""
    return value if isinstance(value, str) else value.decode()


def snapshot(
    sid: str, status: bytes | str, expires_at: Any, created_us: Any, meta: bytes | str, limit: Any
) -> Session:
    """Build a :class:`Session` from the fields the scripts return (never with its secret)."""
    data = json.loads(meta)
    return Session(
        id=sid,
        user=data["user"],
        status=SessionStatus(text(status)),
        expires_at=int(expires_at),
        created_at=int(created_us) / US,
        max_requests_per_1_minute=int(limit),
        file_upload=FileUploadLimits(*data["fu"]),
        history=HistoryLimits(*data["h"]),
        attributes=data["a"],
    )
