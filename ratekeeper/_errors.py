"""Every exception ratekeeper raises, under one root.

Over-the-limit is a value (:class:`~ratekeeper.Decision`) in the core; these exceptions
are for invalid input, exhausted capacity, the gate's ``enter()`` edge and backend failures.
The whole tree, with the facade that exports each class (``tests/test_public_surface.py``
checks this drawing against the classes)::

    RatekeeperError                    ratekeeper
    ├── InvalidParameter               ratekeeper          (also ValueError)
    ├── CapacityExceeded               ratekeeper
    ├── SessionNotFound                ratekeeper          (also LookupError)
    ├── BackendError                   ratekeeper
    │   └── StoreUnavailable           ratekeeper.store
    ├── GateRejection                  ratekeeper
    │   ├── RateLimited                ratekeeper
    │   ├── SessionExpired             ratekeeper
    │   ├── SessionCancelled           ratekeeper
    │   └── UnknownSession             ratekeeper
    ├── ThreadNotFound                 ratekeeper.store    (also LookupError)
    ├── AttachmentNotFound             ratekeeper.store    (also LookupError)
    ├── AttachmentTooLarge             ratekeeper.store    (also ValueError)
    ├── StoreSchemaError               ratekeeper.store
    ├── UnstorableValue                ratekeeper.store    (also ValueError)
    ├── ApiError                       ratekeeper.server
    ├── SettingsError                  ratekeeper.server   (also ValueError)
    ├── ChatKitLimitError              ratekeeper.chatkit  (also chatkit's CustomStreamError)
    ├── UploadRefused                  ratekeeper.chatkit
    └── DevRouteError                  ratekeeper.testing
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._types import Decision


class RatekeeperError(Exception):
    """Raised for any ratekeeper failure; the root of every exception below."""


class InvalidParameter(RatekeeperError, ValueError):
    """Raised when a session parameter is missing, of the wrong type, or out of range.

    Attributes:
        param: the parameter's path, e.g. ``"expires_after.seconds"``.
        code: an OpenAI-style error code, e.g. ``"integer_above_max_value"``.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class CapacityExceeded(RatekeeperError):
    """Raised when creating a session would exceed the configured cap on live sessions."""


class SessionNotFound(RatekeeperError, LookupError):
    """Raised when a session id is unknown (never created, or purged after retention)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"Chatkit Session with id '{session_id}' not found.")
        self.session_id = session_id


class BackendError(RatekeeperError):
    """Raised when the state backend (e.g. Redis) fails; the driver's error is the cause.

    Attributes:
        code: the ``code`` of the 503 every HTTP edge answers it with.
        public_message: that answer's ``message``: never the cause's text, which may name
            hosts, users or keys (the cause is logged by its type only).
    """

    code = "backend_unavailable"
    public_message = "The session store is unavailable. Please retry shortly."


class GateRejection(RatekeeperError):
    """Raised by ``Gate.enter()`` and guarded handlers when a request is not admitted.

    Attributes:
        decision: the :class:`~ratekeeper.Decision` that refused the request.
    """

    reason: str = ""

    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class RateLimited(GateRejection):
    """Raised when the session has used its ``max_requests_per_1_minute``.

    Attributes:
        retry_after: seconds until the next request could be admitted.
    """

    reason = "rate_limited"

    def __init__(
        self, message: str, decision: Decision | None = None, retry_after: float = 0.0
    ) -> None:
        super().__init__(message, decision)
        self.retry_after = retry_after


class SessionExpired(GateRejection):
    """Raised when the session's ``expires_at`` has passed."""

    reason = "expired"


class SessionCancelled(GateRejection):
    """Raised when the session was cancelled."""

    reason = "cancelled"


class UnknownSession(GateRejection):
    """Raised when the client secret matches no session."""

    reason = "unknown_session"
