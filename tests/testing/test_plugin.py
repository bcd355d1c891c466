"""The pytest plugin, used the way a user's project uses it: a test file of their own, run by
pytest in a new process that finds the plugin through its ``pytest11`` entry point.

No wall-clock bound here: the inner tests take 600 s of service time in milliseconds, and the
startup time is measured by ``benchmarks/testing_startup.py``, not asserted.
"""

from __future__ import annotations

import pytest

# A user's test file: the official SDK creates the session, a ChatKit front end's request goes
# to POST /chatkit with its client secret.
USER_TESTS = """
import httpx
from openai import OpenAI


def chatkit(server, secret):
    return httpx.post(
        server.chatkit_url,
        json={"type": "threads.list", "params": {}},
        headers={"Authorization": f"Bearer {secret}"},
    )


def test_session_expires_after_ten_minutes(ratekeeper_server):
    client = OpenAI(base_url=ratekeeper_server.base_url, api_key=ratekeeper_server.api_key)
    session = client.beta.chatkit.sessions.create(
        user="user_1",
        workflow={"id": "wf_1"},
        expires_after={"anchor": "created_at", "seconds": 600},
    )
    assert chatkit(ratekeeper_server, session.client_secret).status_code == 200
    ratekeeper_server.clock.advance(599)
    assert chatkit(ratekeeper_server, session.client_secret).status_code == 200
    ratekeeper_server.clock.advance(1)
    expired = chatkit(ratekeeper_server, session.client_secret)
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "session_expired"


def test_injected_rate_limit_answers_429_with_retry_after(ratekeeper_server):
    client = OpenAI(base_url=ratekeeper_server.base_url, api_key=ratekeeper_server.api_key)
    session = client.beta.chatkit.sessions.create(user="user_2", workflow={"id": "wf_1"})
    ratekeeper_server.faults.inject("rate_limited", session_id=session.id, count=1)
    limited = chatkit(ratekeeper_server, session.client_secret)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert chatkit(ratekeeper_server, session.client_secret).status_code == 200
"""


def test_a_user_project_tests_expiry_and_429_with_the_fixtures(pytester: pytest.Pytester) -> None:
    """A user's test file using ``ratekeeper_server`` with the openai SDK passes, in a new
    pytest process that loads the plugin through its entry point (no conftest, no -p)."""
    pytester.makepyfile(test_chatkit_app=USER_TESTS)
    result = pytester.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_session_expires_after_ten_minutes PASSED*",
            "*test_injected_rate_limit_answers_429_with_retry_after PASSED*",
        ]
    )


def test_the_plugin_is_inert_in_a_run_that_uses_none_of_its_fixtures(
    pytester: pytest.Pytester,
) -> None:
    """A run without the fixtures starts no server and imports neither the server helpers nor
    uvicorn; the plugin itself is registered all the same."""
    pytester.makepyfile(
        test_plain="""
        import sys
        import threading


        def test_nothing_of_ratekeeper_runs(request):
            assert request.config.pluginmanager.has_plugin("ratekeeper")
            assert "ratekeeper.testing._server" not in sys.modules
            assert "uvicorn" not in sys.modules
            assert not [t for t in threading.enumerate() if t.name.startswith("ratekeeper")]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_shared_server_is_one_service_for_the_whole_session(
    pytester: pytest.Pytester,
) -> None:
    """``ratekeeper_shared_server`` is started once: a second test sees the first one's
    session and clock."""
    pytester.makepyfile(
        test_shared="""
        SEEN = {}


        def test_first(ratekeeper_shared_server):
            SEEN["session"] = ratekeeper_shared_server.create_session()
            SEEN["url"] = ratekeeper_shared_server.url
            ratekeeper_shared_server.clock.advance(600)


        def test_second(ratekeeper_shared_server):
            assert ratekeeper_shared_server.url == SEEN["url"]
            answer = ratekeeper_shared_server.chatkit(
                SEEN["session"].client_secret, {"type": "threads.list", "params": {}}
            )
            assert answer.json()["error"]["code"] == "session_expired"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_gate_fixture_runs_under_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    """``ratekeeper_gate`` works in an anyio test on both backends, with no sleep."""
    pytester.makepyfile(
        test_gate="""
        import pytest

        from ratekeeper import SessionExpired


        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param


        @pytest.mark.anyio
        async def test_expiry(ratekeeper_gate):
            session = await ratekeeper_gate.create_session("u", expires_after_s=600)
            await ratekeeper_gate.admit_or_raise(session.client_secret)
            assert await ratekeeper_gate.advance(600) == 1
            with pytest.raises(SessionExpired):
                await ratekeeper_gate.admit_or_raise(session.client_secret)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
