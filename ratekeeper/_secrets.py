"""Identifiers and client secrets.

Secrets carry 256 bits from :mod:`secrets`. Server-side only their SHA-256 digest is kept, so a
memory dump or a leaked Redis snapshot yields nothing a client could present; lookups stay O(1)
because the digest is the dictionary key. A dictionary lookup on a digest leaks no timing about
the secret itself: an attacker cannot steer which digest bytes match.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ("new_client_secret", "new_id", "secret_digest")

_sha256 = hashlib.sha256


def new_id(prefix: str) -> str:
    """Return a fresh random identifier such as ``cksess_…`` (128 bits, hex)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def new_client_secret() -> str:
    """Return a fresh client secret, ``ek_`` followed by 256 random bits (base64url)."""
    return "ek_" + secrets.token_urlsafe(32)


def secret_digest(client_secret: str) -> bytes:
    """Return the SHA-256 digest under which a secret is stored and looked up."""
    # "surrogatepass": a lone surrogate (possible in a JSON string) must hash to an unknown
    # secret, not raise; for every valid secret the bytes are plain UTF-8.
    return _sha256(client_secret.encode("utf-8", "surrogatepass")).digest()
