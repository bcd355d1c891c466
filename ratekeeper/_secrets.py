"""Identifiers and client secrets: the one home of how they are made and what is kept of them.

A client secret is ``ek_`` and 256 bits from :mod:`secrets` (base64url). The session id is
derived from it, the same way in every backend::

    session_id = "cksess_" + BLAKE2b-128(secret, person="ratekeeper.sid")  (hex)

so a request carrying only its secret names its session: the in-process engine finds it with
one dictionary lookup, and the Redis backend with one script on one cluster slot.

Server-side only hashes of the secret exist. The in-process engine keeps nothing else: the id
*is* its key. Why the id may be public (it is in URLs, logs and responses) while the secret
stays secret:

* the id is a one-way function of the secret: recovering a secret, or forging any string that
  maps to a live session's id, is a preimage on 128-bit BLAKE2b, about 2**128 hashes per
  target and 2**108 against a million live sessions at once;
* BLAKE2b is personalised (``person``), so the id is unrelated to any other hash of the same
  secret, such as the SHA-256 :func:`secret_digest` the Redis backend also stores;
* 128 bits is the floor the design sets for a secret ("at least 128 bits"), and the secret
  itself keeps its 256 bits: the id is derived from all of them.

A dictionary lookup on an id leaks no timing that helps an attacker: the id of a guess is a
hash the attacker cannot steer, so which of its bytes match a stored one says nothing.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import secrets

_sha256 = hashlib.sha256
# What secrets.token_bytes returns (it is os.urandom, the OS's CSPRNG), without its frame.
_token_bytes = os.urandom
_b2a_base64 = binascii.b2a_base64
# base64 -> base64url (RFC 4648 section 5), as secrets.token_urlsafe spells it.
_URLSAFE = bytes.maketrans(b"+/", b"-_")
# Copying a hash object that already holds the parameters is about a third cheaper than
# constructing one with keyword arguments on every call.
_SESSION_ID_HASH = hashlib.blake2b(digest_size=16, person=b"ratekeeper.sid")


def new_id(prefix: str) -> str:
    """Return a fresh random identifier such as ``thr_…`` (128 bits, hex)."""
    return f"{prefix}_{secrets.token_hex(16)}"


def new_client_secret() -> str:
    """Return a fresh client secret, ``ek_`` followed by 256 random bits (base64url)."""
    # secrets.token_urlsafe(32) spelled out: the same 43 characters, a third of the cost.
    encoded = _b2a_base64(_token_bytes(32), newline=False).translate(_URLSAFE)
    return "ek_" + encoded[:43].decode("ascii")


def secret_digest(secret: str) -> bytes:
    """Return the SHA-256 digest of a secret: the one home of how a secret is hashed.

    What the Redis backend keeps of a client secret, what :class:`~ratekeeper.server._auth.
    ApiKeys` keeps of an API key, and what the conversation store keeps of an upload token.
    """
    # "surrogatepass": a lone surrogate (possible in a JSON string, or in a key read from the
    # environment) must hash to an unknown secret, not raise; every other string hashes as
    # its plain UTF-8.
    return _sha256(secret.encode("utf-8", "surrogatepass")).digest()


def session_id_for(client_secret: str) -> str:
    """Return the id of the session a secret belongs to (whether or not it exists)."""
    hasher = _SESSION_ID_HASH.copy()
    hasher.update(client_secret.encode("utf-8", "surrogatepass"))  # never raises
    return "cksess_" + hasher.hexdigest()
