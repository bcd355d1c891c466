"""A live ratekeeper service for tests: :func:`serve` starts one, :func:`connect` reaches one.

Design: :func:`serve` runs the real app under a real uvicorn, in a background thread of the
test's own process, on a socket bound to a free loopback port, and on a
:class:`~ratekeeper.ManualClock`. A thread rather than a subprocess because it starts in
tens of milliseconds (nothing to import twice, no process to spawn), cannot outlive the test
run, and leaves no port to race for. The test talks to it only over HTTP, like the app under
test will in production: the clock, the faults and the request log go through the
``/ratekeeper/dev/`` routes, which run on the server's own event loop, so nothing is shared
between threads. The same :class:`LiveServer` drives a ``ratekeeper serve --dev`` started
elsewhere (a container, another language's test suite): :func:`connect`.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

from .._clock import ManualClock, SystemClock
from .._errors import RatekeeperError

if TYPE_CHECKING:
    import uvicorn

    from ..chatkit import ServerFactory

_BETA = {"OpenAI-Beta": "chatkit_beta=v1"}
# One sample line of Prometheus' text format, and one label of it.
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
# How long to wait for the server thread to start or to stop; generous for a loaded machine.
_THREAD_TIMEOUT_S = 30.0


class DevRouteError(RatekeeperError):
    """Raised when a development route refuses a call (or the service is not in ``--dev``).

    Attributes:
        status_code: the HTTP status.
        error: the OpenAI-shaped ``error`` object of the answer (empty if it had none).
    """

    def __init__(self, message: str, status_code: int, error: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = dict(error)


@dataclass(frozen=True, slots=True)
class CreatedSession:
    """A ChatKit session made by :meth:`LiveServer.create_session`.

    Attributes:
        id: the session id (``cksess_…``).
        client_secret: its client secret (``ek_…``), for ``Authorization: Bearer``.
        expires_at: the Unix time it expires at, on the service's clock.
        user: the end user it belongs to.
        body: the whole ``chatkit.session`` object the service answered.
    """

    id: str
    client_secret: str = field(repr=False)
    expires_at: int
    user: str
    body: Mapping[str, Any] = field(repr=False)


class RemoteClock:
    """The service's clock, read and moved through ``/ratekeeper/dev/clock``.

    Not thread-safe (one ``httpx.Client``); use it from the test's thread.
    """

    __slots__ = ("_server",)

    def __init__(self, server: LiveServer) -> None:
        self._server = server

    def advance(self, seconds: float) -> int:
        """Move the service's clock forward by ``seconds``; return how many sessions expired.

        The sessions that fell due are expired (flipped, counted in the metrics) before this
        returns, and every rate-limit window slides as it would have in real time.

        Raises:
            DevRouteError: ``seconds`` is negative or not a number, or the service is not
                in ``--dev``.
        """
        answer = self._server._call("POST", "/ratekeeper/dev/clock/advance", {"seconds": seconds})
        expired: int = answer["expired"]
        return expired

    def time(self) -> float:
        """Return the service's wall-clock time (Unix seconds)."""
        value: float = self._server._call("GET", "/ratekeeper/dev/clock")["time"]
        return value

    def monotonic(self) -> float:
        """Return the service's monotonic time."""
        value: float = self._server._call("GET", "/ratekeeper/dev/clock")["monotonic"]
        return value

    def __repr__(self) -> str:
        return f"RemoteClock({self._server.url!r})"


