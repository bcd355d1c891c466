"""Script replies turned into the package's values, and a session's stored JSON (``meta``)."""

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
    SessionSpec,
    SessionStatus,
    Workflow,
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


def meta_json(user: str, spec: SessionSpec) -> str:
    """Return the JSON a session's hash keeps as ``m``: its user and what :func:`snapshot` needs
    to rebuild its spec (the lifetime is ``expires_at`` less the creation's whole second).

    Raises:
        TypeError, ValueError: the attributes (or the workflow's variables) are not JSON.
    """
    upload = spec.file_upload
    history = spec.history
    workflow = spec.workflow
    return json.dumps(
        {
            "user": user,
            "fu": [upload.enabled, upload.max_file_size, upload.max_files],
            "h": [history.enabled, history.recent_threads],
            "a": spec.attributes or {},
            "w": None
            if workflow is None
            else [
                workflow.id,
                workflow.version,
                None if workflow.state_variables is None else dict(workflow.state_variables),
                workflow.tracing_enabled,
            ],
            "t": spec.automatic_thread_titling,
        },
        separators=(",", ":"),
    )


def snapshot(
    sid: str, status: bytes | str, expires_at: Any, created_us: Any, meta: bytes | str, limit: Any
) -> Session:
    """Build a :class:`Session` from the fields the scripts return (never with its secret)."""
    data = json.loads(meta)
    expires = int(expires_at)
    created = int(created_us)
    attributes = data["a"]
    workflow = data.get("w")
    titling = data.get("t")
    if titling is None:
        # Written by ratekeeper before SessionSpec, whose service kept the workflow and the
        # titling in the attributes. Such sessions are gone an hour (the retention) after an
        # upgrade; this branch can go a release later.
        titling = attributes.pop("automatic_thread_titling", True)
        old = attributes.pop("workflow", None)
        if old is not None:
            workflow = [
                old["id"],
                old["version"],
                old["state_variables"],
                old["tracing"]["enabled"],
            ]
    return Session(
        sid,
        data["user"],
        SessionStatus(text(status)),
        expires,
        created / US,
        SessionSpec(
            expires - created // US,
            int(limit),
            FileUploadLimits(*data["fu"]),
            HistoryLimits(*data["h"]),
            None if workflow is None else Workflow(*workflow),
            titling,
            attributes,
        ),
    )
