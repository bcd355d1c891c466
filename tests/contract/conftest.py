"""Fixtures for the backend contract suite: one set of cases, every backend.

Each backend under test registers an async maker in ``MAKERS``: given a
:class:`~ratekeeper.ManualClock` and engine options, it returns a fresh, empty
:class:`~ratekeeper.Backend` that takes its time from that clock. The cases drive the
backend through a :class:`Harness`, which runs the async calls on an event loop in a blocking
portal; that keeps the cases (and hypothesis' stateful machine) plain synchronous code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from typing import Any, TypeVar

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ratekeeper import Engine, ManualClock, MemoryBackend
from ratekeeper._backend import Backend
from tests.redis.servers import make_redis, make_redis_cluster

T = TypeVar("T")

#: Wall time the manual clock starts at in every contract case: a whole second.
START = 1_700_000_000.0

Maker = Callable[[ManualClock, dict[str, Any]], Awaitable[Backend]]


async def _make_memory(clock: ManualClock, options: dict[str, Any]) -> Backend:
    return MemoryBackend(Engine(clock, **options))


#: Backend name -> async maker. Other backends add themselves here.
MAKERS: dict[str, Maker] = {
    "memory": _make_memory,
    "redis": make_redis,
    "redis-cluster": make_redis_cluster,
}


class Harness:
    """A backend, its manual clock, and a synchronous way to call it."""

    def __init__(self, portal: BlockingPortal, backend: Backend, clock: ManualClock) -> None:
        self.portal = portal
        self.backend = backend
        self.clock = clock

    def call(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run ``await func(*args, **kwargs)`` on the portal's loop and return its result."""

        async def run() -> T:
            return await func(*args, **kwargs)

        return self.portal.call(run)

    def create(self, user: str = "u_123", **kwargs: Any) -> Any:
        """Create a session (see ``Engine.create_session``)."""
        return self.call(self.backend.create_session, user, **kwargs)

    def admit(self, secret: str) -> Any:
        """Admit one request."""
        return self.call(self.backend.admit, secret)

    def advance(self, seconds: float) -> None:
        """Move the manual clock forward."""
        self.clock.advance(seconds)


HarnessFactory = Callable[..., Harness]


@pytest.fixture(params=sorted(MAKERS))
def make_harness(request: pytest.FixtureRequest) -> Iterator[HarnessFactory]:
    """Return a factory of fresh harnesses on the parametrized backend, all closed at teardown."""
    maker = MAKERS[request.param]
    with ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal("asyncio"))
        backends: list[Backend] = []

        def factory(start: float = START, **options: Any) -> Harness:
            clock = ManualClock(start)
            backend = portal.call(maker, clock, options)
            backends.append(backend)
            return Harness(portal, backend, clock)

        try:
            yield factory
        finally:
            for backend in backends:
                portal.call(backend.aclose)


@pytest.fixture
def harness(make_harness: HarnessFactory) -> Harness:
    """A fresh backend on a manual clock starting at ``START``."""
    return make_harness()
