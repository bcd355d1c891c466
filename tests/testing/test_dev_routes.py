"""``ratekeeper serve --dev``'s routes on a live service: time travel, injected refusals in the
real refusals' exact shape on every admission path, their metrics, the request log.

Driven over real HTTP (uvicorn on loopback) through the ``ratekeeper_server`` fixture, the
plugin's own; the service's clock is manual, so nothing here waits on real time.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from openai import OpenAI

from ratekeeper._ratelimit_headers import backend_unavailable_verdict
from ratekeeper.testing import CreatedSession, DevRouteError, LiveServer, serve

THREADS_LIST = {"type": "threads.list", "params": {}}
# The two admission paths of the service: the ChatKit protocol endpoint and the gateway check.
PATHS = ("/chatkit", "/ratekeeper/admit")


def ask(server: LiveServer, secret: str, path: str = "/chatkit") -> httpx.Response:
    """One session request on ``path`` with the client secret, as a front end sends it."""
    return server.http.post(path, json=THREADS_LIST, headers={"Authorization": f"Bearer {secret}"})


def shape(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """Status, headers and body, less what differs between any two responses (date, id)."""
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in ("date", "x-request-id")
    }
    return response.status_code, headers, response.json()


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# -- time travel ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_advance_expires_a_session_exactly_at_its_expires_at(
    ratekeeper_server: LiveServer, path: str
) -> None:
    """``expires_at`` is the clock's time plus the lifetime; one second before it the session
    still answers, at it the session is expired (401 ``session_expired``)."""
    session = ratekeeper_server.create_session(expires_after_s=600)
    assert session.expires_at == ratekeeper_server.clock.time() + 600
    assert ratekeeper_server.clock.advance(599) == 0
    assert ask(ratekeeper_server, session.client_secret, path).status_code == 200
    assert ratekeeper_server.clock.advance(1) == 1
    expired = ask(ratekeeper_server, session.client_secret, path)
    assert expired.status_code == 401
    assert error_code(expired) == "session_expired"


def test_advance_flips_and_counts_what_fell_due_before_it_answers(
    ratekeeper_server: LiveServer,
) -> None:
    """The sweeper's work is done when ``advance`` returns: the metrics count the expiry and
    the REST surface reports the session ``expired``, with no wait on real time."""
    session = ratekeeper_server.create_session(expires_after_s=60)
    ratekeeper_server.create_session(expires_after_s=600)
    assert ratekeeper_server.clock.advance(60) == 1
    assert ratekeeper_server.metric("ratekeeper_sessions_expired_total") == 1
    assert ratekeeper_server.metric("ratekeeper_sessions", status="expired") == 1
    assert ratekeeper_server.metric("ratekeeper_sessions", status="active") == 1
    client = OpenAI(base_url=ratekeeper_server.base_url, api_key=ratekeeper_server.api_key)
    with client:
        cancelled = client.beta.chatkit.sessions.cancel(session.id)
    assert cancelled.status == "expired"
    assert cancelled.expires_at == session.expires_at


def test_advance_slides_the_rate_limit_window(ratekeeper_server: LiveServer) -> None:
    """A window slides with the clock: 429 with ``Retry-After: 60``, then 1 after 59 s, then
    admitted once the first admission is 60 s old."""
    session = ratekeeper_server.create_session(max_requests_per_1_minute=2)
    assert ask(ratekeeper_server, session.client_secret).status_code == 200
    assert ask(ratekeeper_server, session.client_secret).status_code == 200
    limited = ask(ratekeeper_server, session.client_secret)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "60")
    ratekeeper_server.clock.advance(59)
    limited = ask(ratekeeper_server, session.client_secret)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    ratekeeper_server.clock.advance(1)
    assert ask(ratekeeper_server, session.client_secret).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"seconds": -1}, "seconds"),
        ({"seconds": "600"}, "seconds"),
        ({"seconds": True}, "seconds"),
        ({"seconds": 1e300}, "seconds"),
        ({}, "seconds"),
        ({"seconds": 1, "minutes": 1}, "minutes"),
    ],
)
def test_advance_refuses_what_is_not_a_step_forward(
    ratekeeper_server: LiveServer, body: dict[str, Any], param: str
) -> None:
    """Bad steps get 400 naming the parameter, and the clock does not move."""
    before = ratekeeper_server.clock.time()
    answer = ratekeeper_server.http.post("/ratekeeper/dev/clock/advance", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert ratekeeper_server.clock.time() == before


# -- injected refusals ---------------------------------------------------------------------


def _limit_reached(server: LiveServer, path: str) -> httpx.Response:
    """A real 429: a session of 1 request per minute asked twice at one instant."""
    real = server.create_session(max_requests_per_1_minute=1)
    assert ask(server, real.client_secret, path).status_code == 200
    return ask(server, real.client_secret, path)


@pytest.mark.parametrize("path", PATHS)
def test_an_injected_rate_limit_is_the_real_429(ratekeeper_server: LiveServer, path: str) -> None:
    """Status, every header and the body of an injected 429 are those of a real one."""
    real = _limit_reached(ratekeeper_server, path)
    injected_session = ratekeeper_server.create_session(max_requests_per_1_minute=1)
    ratekeeper_server.faults.inject(
        "rate_limited", session_id=injected_session.id, retry_after_s=60
    )
    injected = ask(ratekeeper_server, injected_session.client_secret, path)
    assert real.status_code == 429
    assert shape(injected) == shape(real)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("outcome", ["expired", "cancelled"])
def test_an_injected_end_of_session_is_the_real_401(
    ratekeeper_server: LiveServer, path: str, outcome: str
) -> None:
    """An injected ``expired`` / ``cancelled`` answers exactly as a session that really ended."""
    ended = ratekeeper_server.create_session(expires_after_s=1)
    if outcome == "expired":
        ratekeeper_server.clock.advance(1)
    else:
        ratekeeper_server.http.post(f"/v1/chatkit/sessions/{ended.id}/cancel").raise_for_status()
    real = ask(ratekeeper_server, ended.client_secret, path)
    live = ratekeeper_server.create_session()
    ratekeeper_server.faults.inject(outcome, session_id=live.id)
    injected = ask(ratekeeper_server, live.client_secret, path)
    assert real.status_code == 401
    assert error_code(real) == f"session_{outcome}"
    assert shape(injected) == shape(real)
    assert ask(ratekeeper_server, live.client_secret, path).status_code == 200


@pytest.mark.parametrize("path", PATHS)
def test_an_injected_backend_failure_is_the_503_of_a_failing_backend(
    ratekeeper_server: LiveServer, path: str
) -> None:
    """``backend_unavailable`` answers what a failing backend gives when failing closed."""
    session = ratekeeper_server.create_session()
    ratekeeper_server.faults.inject("backend_unavailable", session_id=session.id)
    answer = ask(ratekeeper_server, session.client_secret, path)
    verdict = backend_unavailable_verdict()
    assert answer.status_code == verdict.status_code == 503
    assert answer.json() == verdict.error
    for name, value in verdict.headers:
        assert answer.headers[name] == value


def test_an_injected_backend_failure_is_admitted_when_failing_open() -> None:
    """Under ``fail_open`` the injected failure is what a real one gives: the plain admission
    route admits, while ``/chatkit`` (which cannot serve without the session) answers 503."""
    with serve(fail_open=True) as server:
        session = server.create_session()
        server.faults.inject("backend_unavailable", session_id=session.id, count=2)
        assert ask(server, session.client_secret, "/ratekeeper/admit").status_code == 200
        assert server.requests[-1]["injected"] == "backend_unavailable"
        answer = ask(server, session.client_secret, "/chatkit")
        assert answer.status_code == 503
        assert answer.json() == backend_unavailable_verdict().error
        assert server.requests[-1]["injected"] == "backend_unavailable"


def test_a_fault_applies_to_its_session_only_and_counts_down(
    ratekeeper_server: LiveServer,
) -> None:
    """``count`` admissions of the named session are refused; other sessions are not."""
    target = ratekeeper_server.create_session()
    other = ratekeeper_server.create_session()
    ratekeeper_server.faults.inject("rate_limited", session_id=target.id, count=2)
    assert ask(ratekeeper_server, other.client_secret).status_code == 200
    assert ask(ratekeeper_server, target.client_secret).status_code == 429
    assert ratekeeper_server.faults.pending()[0]["count"] == 1
    assert ask(ratekeeper_server, target.client_secret).status_code == 429
    assert ratekeeper_server.faults.pending() == []
    allowed = ask(ratekeeper_server, target.client_secret)
    assert allowed.status_code == 200
    # The refused requests were not counted against the session's window.
    assert allowed.headers["x-ratelimit-remaining-requests"] == "9"


def test_a_fault_without_a_session_applies_to_any_session(ratekeeper_server: LiveServer) -> None:
    """Left without ``session_id``, a fault takes the next admissions of whichever sessions;
    a secret that matches no session is never faulted."""
    first = ratekeeper_server.create_session()
    second = ratekeeper_server.create_session()
    ratekeeper_server.faults.inject("expired", count=2)
    assert error_code(ask(ratekeeper_server, "ek_unknown")) == "invalid_client_secret"
    assert error_code(ask(ratekeeper_server, first.client_secret)) == "session_expired"
    assert error_code(ask(ratekeeper_server, second.client_secret)) == "session_expired"
    assert ask(ratekeeper_server, first.client_secret).status_code == 200


def test_a_latency_fault_delays_and_then_answers_for_real(ratekeeper_server: LiveServer) -> None:
    """``latency`` refuses nothing: the request is admitted (and logged as delayed)."""
    session = ratekeeper_server.create_session()
    ratekeeper_server.faults.inject("latency", session_id=session.id, delay_ms=20)
    assert ask(ratekeeper_server, session.client_secret).status_code == 200
    last = ratekeeper_server.requests[-1]
    assert (last["injected"], last["outcome"], last["status"]) == ("latency", "allowed", 200)


def test_clear_drops_every_pending_fault(ratekeeper_server: LiveServer) -> None:
    """After ``faults.clear()`` admissions get their real answers."""
    session = ratekeeper_server.create_session()
    ratekeeper_server.faults.inject("rate_limited", count=5)
    ratekeeper_server.faults.inject("cancelled", session_id=session.id)
    assert ratekeeper_server.faults.clear() == 2
    assert ask(ratekeeper_server, session.client_secret).status_code == 200


def test_injected_refusals_have_their_own_metric_label(ratekeeper_server: LiveServer) -> None:
    """An injected 429 is counted as ``injected_rate_limited``, never as ``rate_limited``."""
    session = ratekeeper_server.create_session()
    ratekeeper_server.faults.inject("rate_limited", session_id=session.id)
    ask(ratekeeper_server, session.client_secret)
    decisions = "ratekeeper_decisions_total"
    assert ratekeeper_server.metric(decisions, outcome="injected_rate_limited") == 1
    assert ratekeeper_server.metric(decisions, outcome="rate_limited") == 0
    http = "ratekeeper_http_requests_total"
    assert ratekeeper_server.metric(http, status="429", method="POST", route="/chatkit") == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"outcome": "teapot"}, "outcome"),
        ({}, "outcome"),
        ({"outcome": "rate_limited", "count": 0}, "count"),
        ({"outcome": "rate_limited", "count": "2"}, "count"),
        ({"outcome": "latency"}, "delay_ms"),
        ({"outcome": "latency", "delay_ms": 60_001}, "delay_ms"),
        ({"outcome": "expired", "delay_ms": 5}, "delay_ms"),
        ({"outcome": "expired", "retry_after_s": 5}, "retry_after_s"),
        ({"outcome": "rate_limited", "retry_after_s": 0}, "retry_after_s"),
        ({"outcome": "rate_limited", "user": "u"}, "user"),
        ({"outcome": "rate_limited", "session_id": 7}, "session_id"),
    ],
)
def test_malformed_faults_are_refused_naming_the_parameter(
    ratekeeper_server: LiveServer, body: dict[str, Any], param: str
) -> None:
    """A malformed fault gets 400 with its parameter, and nothing is injected."""
    answer = ratekeeper_server.http.post("/ratekeeper/dev/faults", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert ratekeeper_server.faults.pending() == []


def test_a_fault_naming_a_secret_or_an_unknown_session_is_refused(
    ratekeeper_server: LiveServer,
) -> None:
    """A client secret in ``session_id`` is a 400 that does not echo it; an unknown id a 404."""
    session = ratekeeper_server.create_session()
    with pytest.raises(DevRouteError) as by_secret:
        ratekeeper_server.faults.inject("expired", session_id=session.client_secret)
    assert by_secret.value.status_code == 400
    assert session.client_secret not in str(by_secret.value)
    with pytest.raises(DevRouteError) as unknown:
        ratekeeper_server.faults.inject("expired", session_id="cksess_nope")
    assert unknown.value.status_code == 404


# -- the request log -----------------------------------------------------------------------


def test_the_request_log_lists_requests_newest_last_without_secrets(
    ratekeeper_server: LiveServer,
) -> None:
    """Method, route template, status, session id and outcome of each request, newest last;
    no secret or key anywhere; the dev routes' own requests are left out."""
    session: CreatedSession = ratekeeper_server.create_session(max_requests_per_1_minute=1)
    ask(ratekeeper_server, session.client_secret)
    ask(ratekeeper_server, session.client_secret, "/ratekeeper/admit")
    ratekeeper_server.http.post(f"/v1/chatkit/sessions/{session.id}/cancel")
    ratekeeper_server.http.get("/nowhere")
    ratekeeper_server.clock.advance(1)
    log = ratekeeper_server.requests
    assert [(e["method"], e["route"], e["status"], e["outcome"]) for e in log] == [
        ("POST", "/v1/chatkit/sessions", 200, None),
        ("POST", "/chatkit", 200, "allowed"),
        ("POST", "/ratekeeper/admit", 429, "rate_limited"),
        ("POST", "/v1/chatkit/sessions/{session_id}/cancel", 200, None),
        ("GET", "unmatched", 404, None),
    ]
    assert [e["session_id"] for e in log] == [session.id] * 4 + [None]
    dumped = json.dumps(log)
    assert session.client_secret not in dumped
    assert ratekeeper_server.api_key not in dumped
    last_two = ratekeeper_server.http.get("/ratekeeper/dev/requests", params={"limit": 2})
    assert last_two.json()["data"] == log[-2:]
    ratekeeper_server.reset()
    assert ratekeeper_server.requests == []


