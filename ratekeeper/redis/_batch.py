"""Batching of concurrent admissions: one round trip carries every admission waiting for one.

Nothing ever waits for company: when no admission is in flight, a call is sent at once; calls
arriving while one is in flight queue up and leave together as soon as it is answered (Nagle
without the timer). redis-py's per-command cost (packing every argument, parsing every reply
line under its own timeout) dominates a Redis admission in Python, so batches pay it once:

* :class:`ScriptBatcher` (standalone Redis): a batch is **one** ``EVALSHA`` of
  ``admit_many.lua``, packed here from pre-encoded pieces and sent on a pooled connection of
  the client, with one bulk-string reply (every admission's reply on its own line);
* :class:`PipelineBatcher` (Redis Cluster, where a batch's keys live on many slots): one
  ``EVALSHA admit.lua`` per admission, all in one redis-py pipeline.

Either way each admission is one atomic script run and its caller waits for one round trip
(``benchmarks/redis_bench.py``).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, NoScriptError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._errors import BackendError
from ._circuit import Circuit
from ._scripts import DRIVER_ERRORS, Script, ScriptRunner, wrap

# Transport failures: every call queued behind one would meet the same one, a timeout later.
_TRANSPORT_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def bulk(value: bytes) -> bytes:
    """Return ``value`` as a RESP bulk string."""
    return b"$%d\r\n%b\r\n" % (len(value), value)


Request = TypeVar("Request")
Reply = TypeVar("Reply")


class _Batcher(ABC, Generic[Request, Reply]):
    """Sends a call at once when none is in flight, else queues it for the next batch.

    The one state machine of both batchers: a subclass says how one call is sent alone
    (:meth:`_direct`) and how a batch of queued calls is sent and answered (:meth:`_send_batch`).
    """

    __slots__ = ("_busy", "_flusher", "_max_batch", "_queue")

    def __init__(self, max_batch: int) -> None:
        self._max_batch = max_batch
        self._queue: list[tuple[Request, asyncio.Future[Reply]]] = []
        # The task sending queued batches; kept referenced so it is not collected mid-run.
        self._flusher: asyncio.Task[None] | None = None
        # Whether a call is in flight (sent by a caller directly or by the flusher).
        self._busy = False

    async def _submit(self, request: Request) -> Reply:
        if not self._busy:
            # Nothing in flight: send at once, no batching delay. Calls arriving meanwhile
            # queue up and leave together when this one is answered.
            self._busy = True
            try:
                return await self._direct(request)
            except BackendError as exc:
                if isinstance(exc.__cause__, _TRANSPORT_ERRORS):
                    self._fail_queued(exc.__cause__)
                raise
            finally:
                self._busy = False
                if self._queue:
                    self._start()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        return await future

    @abstractmethod
    def _direct(self, request: Request) -> Awaitable[Reply]:
        """Send one call alone (a plain method returning the awaitable: no extra frame)."""

    @abstractmethod
    async def _send_batch(self, batch: list[tuple[Request, asyncio.Future[Reply]]]) -> None:
        """Send ``batch`` and settle every future in it (cancel them if cancelled)."""

    def _start(self) -> None:
        self._busy = True
        self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                await self._send_batch(batch)
        except BaseException:
            # Cancelled (the loop is closing): no queued caller may wait forever.
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()
            raise
        finally:
            self._flusher = None
            self._busy = False

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


class ScriptBatcher(_Batcher[tuple[bytes, bytes], bytes]):
    """Sends whatever admissions are queued as one ``EVALSHA`` of ``admit_many.lua``.

    Args:
        client: a standalone ``redis.asyncio.Redis`` client (its pool, timeouts, TLS and auth
            are used as they are).
        script: ``admit_many``.
        now: returns the ``now`` argument's bytes (``b""``: Redis ``TIME``) for a batch.
        max_batch: most admissions in one command.

    asyncio only, one event loop; not thread-safe.
    """

    __slots__ = ("_circuit", "_client", "_eval_head", "_now", "_sha_head")

    def __init__(
        self,
        client: Redis,
        script: Script,
        now: Callable[[], bytes],
        circuit: Circuit,
        max_batch: int = 256,
    ) -> None:
        self._client = client
        self._circuit = circuit
        self._sha_head = b"$7\r\nEVALSHA\r\n" + bulk(script.sha.encode())
        self._eval_head = b"$4\r\nEVAL\r\n" + bulk(script.source.encode())
        self._now = now
        super().__init__(max_batch)

    def call(self, keys: bytes, args: bytes) -> Coroutine[Any, Any, bytes]:
        """Run one admission (``keys``: its two keys, ``args``: digest and flag, both RESP).

        Returns its reply line (see ``decide.lua``).

        Raises:
            BackendError: Redis failed.
        """
        return self._submit((keys, args))

    def _direct(self, request: tuple[bytes, bytes]) -> Awaitable[bytes]:
        keys, args = request
        return self._round_trip(keys, args, 1)

    async def _send_batch(
        self, batch: list[tuple[tuple[bytes, bytes], asyncio.Future[bytes]]]
    ) -> None:
        keys = b"".join([request[0] for request, _ in batch])
        args = b"".join([request[1] for request, _ in batch])
        try:
            reply = await self._round_trip(keys, args, len(batch))
        except BackendError as exc:
            if isinstance(exc.__cause__, _TRANSPORT_ERRORS):
                self._fail_queued(exc.__cause__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(_copy(exc))
            return
        except BaseException:
            # Cancelled mid-send (the loop is closing): no caller may wait forever.
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), line in zip(batch, reply.split(b"\n"), strict=True):
            if not future.done():  # the caller may have been cancelled meanwhile
                future.set_result(line)

    async def _round_trip(self, keys: bytes, args: bytes, count: int) -> bytes:
        """Send one batch of ``count`` admissions and return the script's reply."""
        circuit = self._circuit
        if circuit.is_open:
            raise circuit.reject()
        numkeys = b"%d" % (2 * count)
        body = b"%b%b%b%b" % (bulk(numkeys), keys, bulk(self._now()), args)
        frame = b"*%d\r\n" % (4 + 4 * count)
        try:
            try:
                reply = await self._send(frame + self._sha_head + body)
            except NoScriptError:
                # Redis lost its script cache: EVAL sends the source and caches it again.
                reply = await self._send(frame + self._eval_head + body)
        except DRIVER_ERRORS as exc:
            circuit.failed(exc)
            raise wrap(exc) from exc
        circuit.succeeded()
        return bytes(reply)

    async def _send(self, packed: bytes) -> Any:
        pool = self._client.connection_pool
        # A pooled connection may be stale (Redis restarted): one retry on a connection error,
        # as the client's own commands do; never after a timeout (it may have counted).
        for attempt in (1, 2):
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.send_packed_command(packed, check_health=False)
                return await connection.read_response(disable_decoding=True)
            except RedisConnectionError as exc:
                await connection.disconnect()
                if attempt == 2 or isinstance(exc, BusyLoadingError):
                    raise
            except BaseException:
                # Timed out or cancelled with the reply unread: the connection is unusable.
                await connection.disconnect()
                raise
            finally:
                await pool.release(connection)
        raise AssertionError("unreachable")  # pragma: no cover


