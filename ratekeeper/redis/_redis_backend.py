"""The Redis backend: the engine's semantics over Redis or Redis Cluster, one script per decision.

State per session is a hash and a window list under the session's own hash tag
(:mod:`ratekeeper.redis.keys`); every per-session operation is one Lua script on one slot, so
it is atomic across any number of gateway processes. Time is Redis ``TIME`` inside the scripts
(one clock for every gateway, never a gateway's own), in integer microseconds so that window
boundaries are exact. An injected clock (tests: :class:`~ratekeeper.ManualClock`) is passed
into the scripts instead, with the engine's arithmetic: ``expires_at`` from wall time, the
deadline on monotonic time.

Sweeping is shared: a due session is claimed on its index shard under a lease, flipped by a
script that only turns ``active`` into ``expired`` (so whoever flips it reports it, exactly
once), then acknowledged. Ended sessions are purged by the sweep after ``retention_s``, as the
engine does, and every key also carries a TTL, so nothing outlives its retention even if every
sweeper dies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._clock import Clock
from .._errors import BackendError, CapacityExceeded, InvalidParameter, SessionNotFound
from .._params import check_user
from .._secrets import new_client_secret, secret_digest, session_id_for
from .._types import (
    Admission,
    Cancellation,
    CircuitStatistics,
    Decision,
    EngineStatistics,
    Expired,
    Session,
    SessionOptions,
    SessionSpec,
    SessionStatus,
    UploadDecision,
    UploadReason,
    resolve_spec,
)
from ._batch import PipelineBatcher, ScriptBatcher
from ._circuit import Circuit
from ._keys import SESSION_ID_PATTERN, KeySpace
from ._replies import US, admitted_session, decision, meta_json, snapshot, text
from ._scripts import DRIVER_ERRORS, Client, ScriptRunner, wrap
from ._sweep import SharedSweep

# Keys outlive their logical retention by this much: TTLs are a safety net, not the rule.
_TTL_MARGIN_MS = 1_000
# With an injected clock the logical time need not follow real time; a wide margin keeps a
# slow test run from losing keys that the injected clock still considers alive.
_INJECTED_TTL_MARGIN_MS = 600_000


class _ClusterClient(RedisCluster):
    """redis-py's cluster client without its retry after a timeout, as on a single server.

    A timed-out command may already have run (an admission counted): retrying it could count
    it twice, and would make the caller wait for a second timeout. Connection errors and
    topology changes are still retried once. Not thread-safe, like its base.
    """

    # The base declares exactly its four error types; this is the same tuple minus one.
    ERRORS_ALLOW_RETRY = tuple(  # type: ignore[assignment]
        error for error in RedisCluster.ERRORS_ALLOW_RETRY if error is not RedisTimeoutError
    )


def _as_bytes(reply: bytes | str) -> bytes:
    # A client built with decode_responses hands back str.
    return reply.encode() if isinstance(reply, str) else reply


def _session_id(client_secret: str) -> tuple[str, bytes]:
    """Return the session id a secret names and the digest stored for it."""
    return session_id_for(client_secret), secret_digest(client_secret)


class RedisBackend:
    """Sessions and exact per-session sliding windows in Redis, behind the ``Backend`` protocol.

    Args:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` client;
            give it a ``socket_timeout`` (redis-py has none by default), or a hung Redis
            hangs every call instead of raising ``BackendError``.
        clock: ``None`` (default) uses Redis ``TIME`` inside every script; a clock is read by
            the backend and passed in instead (for tests: a ``ManualClock``).
        key_prefix: first segment of every key; distinct prefixes share a server safely.
        retention_s: how long expired and cancelled sessions are kept, as in the engine.
        expiry_shards: number of sorted sets holding the expiry index (spread over a cluster).
        max_sessions: optional cap on active sessions; checked before each creation, so under
            concurrent creators it may be overshot by the number of concurrent creations.
        claim_lease_s: how long a sweeper's claim on a due session lasts if it dies mid-sweep.
        pipeline_admissions: send the admissions of concurrent tasks together, one command
            per write on a server (``admit_many``), one pipeline on a cluster; ``False`` sends
            each on its own.
        circuit_failures: commands timing out in a row that open the circuit breaker, after
            which every call fails at once until a background ``PING`` is answered; 0 turns
            the breaker off. Only timeouts count (a refused connection fails at once anyway).
        circuit_probe_interval_s: pause between two probes while the circuit is open.
        owns_client: close ``client`` in :meth:`aclose`.

    Use it from one asyncio event loop (redis-py's asyncio client does not run on trio). Not
    thread-safe; any number of processes may share one Redis.
    """

    def __init__(
        self,
        client: Client,
        *,
        clock: Clock | None = None,
        key_prefix: str = "rk",
        retention_s: float = 3600.0,
        expiry_shards: int = 16,
        max_sessions: int | None = None,
        claim_lease_s: float = 30.0,
        pipeline_admissions: bool = True,
        circuit_failures: int = 3,
        circuit_probe_interval_s: float = 0.5,
        owns_client: bool = False,
    ) -> None:
        if retention_s < 0:
            raise ValueError(f"retention_s must be >= 0, got {retention_s!r}")
        if max_sessions is not None and max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions!r}")
        if claim_lease_s <= 0:
            raise ValueError(f"claim_lease_s must be > 0, got {claim_lease_s!r}")
        self._client = client
        self.clock = clock
        self.keys = KeySpace(key_prefix, expiry_shards)
        self.retention_s = float(retention_s)
        self.max_sessions = max_sessions
        self._retention_us = str(round(retention_s * US))
        self._lease_us = str(round(claim_lease_s * US))
        self._margin_ms = str(_TTL_MARGIN_MS if clock is None else _INJECTED_TTL_MARGIN_MS)
        self._owns_client = owns_client
        self._circuit = Circuit(client, circuit_failures, circuit_probe_interval_s)
        self._runner = ScriptRunner(client, self._circuit)
        self._eval = self._runner.eval
        self._scripts = self._runner.scripts
        self._sweep = SharedSweep(
            self._runner, self.keys, self._retention_us, self._lease_us, self._margin_ms
        )
        self._tag_open = key_prefix + ":{"
        self._key_open = self._tag_open.encode()
        # How an admission travels: batched into one admit_many call (standalone), pipelined
        # one admit call each (a cluster, where a batch's keys span slots), or alone.
        self._reply = self._reply_direct
        if pipeline_admissions and isinstance(client, RedisCluster):
            self._pipeline_batcher = PipelineBatcher(self._runner, self._scripts["admit"])
            self._reply = self._reply_pipelined
        elif pipeline_admissions and isinstance(client, Redis):
            self._script_batcher = ScriptBatcher(
                client, self._scripts["admit_many"], self._now_bytes, self._circuit
            )
            self._reply = self._reply_batched

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        clock: Clock | None = None,
        socket_timeout: float = 2.0,
        socket_connect_timeout: float = 2.0,
        client_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> RedisBackend:
        """Connect to ``redis://``, ``rediss://`` or ``unix://`` Redis (or a cluster) by URL.

        Args:
            url: the server's URL; with ``cluster=True``, any node of the cluster.
            cluster: speak the Redis Cluster protocol.
            clock: see the class; ``None`` uses Redis ``TIME``.
            socket_timeout: seconds before a command on a stuck connection fails, so a hung
                Redis becomes a :class:`~ratekeeper.BackendError`, never a hang.
            socket_connect_timeout: seconds before a connection attempt fails.
            client_options: more keyword arguments for redis-py's ``from_url`` (e.g.
                ``max_connections``, ``ssl_ca_certs``, ``health_check_interval``).
            **options: the backend's keyword arguments (``key_prefix``, ``retention_s``,
                ``expiry_shards``, ``max_sessions``, ``claim_lease_s``,
                ``pipeline_admissions``, ``circuit_failures``, ``circuit_probe_interval_s``).

        No I/O happens until the first call.
        """
        # A command is retried once, only on a connection error (a stale pooled connection
        # after a Redis restart), never on a timeout: a timed-out admission may have counted.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        settings: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_connect_timeout,
            "retry": retry,
            **(client_options or {}),
        }
        client: Client
        if cluster:
            client = _ClusterClient.from_url(url, **settings)
        else:
            client = Redis.from_url(url, **settings)
        return cls(client, clock=clock, owns_client=True, **options)

    @property
    def client(self) -> Client:
        """The redis-py client this backend runs its scripts on."""
        return self._client

    # -- running scripts --------------------------------------------------------------------

    def _now(self) -> str:
        clock = self.clock
        return "" if clock is None else str(round(clock.monotonic() * US))

    def _now_bytes(self) -> bytes:
        clock = self.clock
        return b"" if clock is None else b"%d" % round(clock.monotonic() * US)

    # -- creation ---------------------------------------------------------------------------

    async def create_session(
        self, user: str, spec: SessionSpec | None = None, **options: Unpack[SessionOptions]
    ) -> Session:
        """Create an active session and return it with its ``client_secret``.

        As :meth:`Engine.create_session <ratekeeper.Engine.create_session>`; the spec's
        ``attributes`` (and its workflow's ``state_variables``) must be JSON-serializable here
        (they are stored as JSON).

        Raises:
            InvalidParameter: ``user``, or a keyword, is of the wrong type or out of range;
                or the attributes are not JSON.
            TypeError: both ``spec`` and keywords were given.
            CapacityExceeded: ``max_sessions`` sessions are already active.
            BackendError: Redis failed.
        """
        check_user(user)
        # A SessionSpec was validated when it was built: only keywords are looked at here.
        if options or type(spec) is not SessionSpec:
            spec = resolve_spec(spec, options)
        try:
            meta = meta_json(user, spec)
        except (TypeError, ValueError) as exc:
            raise InvalidParameter(
                "Invalid 'attributes': the Redis backend stores attributes as JSON.",
                param="attributes",
                code="invalid_type",
            ) from exc
        if self.max_sessions is not None:
            await self._check_capacity(self.max_sessions)
        clock = self.clock
        if clock is None:
            mono = wall = ""
        else:
            wall = str(round(clock.time() * US))
            mono = str(round(clock.monotonic() * US))
        # 128-bit ids derived from 256-bit secrets do not collide; the loop is for correctness.
        for _ in range(3):
            secret = new_client_secret()
            sid, digest = _session_id(secret)
            reply = await self._eval(
                self._scripts["create"],
                self.keys.session(sid)[:1],
                (
                    mono,
                    wall,
                    digest,
                    sid,
                    meta,
                    spec.expires_after_s,
                    spec.max_requests_per_1_minute,
                    int(spec.file_upload.enabled),
                    spec.file_upload.max_file_size,
                    spec.file_upload.max_files,
                    self._retention_us,
                    self._margin_ms,
                ),
            )
            if reply[0] == 1:
                break
        else:  # pragma: no cover - three 128-bit collisions in a row
            raise BackendError("could not allocate a unique session id")
        _, expires_at, created_us, deadline_us = reply
        index = self.keys.shard(self.keys.shard_of(sid))[0]
        await self._eval(
            self._scripts["index_add"],
            (index,),
            (mono, sid, deadline_us, self._retention_us, self._margin_ms),
        )
        return Session(
            id=sid,
            user=user,
            status=SessionStatus.ACTIVE,
            expires_at=int(expires_at),
            created_at=int(created_us) / US,
            spec=spec,
            client_secret=secret,
        )

    async def _check_capacity(self, max_sessions: int) -> None:
        # Sessions past their deadline do not count, as in the engine; they are not flipped
        # here, though: the shared sweep flips and reports each one, once.
        if await self._sweep.live_count(self._now()) >= max_sessions:
            raise CapacityExceeded(
                f"cannot create a session: {max_sessions} sessions are active "
                "(raise max_sessions, or cancel sessions)"
            )

    # -- the hot path -----------------------------------------------------------------------

    async def admit(self, client_secret: str) -> Decision:
        """Decide whether one request on the session behind ``client_secret`` may proceed.

        One ``EVALSHA`` round trip; admitted requests are counted, rejected ones are not.

        Raises:
            BackendError: Redis failed (the gate turns this into fail-closed or fail-open).
        """
        sid = session_id_for(client_secret)
        return decision(await self._reply(sid, secret_digest(client_secret), b"0"), sid)

    async def admit_session(self, client_secret: str) -> Admission:
        """Like :meth:`admit`, and return the admitted session: still one round trip.

        Raises:
            BackendError: Redis failed.
        """
        sid = session_id_for(client_secret)
        reply = await self._reply(sid, secret_digest(client_secret), b"1")
        verdict = decision(reply, sid)
        if not verdict.allowed:
            return Admission(verdict, None)
        return Admission(verdict, admitted_session(reply, sid))

    async def _reply_batched(self, sid: str, digest: bytes, flag: bytes) -> bytes:
        key = self._key_open + sid.encode()
        size = len(key) + 3
        keys = b"$%d\r\n%b}:s\r\n$%d\r\n%b}:w\r\n" % (size, key, size, key)
        return await self._script_batcher.call(keys, b"$32\r\n%b\r\n$1\r\n%b\r\n" % (digest, flag))

    async def _reply_pipelined(self, sid: str, digest: bytes, flag: bytes) -> bytes:
        tagged = self._tag_open + sid
        args = (2, tagged + "}:s", tagged + "}:w", self._now(), digest, flag)
        return _as_bytes(await self._pipeline_batcher.call(args))

    async def _reply_direct(self, sid: str, digest: bytes, flag: bytes) -> bytes:
        tagged = self._tag_open + sid
        keys = (tagged + "}:s", tagged + "}:w")
        return _as_bytes(
            await self._runner.eval(self._scripts["admit"], keys, (self._now(), digest, flag))
        )

    async def lookup(self, client_secret: str) -> Session | None:
        """Return the session behind ``client_secret`` as of now, without counting a request."""
        sid, digest = _session_id(client_secret)
        reply = await self._eval(
            self._scripts["read"], self.keys.session(sid)[:1], (self._now(), digest)
        )
        if reply[0] == 0:
            return None
        return snapshot(sid, *reply[1:])

    async def reserve_upload(self, session_id: str, size_bytes: int) -> UploadDecision:
        """Count one file upload against the session's ``file_upload`` limits, if it fits.

        Raises:
            SessionNotFound: no such session.
            BackendError: Redis failed.
        """
        reply = await self._eval(
            self._scripts["upload"],
            self._session_keys(session_id)[:1],
            (self._now(), int(size_bytes)),
        )
        if reply[0] == 0:
            raise SessionNotFound(session_id)
        _, allowed, reason, used, max_files = reply
        return UploadDecision(bool(allowed), UploadReason(text(reason)), int(used), int(max_files))

    # -- lifecycle --------------------------------------------------------------------------

    async def get(self, session_id: str) -> Session:
        """Return the session as of now (a due session reads ``expired`` before any sweep).

        Raises:
            SessionNotFound: no such session (or it was purged after its retention).
            BackendError: Redis failed.
        """
        keys = self._session_keys(session_id)
        reply = await self._eval(self._scripts["read"], keys[:1], (self._now(), ""))
        if reply[0] == 0:
            raise SessionNotFound(session_id)
        return snapshot(session_id, *reply[1:])

    async def cancel(self, session_id: str) -> Cancellation:
        """Cancel an active session; idempotent, and a no-op on an expired one.

        ``changed`` is the script's own answer, so of concurrent cancels in any number of
        processes exactly one reports it.

        Raises:
            SessionNotFound: no such session.
            BackendError: Redis failed.
        """
        keys = self._session_keys(session_id)
        reply = await self._eval(
            self._scripts["cancel"], keys, (self._now(), self._retention_us, self._margin_ms)
        )
        if reply[0] == 0:
            raise SessionNotFound(session_id)
        if reply[0] == 1:
            # Bookkeeping on the index shard (another slot): drop the deadline, schedule the
            # purge. If this step fails, the sweep later finds the entry and drops it.
            index, _, cancelled = self.keys.shard(self.keys.shard_of(session_id))
            await self._eval(
                self._scripts["index_end"],
                (index, cancelled),
                (str(reply[6]), session_id, self._retention_us, self._margin_ms),
            )
        return Cancellation(snapshot(session_id, *reply[1:6]), reply[0] == 1)

    async def sweep(self, max_items: int) -> list[Expired]:
        """Flip due sessions to ``expired`` (at most ``max_items``), purge old ended ones.

        Safe to run in several processes at once: each due session is flipped, and returned,
        by exactly one of them. Returns the sessions flipped, earliest deadline first.

        Raises:
            BackendError: Redis failed.
        """
        return await self._sweep.sweep(self._now(), max_items)

    async def time_to_next_deadline(self) -> float | None:
        """Seconds until :meth:`sweep` next has work (<= 0: now), ``None`` if never."""
        return await self._sweep.time_to_next_deadline(self._now())

    async def statistics(self) -> EngineStatistics:
        """Count active sessions, and ended ones still retained, across every index shard."""
        return await self._sweep.statistics()

    def circuit_statistics(self) -> CircuitStatistics:
        """Return the circuit breaker's state and counts (no I/O)."""
        return self._circuit.statistics()

    async def aclose(self) -> None:
        """Stop the circuit's probe; close the client if this backend created it (``from_url``)."""
        await self._circuit.aclose()
        if self._owns_client:
            try:
                await self._client.aclose()
            except DRIVER_ERRORS as exc:
                raise wrap(exc) from exc

    # -- internals --------------------------------------------------------------------------

    def _session_keys(self, session_id: str) -> tuple[str, str]:
        # Ids this backend never issues are unknown without a round trip (and never reach a
        # key name, where a brace could move them to another slot).
        if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
            raise SessionNotFound(str(session_id))
        return self.keys.session(session_id)

    def __repr__(self) -> str:
        kind = "cluster" if isinstance(self._client, RedisCluster) else "standalone"
        return (
            f"RedisBackend({kind}, key_prefix={self.keys.prefix!r}, "
            f"shards={self.keys.shards}, clock={self.clock!r})"
        )
