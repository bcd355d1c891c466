"""Fault injection of development mode (``/ratekeeper/dev/faults``): the table of pending
faults and the gate that answers from it first. See :mod:`ratekeeper.server.dev`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Unpack

import anyio

from .._backend import Backend
from .._engine import Engine
from .._errors import BackendError, InvalidParameter
from .._gate import FAIL_OPEN_DECISION, Gate
from .._metrics import INJECTED_OUTCOMES
from .._params import check_enum, check_int, check_known, check_str, require, type_name
from .._ratelimit_headers import (
    Verdict,
    backend_unavailable_verdict,
    fail_open_verdict,
    verdict_for,
)
from .._types import INFINITY, Decision, Reason, Session, SessionOptions, SessionSpec
from ._dev_requests import note

#: The ``outcome`` values a fault may have.
FAULT_OUTCOMES = ("rate_limited", "expired", "cancelled", "backend_unavailable", "latency")
#: Most admissions one fault may apply to, and the longest latency it may add.
MAX_FAULT_COUNT = 1_000_000
MAX_DELAY_MS = 60_000
_REASONS = {
    "rate_limited": Reason.RATE_LIMITED,
    "expired": Reason.EXPIRED,
    "cancelled": Reason.CANCELLED,
}
_FAULT_KEYS = ("outcome", "session_id", "count", "delay_ms", "retry_after_s")


@dataclass(slots=True)
class Fault:
    """One injected fault, as :class:`FaultTable` holds it.

    Attributes:
        outcome: one of :data:`FAULT_OUTCOMES`.
        session_id: the session it applies to; ``None``: any session.
        count: admissions it still applies to.
        delay_ms: the latency added (``latency`` only).
        retry_after_s: the wait a ``rate_limited`` answer gives.
    """

    outcome: str
    session_id: str | None = None
    count: int = 1
    delay_ms: int = 0
    retry_after_s: float = 1.0

    def as_json(self) -> dict[str, Any]:
        """Return the fault as the dev routes show it."""
        shown: dict[str, Any] = {
            "object": "ratekeeper.dev.fault",
            "outcome": self.outcome,
            "session_id": self.session_id,
            "count": self.count,
        }
        if self.outcome == "latency":
            shown["delay_ms"] = self.delay_ms
        if self.outcome == "rate_limited":
            shown["retry_after_s"] = self.retry_after_s
        return shown


class FaultTable:
    """The faults still pending, oldest first; each admission takes from the first that fits.

    Not thread-safe: the service's event loop owns it.
    """

    __slots__ = ("_faults",)

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def __bool__(self) -> bool:
        return bool(self._faults)

    def add(self, fault: Fault) -> None:
        """Queue ``fault`` behind the ones already pending."""
        self._faults.append(fault)

    def clear(self) -> int:
        """Drop every pending fault; return how many there were."""
        count = len(self._faults)
        self._faults.clear()
        return count

    def pending(self) -> list[Fault]:
        """Return the pending faults, oldest first (copies)."""
        return [
            Fault(f.outcome, f.session_id, f.count, f.delay_ms, f.retry_after_s)
            for f in self._faults
        ]

    def take(self, session_id: str) -> Fault | None:
        """Use one admission of the oldest fault for ``session_id`` (or for any session)."""
        for index, fault in enumerate(self._faults):
            if fault.session_id is None or fault.session_id == session_id:
                fault.count -= 1
                if fault.count <= 0:
                    del self._faults[index]
                return fault
        return None


def parse_fault(body: Any) -> Fault:
    """Validate a ``POST /ratekeeper/dev/faults`` body.

    Raises:
        InvalidParameter: naming the parameter, with OpenAI's error codes.
    """
    if not isinstance(body, dict):
        raise InvalidParameter(
            f"Invalid type for request body: expected an object, but got {type_name(body)} "
            "instead.",
            code="invalid_type",
        )
    check_known(body, "", _FAULT_KEYS)
    outcome = check_enum(require(body, "outcome", ""), "outcome", FAULT_OUTCOMES)
    session_id = body.get("session_id")
    if session_id is not None:
        session_id = check_str(session_id, "session_id", min_length=1, max_length=128)
        if not session_id.startswith("cksess_"):
            raise InvalidParameter(
                "Invalid 'session_id': expected a session id (cksess_…). Faults name the "
                "session, never its client secret.",
                param="session_id",
                code="invalid_value",
            )
    count = check_int(body.get("count", 1), "count", minimum=1, maximum=MAX_FAULT_COUNT)
    fault = Fault(outcome, session_id, count)
    if outcome == "latency":
        fault.delay_ms = check_int(
            require(body, "delay_ms", ""), "delay_ms", minimum=0, maximum=MAX_DELAY_MS
        )
    elif "delay_ms" in body:
        raise InvalidParameter(
            "'delay_ms' applies to the 'latency' outcome only.",
            param="delay_ms",
            code="unknown_parameter",
        )
    if "retry_after_s" in body:
        if outcome != "rate_limited":
            raise InvalidParameter(
                "'retry_after_s' applies to the 'rate_limited' outcome only.",
                param="retry_after_s",
                code="unknown_parameter",
            )
        fault.retry_after_s = check_seconds(body["retry_after_s"], "retry_after_s", 0.001, 60.0)
    return fault


def check_seconds(value: Any, param: str, minimum: float, maximum: float) -> float:
    """Return ``value`` if it is a JSON number from ``minimum`` to ``maximum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(
            f"Invalid type for '{param}': expected a number, but got {type_name(value)} instead.",
            param=param,
            code="invalid_type",
        )
    if not (math.isfinite(value) and minimum <= value <= maximum):
        raise InvalidParameter(
            f"Invalid '{param}': expected a number of seconds from {minimum:g} to "
            f"{maximum:g}, but got {value!r} instead.",
            param=param,
            code="invalid_value",
        )
    return float(value)


