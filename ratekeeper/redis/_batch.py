"""Automatic pipelining of concurrent admissions: many ``EVALSHA`` commands per write.

Each admission is still exactly one ``EVALSHA`` — one atomic script, one command — but when
several tasks admit at once, their commands travel together: one write, one read, one pooled
connection, one event-loop wake-up for the whole batch. Nothing ever waits for company: when no
admission is in flight, a call is sent at once; calls arriving while one is in flight queue up
and leave together as soon as it is answered (Nagle without the timer). redis-py's per-command
overhead dominates a Redis admission in Python, so this doubles a busy gateway's decisions/s
(``benchmarks/redis_bench.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BackendError
from ._scripts import DRIVER_ERRORS, Script, ScriptRunner, wrap

# Transport failures: every call queued behind one would meet the same one, a timeout later.
_TRANSPORT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

__all__ = ("AdmitBatcher",)


class AdmitBatcher:
    """Queues one script's calls and sends whatever is queued as one pipeline.

    Args:
        runner: runs the script (and reloads it after ``NOSCRIPT``).
        script: the script every call runs.
        max_batch: most commands in one pipeline.

    asyncio only, one event loop; not thread-safe.
    """

    __slots__ = ("_busy", "_flusher", "_max_batch", "_queue", "_runner", "_script")

    def __init__(self, runner: ScriptRunner, script: Script, max_batch: int = 128) -> None:
        self._runner = runner
        self._script = script
        self._max_batch = max_batch
        self._queue: list[tuple[Sequence[Any], asyncio.Future[Any]]] = []
        # The task sending queued batches; kept referenced so it is not collected mid-run.
        self._flusher: asyncio.Task[None] | None = None
        # Whether a command of this script is in flight (sent directly or by the flusher).
        self._busy = False

    async def call(self, args: Sequence[Any]) -> Any:
        """Run the script with ``args`` (``numkeys, keys..., argv...``) and return its reply.

        Raises:
            BackendError: Redis failed.
        """
        if not self._busy:
            # Nothing in flight: send at once, no batching delay. Calls arriving meanwhile
            # queue up and leave together when this one is answered.
            self._busy = True
            try:
                return await self._runner.eval(
                    self._script, args[1 : 1 + args[0]], args[1 + args[0] :]
                )
            except BackendError as exc:
                if isinstance(exc.__cause__, _TRANSPORT_ERRORS):
                    self._fail_queued(exc.__cause__)
                raise
            finally:
                self._busy = False
                if self._queue:
                    self._start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        return await future

    def _start(self) -> None:
        self._busy = True
        self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._send(batch)
        except BaseException:
            # Cancelled (the loop is closing): no queued caller may wait forever.
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
            raise
        finally:
            self._flusher = None
            self._busy = False

    async def _send(self, batch: list[tuple[Sequence[Any], asyncio.Future[Any]]]) -> None:
        sha = self._script.sha
        try:
            try:
                if len(batch) == 1:
                    args = batch[0][0]
                    results = [await self._runner.client.execute_command("EVALSHA", sha, *args)]
                else:
                    pipe = self._runner.client.pipeline(transaction=False)
                    for args, _ in batch:
                        pipe.execute_command("EVALSHA", sha, *args)
                    results = await pipe.execute(raise_on_error=False)
            except NoScriptError as exc:
                results = [exc]
        except DRIVER_ERRORS as exc:
            results = [exc] * len(batch)
            if isinstance(exc, _TRANSPORT_ERRORS):
                self._fail_queued(exc)
        except Exception as exc:  # a bug: hand it to every caller rather than hang them
            results = [exc] * len(batch)
        except BaseException:
            # Cancelled mid-send (the loop is closing): no caller may wait forever.
            for _, future in batch:
                future.cancel()
            raise
        for (args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError):
                result = await self._reload(args)
            if future.done():  # the caller was cancelled meanwhile
                continue
            if isinstance(result, BaseException):
                if isinstance(result, DRIVER_ERRORS):
                    error = wrap(result)
                    error.__cause__ = result
                    result = error
                future.set_exception(result)
            else:
                future.set_result(result)

    def _fail_queued(self, cause: BaseException) -> None:
        """Fail every queued call with ``cause``, wrapped, at once."""
        # While Redis is unreachable or hung, waiting in line for one socket timeout after
        # another would make a caller wait far longer than one timeout.
        queued, self._queue = self._queue, []
        for _, future in queued:
            if not future.done():
                error = wrap(cause)
                error.__cause__ = cause
                future.set_exception(error)

    async def _reload(self, args: Sequence[Any]) -> Any:
        """Run one call through the runner, which sends the script's source after NOSCRIPT."""
        numkeys = args[0]
        try:
            return await self._runner.eval(self._script, args[1 : 1 + numkeys], args[1 + numkeys :])
        except Exception as exc:
            return exc
