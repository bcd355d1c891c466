"""Fixtures for the gate's tests: both anyio backends, a manual clock, a failing backend."""

from __future__ import annotations

from typing import Unpack

import pytest

from ratekeeper import BackendError, Engine, Gate, ManualClock
from ratekeeper._backend import MemoryBackend
from ratekeeper._types import (
    Admission,
    Cancellation,
    Decision,
    EngineStatistics,
    Expired,
    Session,
    SessionOptions,
    SessionSpec,
    UploadDecision,
)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test of this directory on asyncio and on trio."""
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine(clock)


@pytest.fixture
def gate(engine: Engine) -> Gate:
    return Gate(engine)


class FailingBackend:
    """A backend whose every operation raises BackendError, as Redis does when unreachable.

    A test double: no real failing backend exists in the gate's area (the Redis backend's own
    fault tests kill a real redis-server). ``failing`` can be switched off to let a wrapped
    engine answer, so tests can fail and recover within one gate.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.failing = True
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.failing:
            try:
                raise ConnectionError("connection refused")
            except ConnectionError as exc:
                raise BackendError("backend unreachable") from exc

    async def create_session(
        self, user: str, spec: SessionSpec | None = None, **options: Unpack[SessionOptions]
    ) -> Session:
        self._maybe_fail()
        return self.engine.create_session(user, spec, **options)

    async def admit(self, client_secret: str) -> Decision:
        self._maybe_fail()
        return self.engine.admit(client_secret)

    async def admit_session(self, client_secret: str) -> Admission:
        self._maybe_fail()
        return await MemoryBackend(self.engine).admit_session(client_secret)

    async def lookup(self, client_secret: str) -> Session | None:
        self._maybe_fail()
        return self.engine.lookup(client_secret)

    async def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        self._maybe_fail()
        return self.engine.reserve_upload(session_id, size_bytes)

    async def cancel(self, session_id: str) -> Cancellation:
        self._maybe_fail()
        return await MemoryBackend(self.engine).cancel(session_id)

    async def get(self, session_id: str) -> Session:
        self._maybe_fail()
        return self.engine.get(session_id)

    async def sweep(self, max_items: int) -> list[Expired]:
        self._maybe_fail()
        return self.engine.sweep(max_items)

    async def time_to_next_deadline(self) -> float | None:
        self._maybe_fail()
        deadline = self.engine.next_deadline()
        return None if deadline is None else deadline - self.engine.clock.monotonic()

    async def statistics(self) -> EngineStatistics:
        self._maybe_fail()
        return self.engine.statistics()

    async def aclose(self) -> None:
        return None


@pytest.fixture
def failing_backend(engine: Engine) -> FailingBackend:
    return FailingBackend(engine)
