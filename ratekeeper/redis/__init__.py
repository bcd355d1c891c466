"""The Redis (and Redis Cluster) backend: ``RedisBackend``, the engine's semantics in Lua.

Needs the ``redis`` extra (``pip install 'ratekeeper[redis]'``) and an asyncio event loop.
"""

from __future__ import annotations

from .._moved import register_moved as _register_moved
from .._secrets import session_id_for
from ._redis_backend import RedisBackend

__all__ = ("RedisBackend", "session_id_for")

# The module paths of before 0.1.0, for one release (see ratekeeper._moved).
_register_moved(__name__, {"backend": "_redis_backend", "keys": "_keys"})