class Faults:
    """Refusals to inject into the service's next admissions (``/ratekeeper/dev/faults``).

    Not thread-safe (one ``httpx.Client``); use it from the test's thread.
    """

    __slots__ = ("_server",)

    def __init__(self, server: LiveServer) -> None:
        self._server = server

    def inject(
        self,
        outcome: str,
        *,
        session_id: str | None = None,
        count: int = 1,
        delay_ms: int | None = None,
        retry_after_s: float | None = None,
    ) -> dict[str, Any]:
        """Make the next ``count`` admissions answer ``outcome``; return the fault as stored.

        Args:
            outcome: ``"rate_limited"`` (429 with ``Retry-After``), ``"expired"`` or
                ``"cancelled"`` (401), ``"backend_unavailable"`` (503, or admitted under
                ``--fail-open``), or ``"latency"`` (wait ``delay_ms``, then answer as usual).
            session_id: only this session's admissions (``cksess_…``); any session's if
                omitted.
            count: how many admissions it applies to.
            delay_ms: the latency to add (``"latency"`` only).
            retry_after_s: the wait a ``"rate_limited"`` answer gives (default 1 s).

        Raises:
            DevRouteError: a malformed fault (400), an unknown session (404).
        """
        body: dict[str, Any] = {"outcome": outcome, "count": count}
        if session_id is not None:
            body["session_id"] = session_id
        if delay_ms is not None:
            body["delay_ms"] = delay_ms
        if retry_after_s is not None:
            body["retry_after_s"] = retry_after_s
        answer: dict[str, Any] = self._server._call("POST", "/ratekeeper/dev/faults", body)
        return answer

    def clear(self) -> int:
        """Drop every pending fault; return how many were pending."""
        cleared: int = self._server._call("DELETE", "/ratekeeper/dev/faults")["cleared"]
        return cleared

    def pending(self) -> list[dict[str, Any]]:
        """Return the faults not used up yet, oldest first."""
        data: list[dict[str, Any]] = self._server._call("GET", "/ratekeeper/dev/faults")["data"]
        return data

    def __repr__(self) -> str:
        return f"Faults({self._server.url!r})"


