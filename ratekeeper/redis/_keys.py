"""Key names, session ids and expiry-index shards of the Redis backend: the one home of the layout.

Every key of one session shares the hash tag ``{<session id>}``, so every per-session operation
is one script on one cluster slot. The session id is derived from the client secret::

    session_id = "cksess_" + BLAKE2b-128(secret, person="ratekeeper.sid")

so a request carrying only its secret already names its session's keys: admission is a single
``EVALSHA`` on a single slot, in standalone Redis and in Redis Cluster alike, with no
digest-to-id key that would live on another slot and cost a second round trip. Server-side only
hashes exist: the id (a domain-separated hash, so it says nothing about the stored digest) and
the SHA-256 digest of :func:`ratekeeper._secrets.secret_digest`, which the script compares
before it decides anything. Recovering a secret from either would take a 128-bit (or 256-bit)
preimage.

The expiry index is ``shards`` sorted sets, each under its own hash tag, so a cluster spreads
them over its nodes; a session's shard is a function of its id.
"""

from __future__ import annotations

import re

#: The shape of every session id this backend creates; anything else is unknown without I/O.
SESSION_ID_PATTERN = re.compile(r"cksess_[0-9a-f]{32}")


class KeySpace:
    """Names of every key the backend uses under one prefix.

    Args:
        prefix: the first segment of every key (``"rk"``); distinct prefixes never collide.
        shards: how many sorted sets hold the expiry index.

    Immutable after construction, so safe to share across threads.
    """

    __slots__ = ("prefix", "shards")

    def __init__(self, prefix: str, shards: int) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"key prefix must be non-empty and free of braces, got {prefix!r}")
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards!r}")
        self.prefix = prefix
        self.shards = shards

    def session(self, session_id: str) -> tuple[str, str]:
        """Return the session's hash key and its window list key (one slot)."""
        tagged = f"{self.prefix}:{{{session_id}}}"
        return tagged + ":s", tagged + ":w"

    def shard_of(self, session_id: str) -> int:
        """Return the expiry-index shard that holds ``session_id``."""
        return int(session_id[-8:], 16) % self.shards

    def shard(self, shard: int) -> tuple[str, str, str]:
        """Return the shard's keys (one slot): active deadlines, expired and cancelled purges."""
        tagged = f"{self.prefix}:{{{self.prefix}:x{shard}}}"
        return tagged + ":idx", tagged + ":expired", tagged + ":cancelled"

    def __repr__(self) -> str:
        return f"KeySpace(prefix={self.prefix!r}, shards={self.shards!r})"