# -- access --------------------------------------------------------------------------------

DEV_ROUTES = [
    ("GET", "/ratekeeper/dev/clock"),
    ("POST", "/ratekeeper/dev/clock/advance"),
    ("GET", "/ratekeeper/dev/faults"),
    ("POST", "/ratekeeper/dev/faults"),
    ("DELETE", "/ratekeeper/dev/faults"),
    ("GET", "/ratekeeper/dev/requests"),
    ("DELETE", "/ratekeeper/dev/requests"),
]


@pytest.mark.parametrize(("method", "path"), DEV_ROUTES)
def test_dev_routes_take_the_api_key_only(
    ratekeeper_server: LiveServer, method: str, path: str
) -> None:
    """No key, or a client secret, gets the REST surface's 401, and changes nothing."""
    session = ratekeeper_server.create_session()
    before = ratekeeper_server.clock.time()
    for authorization in (None, f"Bearer {session.client_secret}"):
        headers = {} if authorization is None else {"Authorization": authorization}
        answer = httpx.request(
            method,
            ratekeeper_server.url + path,
            json={"seconds": 600, "outcome": "expired"},
            headers=headers,
        )
        assert answer.status_code == 401
        assert session.client_secret not in answer.text
    assert ratekeeper_server.clock.time() == before
    assert ratekeeper_server.faults.pending() == []
