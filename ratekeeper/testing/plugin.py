"""The pytest plugin of :mod:`ratekeeper.testing`, registered through the ``pytest11`` entry
point, so it is active wherever ratekeeper is installed.

It only defines fixtures: no command-line options, no hooks, and nothing is imported or started
until a test asks for one of them.

* ``ratekeeper_server``: a live service of the test's own (:func:`ratekeeper.testing.serve`).
* ``ratekeeper_shared_server``: one service for the whole test session; its sessions, clock,
  faults and request log are shared by every test that uses it (call ``server.reset()`` to
  clear faults and log; use a new user per test).
* ``ratekeeper_gate``: a :class:`ratekeeper.testing.ManualGate`, for library code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._live_server import LiveServer
    from ._manual_gate import ManualGate

__all__ = ("ratekeeper_gate", "ratekeeper_server", "ratekeeper_shared_server")


@pytest.fixture
def ratekeeper_server() -> Iterator[LiveServer]:
    """A live ratekeeper service on a manual clock, for this test only."""
    from . import serve

    with serve() as server:
        yield server


@pytest.fixture(scope="session")
def ratekeeper_shared_server() -> Iterator[LiveServer]:
    """A live ratekeeper service on a manual clock, shared by the whole test session."""
    from . import serve

    with serve() as server:
        yield server


@pytest.fixture
def ratekeeper_gate() -> ManualGate:
    """A gate over an in-memory engine on a manual clock (``ratekeeper_gate.clock``).

    Not started: admission needs no sweeper; ``async with ratekeeper_gate:`` runs it. Works
    under any async test runner (anyio, pytest-asyncio, trio).
    """
    from . import ManualGate

    return ManualGate()
