"""The Lua scripts of the Redis backend, loaded from package data, and how they are run.

Each script is ``common.lua`` followed by its own file. Scripts run by ``EVALSHA`` (one round
trip); a ``NOSCRIPT`` reply (Redis restarted, failed over, or ``SCRIPT FLUSH``) is answered by
sending the source with ``EVAL`` once, which also caches it on that node again, so reloading is
transparent and costs one extra round trip on the first call that finds the cache empty.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files

__all__ = ("SCRIPT_NAMES", "Script", "load_scripts")

SCRIPT_NAMES = (
    "ack",
    "admit",
    "cancel",
    "claim",
    "create",
    "flip",
    "index_add",
    "index_end",
    "next",
    "peek",
    "read",
    "upload",
)


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: its name, full source and SHA-1 (the ``EVALSHA`` handle).

    Attributes:
        name: the file name without ``.lua``.
        source: ``common.lua`` followed by the script's own text.
        sha: the hex SHA-1 of ``source``, as Redis computes it.
    """

    name: str
    source: str
    sha: str


def load_scripts() -> dict[str, Script]:
    """Read every script from the package and return them by name."""
    here = files(__package__)
    common = here.joinpath("common.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in SCRIPT_NAMES:
        source = common + "\n" + here.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        scripts[name] = Script(name, source, sha)
    return scripts
