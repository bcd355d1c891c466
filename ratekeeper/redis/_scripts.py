"""The Lua scripts of the Redis backend, loaded from package data, and the runner that calls them.

Each script is ``common.lua`` followed by its own file (the admission scripts have the decision
rule, ``decide.lua``, in between). Scripts run by ``EVALSHA`` (one round
trip); a ``NOSCRIPT`` reply (Redis restarted, failed over, or ``SCRIPT FLUSH``) is answered by
sending the source with ``EVAL`` once, which also caches it on that node again, so reloading is
transparent and costs one extra round trip on the first call that finds the cache empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING, Any, TypeAlias

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from .._errors import BackendError

if TYPE_CHECKING:
    from ._circuit import Circuit

#: The clients the backend runs on: a server, or a cluster.
Client: TypeAlias = Redis | RedisCluster

SCRIPT_NAMES = (
    "ack",
    "admit",
    "admit_many",
    "cancel",
    "claim",
    "count",
    "create",
    "flip",
    "index_add",
    "index_end",
    "next",
    "peek",
    "read",
    "upload",
)

# Pieces a script needs between common.lua and its own text.
_PRELUDES = {"admit": ("decide",), "admit_many": ("decide",)}

#: What the driver raises; everything else is a bug and is not wrapped.
DRIVER_ERRORS = (RedisError, RedisClusterException, OSError)


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


#: One pipelined call: a script with its keys and arguments, or ``None`` and a plain command.
Call: TypeAlias = tuple[Script | None, Sequence[str], Sequence[Any]]


def load_scripts() -> dict[str, Script]:
    """Read every script from the package and return them by name."""
    here = files(__package__)
    common = here.joinpath("common.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in SCRIPT_NAMES:
        pieces = [common]
        pieces += [
            here.joinpath(f"{piece}.lua").read_text(encoding="utf-8")
            for piece in _PRELUDES.get(name, ())
        ]
        pieces.append(here.joinpath(f"{name}.lua").read_text(encoding="utf-8"))
        source = "\n".join(pieces)
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        scripts[name] = Script(name, source, sha)
    return scripts


def wrap(exc: BaseException) -> BackendError:
    """Return the :class:`BackendError` for a driver failure (raise it ``from exc``)."""
    # The driver's message names the server and the failure, never a key's value: no secrets.
    return BackendError(f"Redis backend failed: {type(exc).__name__}: {exc}")


class ScriptRunner:
    """Runs the backend's scripts on one client, reloading them and wrapping every failure.

    Args:
        client: a ``redis.asyncio`` server or cluster client.

    Holds no state of its own beyond the client; use it from the client's event loop.
    """

    __slots__ = ("circuit", "client", "scripts")

    def __init__(self, client: Client, circuit: Circuit) -> None:
        self.client = client
        self.circuit = circuit
        self.scripts = load_scripts()

    async def eval(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script: one round trip (two after Redis lost its script cache)."""
        client = self.client
        circuit = self.circuit
        if circuit.is_open:
            raise circuit.reject()
        try:
            try:
                reply = await client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:
                # Redis lost its script cache: EVAL sends the source and caches it again.
                reply = await client.execute_command("EVAL", script.source, len(keys), *keys, *args)
        except DRIVER_ERRORS as exc:
            circuit.failed(exc)
            raise wrap(exc) from exc
        circuit.succeeded()
        return reply

    async def eval_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run scripts (or plain commands) in one pipelined round trip; results in order."""
        if not calls:
            return []
        circuit = self.circuit
        if circuit.is_open:
            raise circuit.reject()
        try:
            pipe = self.client.pipeline(transaction=False)
            for script, keys, args in calls:
                if script is None:
                    pipe.execute_command(*keys, *args)
                else:
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        except DRIVER_ERRORS as exc:
            circuit.failed(exc)
            raise wrap(exc) from exc
        circuit.succeeded()
        out = []
        for (script, keys, args), result in zip(calls, results, strict=True):
            if script is not None and isinstance(result, NoScriptError):
                result = await self.eval(script, keys, args)
            elif isinstance(result, Exception):
                raise wrap(result) from result
            out.append(result)
        return out
