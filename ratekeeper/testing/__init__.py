"""Testing apps built on ratekeeper: a live service on a manual clock, fault injection, fixtures.

* :func:`serve` runs the real service (uvicorn on a free loopback port, in a thread of the
  test's process) in development mode on a :class:`~ratekeeper.ManualClock`, and yields a
  :class:`LiveServer`: ``base_url`` for ``OpenAI(base_url=...)``, ``chatkit_url``,
  ``api_key``, ``clock.advance(seconds)``, ``faults.inject(...)``, ``requests``,
  ``create_session(...)``. :func:`connect` drives a ``ratekeeper serve --dev`` started elsewhere.
* :class:`ManualGate` is a :class:`~ratekeeper.Gate` over an in-memory engine on a manual
  clock, for library code (asyncio and trio).
* The pytest plugin (:mod:`ratekeeper.testing.plugin`, registered through the ``pytest11``
  entry point) gives them as the fixtures ``ratekeeper_server``, ``ratekeeper_shared_server``
  and ``ratekeeper_gate``.

See ``docs/testing.md``. Needs the ``testing`` extra (the service, openai-chatkit, httpx).

The names are imported on first use (PEP 562): the plugin imports this package in every
pytest run where ratekeeper is installed, and a run that uses none of its fixtures should not
pay for uvicorn, Starlette and httpx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._live_server import (
        CreatedSession,
        DevRouteError,
        Faults,
        LiveServer,
        RemoteClock,
        connect,
        serve,
    )
    from ._manual_gate import ManualGate

__all__ = (
    "CreatedSession",
    "DevRouteError",
    "Faults",
    "LiveServer",
    "ManualGate",
    "RemoteClock",
    "connect",
    "serve",
)

_HOMES = {
    "ManualGate": "._manual_gate",
    "CreatedSession": "._live_server",
    "DevRouteError": "._live_server",
    "Faults": "._live_server",
    "LiveServer": "._live_server",
    "RemoteClock": "._live_server",
    "connect": "._live_server",
    "serve": "._live_server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
