"""The limiters compared by ``compare_peers.py``, each behind the same small adapter.

A contender is built for one workload: ``build(keys_n, limit)`` returns an :class:`Instance`
whose ``admit(key)`` decides one request on ``key`` (a 46-character client-secret-like
string), and whose ``keys`` are the strings to call it with. Every contender is configured to
``limit`` requests per 60 s per key; only the exact ones (ratekeeper, the bare loops, limits'
moving window, pyrate-limiter's log bucket) promise the same decisions, and
``compare_peers.py`` checks that they make them.

Each peer is called through its documented public API, the way its README shows it:

* ``limits`` 5.x: ``MovingWindowRateLimiter`` / ``SlidingWindowCounterRateLimiter`` over
  ``MemoryStorage``, ``hit(RateLimitItemPerMinute(limit), key)``;
* ``pyrate-limiter`` 4.x: a ``Limiter`` over a per-key ``BucketFactory`` that creates one
  ``InMemoryBucket([Rate(limit, Duration.MINUTE)])`` per key with ``self.create`` (the README's
  "Custom routing with BucketFactory"), ``try_acquire(key, blocking=False)``;
* ``throttled-py`` 3.x: ``Throttled(using="sliding_window", quota=per_min(limit),
  store=MemoryStore(...))``, ``limit(key)`` (non-blocking by default). Its memory store is an
  LRU holding 1024 keys by default; it is sized to hold every key of the workload.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ("CONTENDERS", "EXACT", "Instance", "make_keys")

WINDOW_S = 60.0


@dataclass
class Instance:
    """One contender, built for one workload."""

    admit: Callable[[str], Any]
    allowed: Callable[[Any], bool]
    keys: list[str]
    close: Callable[[], None] = field(default=lambda: None)


def make_keys(n: int, seed: int = 1) -> list[str]:
    """Return ``n`` distinct strings shaped like ratekeeper's client secrets (``ek_`` + 43)."""
    rng = random.Random(seed)
    return [
        "ek_" + base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode() for _ in range(n)
    ]


def _truth(result: Any) -> bool:
    return bool(result)


# -- ratekeeper ----------------------------------------------------------------------------


def _ratekeeper(keys_n: int, limit: int) -> Instance:
    from ratekeeper import Engine

    engine = Engine(max_sessions=max(keys_n, 1))
    # The engine mints the secrets; they have the same shape and length as make_keys().
    keys = [
        engine.create_session(
            "bench", expires_after_s=600, max_requests_per_1_minute=limit
        ).client_secret
        for _ in range(keys_n)
    ]
    return Instance(engine.admit, _allowed_decision, [k for k in keys if k is not None])


def _allowed_decision(decision: Any) -> bool:
    return bool(decision.allowed)


# -- the pure-Python floor -------------------------------------------------------------------


def _bare(keys_n: int, limit: int) -> Instance:
    """A dict of ring buffers: the least an exact sliding window can do in Python.

    ``ring[0]`` is the slot of the oldest of the last ``limit`` admissions; a request is
    admitted when that one is at least 60 s old. No sessions, no expiry, no decision object.
    """
    rings: dict[str, list[Any]] = {}
    monotonic = time.monotonic
    first: list[Any] = [1, *[-math.inf] * limit]

    def admit(key: str) -> bool:
        now = monotonic()
        ring = rings.get(key)
        if ring is None:
            ring = rings[key] = first.copy()
        i = ring[0]
        if now - ring[i] < WINDOW_S:
            return False
        ring[i] = now
        ring[0] = i + 1 if i < limit else 1
        return True

    return Instance(admit, _truth, make_keys(keys_n))


def _bare_sha256(keys_n: int, limit: int) -> Instance:
    """The bare loop, keyed like ratekeeper: by the SHA-256 digest of the secret."""
    rings: dict[bytes, list[Any]] = {}
    monotonic = time.monotonic
    sha256 = hashlib.sha256
    first: list[Any] = [1, *[-math.inf] * limit]

    def admit(key: str) -> bool:
        now = monotonic()
        digest = sha256(key.encode()).digest()
        ring = rings.get(digest)
        if ring is None:
            ring = rings[digest] = first.copy()
        i = ring[0]
        if now - ring[i] < WINDOW_S:
            return False
        ring[i] = now
        ring[0] = i + 1 if i < limit else 1
        return True

    return Instance(admit, _truth, make_keys(keys_n))


# -- peers ---------------------------------------------------------------------------------


def _limits(strategy: str) -> Callable[[int, int], Instance]:
    def build(keys_n: int, limit: int) -> Instance:
        from limits import RateLimitItemPerMinute
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

        storage = MemoryStorage()
        cls = MovingWindowRateLimiter if strategy == "moving" else SlidingWindowCounterRateLimiter
        limiter = cls(storage)
        item = RateLimitItemPerMinute(limit)
        hit = limiter.hit

        def admit(key: str) -> bool:
            return hit(item, key)

        def close() -> None:
            storage.reset()
            storage.timer.cancel()

        return Instance(admit, _truth, make_keys(keys_n), close)

    return build


def _pyrate(keys_n: int, limit: int) -> Instance:
    from pyrate_limiter import (
        AbstractBucket,
        BucketFactory,
        Duration,
        InMemoryBucket,
        Limiter,
        MonotonicClock,
        Rate,
        RateItem,
    )

    class PerKeyFactory(BucketFactory):
        """One in-memory log bucket per key, created on first use (pyrate's README)."""

        def __init__(self) -> None:
            self.clock = MonotonicClock()
            self.rates = [Rate(limit, Duration.MINUTE)]
            self.buckets: dict[str, AbstractBucket] = {}

        def wrap_item(self, name: str, weight: int = 1) -> RateItem:
            return RateItem(name, self.clock.now(), weight=weight)

        def get(self, item: RateItem) -> AbstractBucket:
            bucket = self.buckets.get(item.name)
            if bucket is None:
                bucket = self.buckets[item.name] = self.create(InMemoryBucket, self.rates)
            return bucket

    limiter = Limiter(PerKeyFactory())
    try_acquire = limiter.try_acquire

    def admit(key: str) -> Any:
        return try_acquire(key, blocking=False)

    return Instance(admit, _truth, make_keys(keys_n), limiter.close)


def _throttled(keys_n: int, limit: int) -> Instance:
    from throttled import MemoryStore, RateLimiterType, Throttled, per_min

    # Two counters (this window and the previous one) per key, with room to spare.
    store = MemoryStore(options={"MAX_SIZE": 4 * keys_n + 1024})
    throttle = Throttled(
        using=RateLimiterType.SLIDING_WINDOW.value, quota=per_min(limit), store=store
    )
    return Instance(throttle.limit, _allowed_throttled, make_keys(keys_n))


def _allowed_throttled(result: Any) -> bool:
    return not result.limited


#: Name -> builder, in the order tables list them.
CONTENDERS: dict[str, Callable[[int, int], Instance]] = {
    "ratekeeper": _ratekeeper,
    "bare loop": _bare,
    "bare loop + sha256": _bare_sha256,
    "limits moving window": _limits("moving"),
    "limits sliding counter": _limits("counter"),
    "pyrate-limiter": _pyrate,
    "throttled-py sliding": _throttled,
}

#: Contenders that enforce the exact window, so must admit exactly the same requests.
EXACT = ("ratekeeper", "bare loop", "bare loop + sha256", "limits moving window", "pyrate-limiter")

#: The peers the targets are measured against (the bare loops are the floor, not peers).
PEERS = ("limits moving window", "limits sliding counter", "pyrate-limiter", "throttled-py sliding")