class DevGate(Gate):
    """A :class:`~ratekeeper.Gate` that answers from its :class:`FaultTable` first.

    Takes the arguments of :class:`~ratekeeper.Gate`, plus ``faults``. :meth:`check`
    and :meth:`admit` (hence ``enter``, ``guard``, the middleware, ``/chatkit`` and
    ``/ratekeeper/admit``) consult the table before the backend; everything else is the
    gate's own. With no fault pending it costs one truth test per admission. Not thread-safe,
    like the gate.
    """

    def __init__(self, backend: Backend | Engine, *, faults: FaultTable, **options: Any) -> None:
        super().__init__(backend, **options)
        self.faults = faults
        decisions = self.metrics.decisions
        self._injected_outcome = {
            name: decisions.labels(outcome=name) for name in INJECTED_OUTCOMES
        }

    async def _fault_for(self, client_secret: str) -> tuple[Fault, Session] | None:
        try:
            session = await self.backend.lookup(client_secret)
        except BackendError:
            return None  # the real admission meets the same failure and answers it
        if session is None:
            return None
        fault = self.faults.take(session.id)
        return None if fault is None else (fault, session)

    def _injected_decision(self, fault: Fault, session: Session) -> Decision:
        limit = session.max_requests_per_1_minute
        if fault.outcome == "rate_limited":
            wait = fault.retry_after_s
            return Decision(False, Reason.RATE_LIMITED, limit, 0, wait, wait, session.id)
        # As window.terminal_decision builds them.
        return Decision(False, _REASONS[fault.outcome], limit, 0, INFINITY, 0.0, session.id)

    async def _injected_verdict(self, client_secret: str, *, may_fail_open: bool) -> Verdict | None:
        """The verdict a pending fault gives, or ``None`` to ask the backend (after latency)."""
        hit = await self._fault_for(client_secret)
        if hit is None:
            return None
        fault, session = hit
        note(session.id, None, fault.outcome)
        if fault.outcome == "latency":
            await anyio.sleep(fault.delay_ms / 1000)
            return None
        self._injected_outcome["injected_" + fault.outcome].inc()
        if fault.outcome != "backend_unavailable":
            decision = self._injected_decision(fault, session)
            note(None, decision.reason)
            return verdict_for(decision)
        note(None, "backend_unavailable")
        if may_fail_open and self.fail_open:
            return fail_open_verdict(FAIL_OPEN_DECISION)
        return backend_unavailable_verdict()

    async def check(self, client_secret: str | None) -> Verdict:
        """Like :meth:`Gate.check <ratekeeper.Gate.check>`, a pending fault first."""
        if client_secret and self.faults:
            injected = await self._injected_verdict(client_secret, may_fail_open=True)
            if injected is not None:
                return injected
        verdict = await super().check(client_secret)
        made = verdict.decision
        if made is not None:
            note(made.session_id, made.reason)
        else:
            note(None, "missing_secret" if not client_secret else "backend_unavailable")
        return verdict

    async def check_session(self, client_secret: str | None) -> tuple[Verdict, Session | None]:
        """Like :meth:`Gate.check_session <ratekeeper.Gate.check_session>`, a fault first.

        As there, a handler that needs the session cannot fail open: an injected
        ``backend_unavailable`` is answered 503 whatever ``fail_open`` says.
        """
        if client_secret and self.faults:
            injected = await self._injected_verdict(client_secret, may_fail_open=False)
            if injected is not None:
                return injected, None
        verdict, session = await super().check_session(client_secret)
        made = verdict.decision
        if made is not None:
            note(made.session_id, made.reason)
        else:
            note(None, "missing_secret" if not client_secret else "backend_unavailable")
        return verdict, session

    async def admit(self, client_secret: str) -> Decision:
        """Like :meth:`Gate.admit <ratekeeper.Gate.admit>`, a pending fault first.

        Raises:
            BackendError: the backend failed (or a ``backend_unavailable`` fault says so) and
                the gate fails closed.
        """
        if client_secret and self.faults:
            hit = await self._fault_for(client_secret)
            if hit is not None:
                fault, session = hit
                note(session.id, None, fault.outcome)
                if fault.outcome == "latency":
                    await anyio.sleep(fault.delay_ms / 1000)
                else:
                    self._injected_outcome["injected_" + fault.outcome].inc()
                    if fault.outcome != "backend_unavailable":
                        return self._injected_decision(fault, session)
                    if self.fail_open:
                        return FAIL_OPEN_DECISION
                    raise BackendError("injected fault: backend_unavailable")
        decision = await super().admit(client_secret)
        note(decision.session_id, decision.reason)
        return decision

    async def create_session(
        self, user: str, spec: SessionSpec | None = None, **options: Unpack[SessionOptions]
    ) -> Session:
        """Like :meth:`Gate.create_session <ratekeeper.Gate.create_session>`; logged."""
        session = await super().create_session(user, spec, **options)
        note(session.id, None)
        return session

    async def cancel(self, session_id: str) -> Session:
        """Like :meth:`Gate.cancel <ratekeeper.Gate.cancel>`; logged."""
        session = await super().cancel(session_id)
        note(session.id, None)
        return session
