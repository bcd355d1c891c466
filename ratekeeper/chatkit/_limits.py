"""The session limits that apply to ChatKit protocol requests: the one home of those rules.

* ``file_upload``: ``attachments.create`` is refused when uploads are disabled, when the file
  is larger than ``max_file_size`` MB, or when the session already uploaded ``max_files``
  (counted by the backend's ``reserve_upload``, so every worker sees one count).
* ``history``: ``threads.list`` is refused when history is disabled, and shows only the
  ``recent_threads`` most recent threads otherwise (:func:`recent_window`).
* ``automatic_thread_titling``: a new thread takes its title from its first user message
  (:func:`thread_title`) when enabled, and has none otherwise.

A refusal is a :class:`ChatKitLimitError`: openai-chatkit turns it into an ``error`` event
inside a stream (it is a ``CustomStreamError``), and the protocol endpoint answers a
non-streaming request with its ``status_code`` and OpenAI-shaped :meth:`~ChatKitLimitError.
error_body` before any work is done. Pure functions and values: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from chatkit.errors import CustomStreamError
from chatkit.types import UserMessageItem, UserMessageTagContent, UserMessageTextContent

from .._errors import RatekeeperError
from .._params import BYTES_PER_MB, check_int
from .._ratelimit_headers import error_body, verdict_for
from .._types import Decision, FileUploadLimits, HistoryLimits, Reason, UploadDecision, UploadReason

#: Longest automatic title, in characters (an ellipsis included).
MAX_TITLE_LENGTH = 60
_SESSION_REASONS = frozenset(
    {UploadReason.EXPIRED, UploadReason.CANCELLED, UploadReason.UNKNOWN_SESSION}
)
_SPACES = re.compile(r"\s+")
T = TypeVar("T")


class ChatKitLimitError(CustomStreamError, RatekeeperError):
    """Raised when a ChatKit request breaks one of its session's limits.

    Attributes:
        message: what happened and what to do, shown to the end user (never a secret).
        status_code: the HTTP status a non-streaming request is answered with.
        code: OpenAI-style error code, e.g. ``"max_files_exceeded"``.
        param: the request field at fault (``"params.size"``), or ``None``.
    """

    def __init__(
        self, message: str, *, status_code: int, code: str, param: str | None = None
    ) -> None:
        # CustomStreamError keeps `message` and `allow_retry` but never calls Exception's init.
        super().__init__(message, allow_retry=False)
        self.args = (message,)
        self.status_code = status_code
        self.code = code
        self.param = param

    def error_body(self) -> dict[str, Any]:
        """Return the error in OpenAI's shape, ``{"error": {"message", "type", ...}}``."""
        return error_body(self.message, "invalid_request_error", self.code, self.param)


def history_refusal(history: HistoryLimits) -> ChatKitLimitError | None:
    """Return the refusal of a ``threads.list`` request, or ``None`` when history is enabled."""
    if history.enabled:
        return None
    return ChatKitLimitError(
        "Thread history is disabled for this session (chatkit_configuration.history.enabled "
        "is false), so earlier threads cannot be listed.",
        status_code=403,
        code="history_disabled",
    )


def check_upload_size(size_bytes: int) -> None:
    """Raise :class:`~ratekeeper.InvalidParameter` for a negative declared size."""
    check_int(size_bytes, "params.size", minimum=0)


def upload_refusal(
    decision: UploadDecision, size_bytes: int, limits: FileUploadLimits
) -> ChatKitLimitError | None:
    """Translate the backend's :class:`~ratekeeper.UploadDecision` into a refusal.

    Returns ``None`` when the upload was allowed (and counted).
    """
    reason = decision.reason
    if decision.allowed:
        return None
    if reason == "uploads_disabled":
        return ChatKitLimitError(
            "File uploads are disabled for this session "
            "(chatkit_configuration.file_upload.enabled is false).",
            status_code=403,
            code="file_upload_disabled",
        )
    if reason == "file_too_large":
        # Bytes too: just over the limit, both sides round to the same megabytes.
        size_mb = size_bytes / BYTES_PER_MB
        max_bytes = limits.max_file_size * BYTES_PER_MB
        return ChatKitLimitError(
            f"File too large: {size_bytes} bytes ({size_mb:.2f} MB) is more than this "
            f"session's limit of {limits.max_file_size} MB ({max_bytes} bytes) per file "
            "(chatkit_configuration.file_upload.max_file_size).",
            status_code=413,
            code="file_too_large",
            param="params.size",
        )
    if reason == "too_many_files":
        return ChatKitLimitError(
            f"This session has already uploaded its {decision.max_files} files "
            f"(chatkit_configuration.file_upload.max_files); no more can be attached.",
            status_code=403,
            code="max_files_exceeded",
        )
    if reason in _SESSION_REASONS:
        # The session ended between admission and the upload: say so exactly as the gate does.
        verdict = verdict_for(Decision(False, Reason(reason), 0, 0, math.inf, 0.0))
        error = verdict.error["error"] if verdict.error is not None else {}
        return ChatKitLimitError(
            str(error.get("message", reason)),
            status_code=verdict.status_code,
            code=str(error.get("code", reason)),
        )
    return ChatKitLimitError(
        f"The upload was refused ({reason}).", status_code=403, code="upload_refused"
    )


def recent_window(newest_first: Sequence[T], recent_threads: int | None) -> list[T]:
    """Return the threads ``history.recent_threads`` lets a session see, newest first."""
    if recent_threads is None:
        return list(newest_first)
    return list(newest_first[:recent_threads])


def page_after(
    entries: Sequence[T],
    *,
    after: str | None,
    limit: int,
    id_of: Callable[[T], str],
) -> tuple[list[T], bool]:
    """Return the page of ``entries`` (already in the listing's order) after the cursor.

    Returns ``(page, has_more)``. An ``after`` naming no entry yields an empty page: the
    entry it named has left the visible window (deleted, or pushed out by newer threads).
    """
    start = 0
    if after is not None:
        for index, entry in enumerate(entries):
            if id_of(entry) == after:
                start = index + 1
                break
        else:
            return [], False
    page = list(entries[start : start + limit])
    return page, start + limit < len(entries)


def thread_title(item: UserMessageItem) -> str | None:
    """Return the automatic title for a thread whose first user message is ``item``.

    The message's text (tags by their label), whitespace collapsed, cut at a word boundary to
    at most :data:`MAX_TITLE_LENGTH` characters; failing any text, the first attachment's
    name; ``None`` for a message with neither.
    """
    parts = []
    for part in item.content:
        if isinstance(part, UserMessageTextContent | UserMessageTagContent):
            parts.append(part.text)
    text = _SPACES.sub(" ", " ".join(parts)).strip()
    if not text and item.attachments:
        text = _SPACES.sub(" ", item.attachments[0].name).strip()
    if not text:
        return None
    if len(text) <= MAX_TITLE_LENGTH:
        return text
    cut = text[: MAX_TITLE_LENGTH - 1]
    if text[len(cut)] != " ":  # the cut fell inside a word: back off to the word's start
        space = cut.rfind(" ")
        if space >= MAX_TITLE_LENGTH // 2:
            cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"
