"""ratekeeper: exact per-session rate limits and session expiry, in process or on Redis."""

from __future__ import annotations

from .backend import Backend, MemoryBackend
from .clock import Clock, LoopClock, ManualClock, SystemClock
from .engine import Engine, EngineStatistics, Expired
from .errors import (
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
from .gate import Gate
from .metrics import GateMetrics, metrics_app
from .middleware import RatekeeperMiddleware
from .ratelimit_headers import Verdict
from .types import (
    WINDOW_S,
    Decision,
    FileUploadLimits,
    HistoryLimits,
    Reason,
    Session,
    SessionStatus,
    UploadDecision,
)

__all__ = (
    "WINDOW_S",
    "Backend",
    "BackendError",
    "CapacityExceeded",
    "Clock",
    "Decision",
    "Engine",
    "EngineStatistics",
    "Expired",
    "FileUploadLimits",
    "Gate",
    "GateMetrics",
    "GateRejection",
    "HistoryLimits",
    "InvalidParameter",
    "LoopClock",
    "ManualClock",
    "MemoryBackend",
    "RateLimited",
    "RatekeeperError",
    "RatekeeperMiddleware",
    "Reason",
    "Session",
    "SessionCancelled",
    "SessionExpired",
    "SessionNotFound",
    "SessionStatus",
    "SystemClock",
    "UnknownSession",
    "UploadDecision",
    "Verdict",
    "metrics_app",
)