def _copy(exc: BackendError) -> BackendError:
    """A fresh exception per caller: one instance raised in many tasks would share tracebacks."""
    error = BackendError(*exc.args)
    error.__cause__ = exc.__cause__
    return error


class PipelineBatcher(_Batcher[Sequence[Any], Any]):
    """Queues one script's calls and sends whatever is queued as one pipeline.

    Args:
        runner: runs the script (and reloads it after ``NOSCRIPT``).
        script: the script every call runs.
        max_batch: most commands in one pipeline.

    asyncio only, one event loop; not thread-safe.
    """

    __slots__ = ("_runner", "_script")

    def __init__(self, runner: ScriptRunner, script: Script, max_batch: int = 128) -> None:
        self._runner = runner
        self._script = script
        super().__init__(max_batch)

    def call(self, args: Sequence[Any]) -> Coroutine[Any, Any, Any]:
        """Run the script with ``args`` (``numkeys, keys..., argv...``) and return its reply.

        Raises:
            BackendError: Redis failed.
        """
        return self._submit(args)

    def _direct(self, request: Sequence[Any]) -> Awaitable[Any]:
        return self._runner.eval(
            self._script, request[1 : 1 + request[0]], request[1 + request[0] :]
        )

    async def _send_batch(self, batch: list[tuple[Sequence[Any], asyncio.Future[Any]]]) -> None:
        sha = self._script.sha
        circuit = self._runner.circuit
        if circuit.is_open:
            for _, future in batch:
                if not future.done():
                    future.set_exception(circuit.reject())
            return
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
            circuit.failed(exc)
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
        else:
            circuit.succeeded()
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

    async def _reload(self, args: Sequence[Any]) -> Any:
        """Run one call through the runner, which sends the script's source after NOSCRIPT."""
        numkeys = args[0]
        try:
            return await self._runner.eval(self._script, args[1 : 1 + numkeys], args[1 + numkeys :])
        except Exception as exc:
            return exc
