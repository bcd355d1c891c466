"""Script replies turned into the package's values."""

from __future__ import annotations

import json
from typing import Any

from .._types import (
    INFINITY,
    WINDOW_S,
    Decision,
    FileUploadLimits,
    HistoryLimits,
    Reason,
    Session,
    SessionStatus,
)
from .._window import unknown_decision

#: Microseconds per second: every time in Redis is an integer number of microseconds.
US = 1_000_000

_new = tuple.__new__  # builds a Decision without NamedTuple's Python-level __new__
_ALLOWED = Reason.ALLOWED
_RATE_LIMITED = Reason.RATE_LIMITED
_EXPIRED = Reason.EXPIRED
_CANCELLED = Reason.CANCELLED
# The first byte of an admission reply (decide.lua): its code.
_CODE_ALLOWED = ord("1")
_CODE_RATE_LIMITED = ord("2")
_CODE_EXPIRED = ord("3")
_CODE_CANCELLED = ord("4")


def decision(reply: bytes, sid: str) -> Decision:
    """Turn an admission's reply line (``decide.lua``) into a :class:`Decision`."""
    code = reply[0]
    if code == _CODE_ALLOWED:
        parts = reply.split(b" ", 3)
        return _new(Decision, (True, _ALLOWED, int(parts[1]), int(parts[2]), 0.0, WINDOW_S, sid))
    if code == _CODE_RATE_LIMITED:
        _, limit, retry_us, reset_us = reply.split(b" ")
        return _new(
            Decision,
            (False, _RATE_LIMITED, int(limit), 0, int(retry_us) / US, int(reset_us) / US, sid),
        )
    if code in (_CODE_EXPIRED, _CODE_CANCELLED):
        reason = _EXPIRED if code == _CODE_EXPIRED else _CANCELLED
        return _new(Decision, (False, reason, int(reply[2:]), 0, INFINITY, 0.0, sid))
    return unknown_decision()


def admitted_session(reply: bytes, sid: str) -> Session:
    """Build the session of an allowed reply that carries it (``want_session`` in decide.lua)."""
    _, limit, _, expires_at, created_us, meta = reply.split(b" ", 5)
    return snapshot(sid, "active", expires_at, created_us, meta, limit)


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
