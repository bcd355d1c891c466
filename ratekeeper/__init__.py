"""ratekeeper: exact per-session rate limits and session expiry, in process or on Redis.

The public names are the ones in ``__all__`` here and in the facades ``ratekeeper.server``,
``ratekeeper.chatkit``, ``ratekeeper.redis``, ``ratekeeper.store`` and ``ratekeeper.testing``;
every module whose name starts with an underscore is private and may change in any release.
"""

from __future__ import annotations

from ._backend import Backend, MemoryBackend
from ._clock import Clock, LoopClock, ManualClock, SystemClock
from ._engine import Engine, Flipped
from ._errors import (
    BackendError,
    CapacityExceeded,
    GateRejection,
    InvalidParameter,
    RatekeeperError,
    RateLimited,
    SessionCancelled,
    SessionExpired,
    SessionNotFound,
    UnknownSession,
)
from ._gate import FAIL_OPEN_DECISION, Gate
from ._metrics import GateMetrics, MetricsApp, metrics_app
from ._middleware import RatekeeperMiddleware
from ._moved import register_moved as _register_moved
from ._ratelimit_headers import Verdict, refusal_headers
from ._sweeper import ExpiryCallback
from ._types import (
    WINDOW_S,
    Admission,
    Cancellation,
    CircuitStatistics,
    Decision,
    EngineStatistics,
    Expired,
    FileUploadLimits,
    HistoryLimits,
    Reason,
    Session,
    SessionOptions,
    SessionSpec,
    SessionStatus,
    UploadDecision,
    UploadReason,
    Workflow,
)

__all__ = (
    "FAIL_OPEN_DECISION",
    "WINDOW_S",
    "Admission",
    "Backend",
    "BackendError",
    "Cancellation",
    "CapacityExceeded",
    "CircuitStatistics",
    "Clock",
    "Decision",
    "Engine",
    "EngineStatistics",
    "Expired",
    "ExpiryCallback",
    "FileUploadLimits",
    "Flipped",
    "Gate",
    "GateMetrics",
    "GateRejection",
    "HistoryLimits",
    "InvalidParameter",
    "LoopClock",
    "ManualClock",
    "MemoryBackend",
    "MetricsApp",
    "RateLimited",
    "RatekeeperError",
    "RatekeeperMiddleware",
    "Reason",
    "Session",
    "SessionCancelled",
    "SessionExpired",
    "SessionNotFound",
    "SessionOptions",
    "SessionSpec",
    "SessionStatus",
    "SystemClock",
    "UnknownSession",
    "UploadDecision",
    "UploadReason",
    "Verdict",
    "Workflow",
    "metrics_app",
    "refusal_headers",
)

# The module paths of before 0.1.0, for one release (see ._moved).
_register_moved(
    __name__,
    {
        name: f"_{name}"
        for name in (
            "backend",
            "clock",
            "engine",
            "errors",
            "gate",
            "metrics",
            "middleware",
            "ratelimit_headers",
            "types",
            "window",
        )
    },
)
