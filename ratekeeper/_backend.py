"""The async backend protocol the gate and the service use, and its in-memory implementation.

The protocol is deliberately small: create, admit, look up, reserve an upload, cancel, get,
sweep, and say when the next sweep is due. :class:`MemoryBackend` wraps the synchronous
:class:`~ratekeeper.Engine` (no awaits on its hot path); ``ratekeeper.redis`` implements
the same protocol with Lua scripts, so nothing above this layer changes with the backend.
Two optional capabilities, :class:`CircuitBreaking` and :class:`InProcess`, say what more a
backend offers; the gate checks them once, never a backend's type.
"""

from __future__ import annotations

from typing import Protocol, Unpack, runtime_checkable

from ._engine import Engine
from ._types import (
    Admission,
    Cancellation,
    CircuitStatistics,
    Decision,
    EngineStatistics,
    Expired,
    Session,
    SessionOptions,
    SessionSpec,
    UploadDecision,
    resolve_spec,
)


@runtime_checkable
class CircuitBreaking(Protocol):
    """A capability: the backend has a circuit breaker, whose state the gate exports."""

    def circuit_statistics(self) -> CircuitStatistics:
        """Return the circuit's state and counts (no I/O)."""
        ...


@runtime_checkable
class InProcess(Protocol):
    """A capability: the backend keeps every session in an :class:`Engine` in this process.

    Reading that engine costs no I/O, so the gate reads its statistics live at every scrape
    instead of polling the backend for them, and, when the backend's ``sweep`` is
    :class:`MemoryBackend`'s, its sweeper flips the engine directly (flipping first, and
    building :class:`~ratekeeper.Expired` values only for callbacks). A backend whose
    sessions live elsewhere (shared with other processes) must not have it.
    """

    @property
    def in_process_engine(self) -> Engine:
        """The engine holding this backend's sessions."""
        ...


@runtime_checkable
class Backend(Protocol):
    """Where session state lives. Every method may raise ``BackendError`` on I/O failure."""

    async def create_session(
        self, user: str, spec: SessionSpec | None = None, **options: Unpack[SessionOptions]
    ) -> Session:
        """Create a session with ``spec`` (or its fields as keywords); see
        :meth:`Engine.create_session`. A spec is not validated again."""
        ...

    async def admit(self, client_secret: str) -> Decision:
        """Decide on, and count if admitted, one request; see :meth:`Engine.admit`."""
        ...

    async def admit_session(self, client_secret: str) -> Admission:
        """Like :meth:`admit`, and return the admitted session too, in the same operation.

        For callers that need the session's limits and attributes to serve the request (the
        ChatKit endpoint): on Redis this is still one round trip.
        """
        ...

    async def lookup(self, client_secret: str) -> Session | None:
        """Return the session behind a secret without counting a request."""
        ...

    async def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        """Count one upload against the session's ``file_upload`` limits if it fits."""
        ...

    async def cancel(self, session_id: str) -> Cancellation:
        """Cancel a session (idempotent), saying if this call did; raises ``SessionNotFound``."""
        ...

    async def get(self, session_id: str) -> Session:
        """Return a session as of now; raises ``SessionNotFound``."""
        ...

    async def sweep(self, max_items: int) -> list[Expired]:
        """Flip due sessions to ``expired`` and return at most ``max_items`` of them; each is
        returned once. (The in-process engine flips every due session at once and returns
        the rest from the next calls, each with the lag to its flip.)"""
        ...

    async def time_to_next_deadline(self) -> float | None:
        """Seconds until :meth:`sweep` next has work (<= 0: now), ``None`` if never."""
        ...

    async def statistics(self) -> EngineStatistics:
        """Counts of active and retained sessions (as this backend can know them)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the backend is unusable afterwards."""
        ...


class MemoryBackend:
    """The embedded default: an :class:`Engine` behind the async protocol.

    Args:
        engine: the engine to wrap; a new one on the system clock when omitted.

    Not thread-safe, like the engine: use it from one event loop.
    """

    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine if engine is not None else Engine()

    @property
    def in_process_engine(self) -> Engine:
        """The wrapped engine (the :class:`InProcess` capability)."""
        return self.engine

    async def create_session(
        self, user: str, spec: SessionSpec | None = None, **options: Unpack[SessionOptions]
    ) -> Session:
        """Create a session; see :meth:`Engine.create_session`."""
        return self.engine.create_session(user, resolve_spec(spec, options))

    async def admit(self, client_secret: str) -> Decision:
        """Decide on one request; see :meth:`Engine.admit`."""
        return self.engine.admit(client_secret)

    async def admit_session(self, client_secret: str) -> Admission:
        """Decide on one request and return the admitted session; see :meth:`Engine.admit`."""
        engine = self.engine
        decision = engine.admit(client_secret)
        # No await in between: the session read is the state the decision saw.
        session = engine.lookup(client_secret) if decision.allowed else None
        return Admission(decision, session)

    async def lookup(self, client_secret: str) -> Session | None:
        """Return the session behind a secret; see :meth:`Engine.lookup`."""
        return self.engine.lookup(client_secret)

    async def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        """Count one upload; see :meth:`Engine.reserve_upload`."""
        return self.engine.reserve_upload(session_id, size_bytes)

    async def cancel(self, session_id: str) -> Cancellation:
        """Cancel a session, saying if this call did; see :meth:`Engine.cancel_reporting`."""
        return self.engine.cancel_reporting(session_id)

    async def get(self, session_id: str) -> Session:
        """Return a session; see :meth:`Engine.get`."""
        return self.engine.get(session_id)

    async def sweep(self, max_items: int) -> list[Expired]:
        """Flip due sessions; see :meth:`Engine.sweep`."""
        return self.engine.sweep(max_items)

    async def time_to_next_deadline(self) -> float | None:
        """Seconds until the engine's next deadline, from its own clock."""
        deadline = self.engine.next_deadline()
        if deadline is None:
            return None
        return deadline - self.engine.clock.monotonic()

    async def statistics(self) -> EngineStatistics:
        """Return the engine's statistics."""
        return self.engine.statistics()

    async def aclose(self) -> None:
        """Nothing to release in memory."""

    def __repr__(self) -> str:
        return f"MemoryBackend({self.engine!r})"
