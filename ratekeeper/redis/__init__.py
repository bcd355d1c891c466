"""The Redis (and Redis Cluster) backend: ``RedisBackend``, the engine's semantics in Lua.

Needs the ``redis`` extra (``pip install 'ratekeeper[redis]'``) and an asyncio event loop.
"""

from __future__ import annotations

from .backend import RedisBackend
from .keys import session_id_for

__all__ = ("RedisBackend", "session_id_for")