class LiveServer:
    """A ratekeeper service in development mode, and the ways a test talks to it.

    Args:
        url: the service's root URL (``http://127.0.0.1:PORT``).
        api_key: an API key it accepts.

    Attributes:
        url: the root URL.
        base_url: ``url + "/v1"``, for ``OpenAI(base_url=server.base_url, api_key=...)``.
        chatkit_url: the ChatKit protocol endpoint (``url + "/chatkit"``).
        api_key: the API key.
        clock: the service's clock (:class:`RemoteClock`).
        faults: fault injection (:class:`Faults`).

    Not thread-safe (one ``httpx.Client``); use it from the test's thread. Close it (or use
    it as a context manager) when done; :func:`serve` does that itself.
    """

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url.rstrip("/")
        self.base_url = f"{self.url}/v1"
        self.chatkit_url = f"{self.url}/chatkit"
        self.api_key = api_key
        self.clock = RemoteClock(self)
        self.faults = Faults(self)
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}", **_BETA},
            timeout=_THREAD_TIMEOUT_S,
        )

    # -- sessions and requests -----------------------------------------------------------

    def create_session(
        self,
        user: str | None = None,
        *,
        expires_after_s: int = 600,
        max_requests_per_1_minute: int = 10,
        workflow_id: str = "wf_test",
        **body: Any,
    ) -> CreatedSession:
        """Create a ChatKit session through the REST surface, in one call.

        Args:
            user: the end user; a new ``user_…`` when omitted.
            expires_after_s: ``expires_after.seconds``.
            max_requests_per_1_minute: ``rate_limits.max_requests_per_1_minute``.
            workflow_id: ``workflow.id``.
            **body: any other field of the create-session body (``chatkit_configuration``).

        Raises:
            DevRouteError: the service refused the body (its error is attached).
        """
        payload = {
            "user": user if user is not None else f"user_{uuid.uuid4().hex[:12]}",
            "workflow": {"id": workflow_id},
            "expires_after": {"anchor": "created_at", "seconds": expires_after_s},
            "rate_limits": {"max_requests_per_1_minute": max_requests_per_1_minute},
            **body,
        }
        created = self._call("POST", "/v1/chatkit/sessions", payload)
        return CreatedSession(
            created["id"], created["client_secret"], created["expires_at"], created["user"], created
        )

    def chatkit(self, client_secret: str, request: Mapping[str, Any]) -> httpx.Response:
        """Send one ChatKit protocol request to ``POST /chatkit``, as a ChatKit front end would.

        Args:
            client_secret: the session's client secret (sent as ``Authorization: Bearer``).
            request: the ChatKit request, e.g. ``{"type": "threads.list", "params": {}}``.

        Returns:
            The response as it came (any status; a streamed answer is read in full).
        """
        return self.http.post(
            "/chatkit",
            json=dict(request),
            headers={"Authorization": f"Bearer {client_secret}"},
        )

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The requests the service answered, newest last, as plain dicts.

        Each has ``method``, ``route`` (the path template), ``status``, ``session_id``,
        ``outcome`` (the admission's, ``None`` where nothing was admitted), ``injected`` (the
        fault applied, if any) and ``request_id``; never a secret. The last 1000 are kept.
        """
        data: list[dict[str, Any]] = self._call("GET", "/ratekeeper/dev/requests")["data"]
        return data

    def metric(self, name: str, **labels: str) -> float:
        """Return one sample of ``/metrics`` (0 when absent): ``metric("x_total", outcome="y")``.

        The labels given must be exactly the sample's labels, in any order.
        """
        for line in self.http.get("/metrics").text.splitlines():
            sample = _SAMPLE.fullmatch(line)
            if sample is None or sample.group(1) != name:
                continue
            if dict(_LABEL.findall(sample.group(2) or "")) == labels:
                return float(sample.group(3))
        return 0.0

    def reset(self) -> None:
        """Clear the pending faults and the request log (the clock cannot go back)."""
        self._call("DELETE", "/ratekeeper/dev/faults")
        self._call("DELETE", "/ratekeeper/dev/requests")

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        if response.status_code == 200:
            return response.json()
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        message = error.get("message") or response.text[:200]
        if response.status_code == 404 and path.startswith("/ratekeeper/dev/"):
            message = (
                f"{self.url} has no development routes: start it with `ratekeeper serve --dev` "
                f"({message})"
            )
        raise DevRouteError(
            f"{method} {path}: {response.status_code}: {message}", response.status_code, error
        )

    def close(self) -> None:
        """Close the HTTP client (the service keeps running)."""
        self.http.close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveServer({self.url!r})"


def connect(url: str, api_key: str) -> LiveServer:
    """Return a :class:`LiveServer` for a ``ratekeeper serve --dev`` running at ``url``.

    Its clock is the system clock plus an offset (:class:`~ratekeeper.server._dev.OffsetClock`)
    rather than a frozen one: time runs, and ``clock.advance`` jumps.
    """
    return LiveServer(url, api_key)


@contextmanager
def serve(
    *,
    api_key: str | None = None,
    start: float | None = None,
    chatkit_server_factory: ServerFactory | None = None,
    **settings: Any,
) -> Iterator[LiveServer]:
    """Run a ratekeeper service on a manual clock for the ``with`` block; yield its client.

    ``with ratekeeper.testing.serve() as server:`` is what the ``ratekeeper_server`` fixture
    does, for unittest and plain scripts. The service listens on a free loopback port, keeps
    sessions and threads in memory, and is in development mode; it stops when the block ends.

    Args:
        api_key: the API key it accepts; a new random one when omitted (``server.api_key``).
        start: the clock's first reading (Unix seconds); the current time, in whole seconds,
            when omitted. The clock stands still until ``server.clock.advance``.
        chatkit_server_factory: the ``ChatKitServer`` behind ``POST /chatkit`` (see
            :func:`ratekeeper.server.create_app`); the built-in echo server when omitted.
        **settings: other :class:`~ratekeeper.server.ServerSettings` fields
            (``fail_open=True``, ``cors_origins=(...)``, ``retention_s=...``).

    Raises:
        SettingsError: settings that contradict development mode (a Redis backend).
        RuntimeError: the server did not start (its error is logged by uvicorn).
    """
    import uvicorn

    from ..server import ServerSettings, create_app
    from ..server._auth import new_api_key

    key = api_key if api_key is not None else new_api_key()
    clock = ManualClock(start=math.floor(SystemClock().time()) if start is None else start)
    app_settings = ServerSettings(
        **{"store": "memory", **settings},
        api_keys=(key,),
        host="127.0.0.1",
        port=0,
        dev=True,
    )
    app = create_app(app_settings, clock=clock, chatkit_server_factory=chatkit_server_factory)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="on",
            # Leave the process's logging as the test run configured it.
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        server, thread, ready = _run_in_thread(config, sock)
        try:
            if not ready.wait(_THREAD_TIMEOUT_S) or not server.started:
                raise RuntimeError("the ratekeeper test server did not start (uvicorn logged why)")
            with LiveServer(f"http://127.0.0.1:{port}", key) as live:
                yield live
        finally:
            server.should_exit = True
            thread.join(_THREAD_TIMEOUT_S)
    finally:
        sock.close()


def _run_in_thread(
    config: uvicorn.Config, sock: socket.socket
) -> tuple[uvicorn.Server, threading.Thread, threading.Event]:
    """Start uvicorn on ``sock`` in a daemon thread; the event is set once it has started
    (``server.started``) or given up."""
    import uvicorn

    ready = threading.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets=sockets)
            finally:
                ready.set()

    server = Server(config)

    def run() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="ratekeeper-test-server", daemon=True)
    thread.start()
    return server, thread, ready
