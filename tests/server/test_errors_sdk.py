"""Every validation and auth error surfaces as the SDK's own exception, with param and code."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.beta.chatkit import ChatSession, ChatSessionWorkflowParam

from .conftest import BETA, Live

WF: ChatSessionWorkflowParam = {"id": "wf_1"}


def body(**fields: Any) -> dict[str, Any]:
    """A valid create body with ``fields`` changed (``...`` removes a field)."""
    base: dict[str, Any] = {"user": "u_1", "workflow": dict(WF)}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def config(**parts: Any) -> dict[str, Any]:
    return body(chatkit_configuration=parts)


STALE_CURL_EXAMPLE = {
    "workflow": {"id": "workflow_alpha", "version": "2024-10-01"},
    "scope": {"project": "alpha", "environment": "staging"},
    "expires_after": 1800,
    "max_requests_per_1_minute": 60,
    "max_requests_per_session": 500,
}

# (body, param, code)
BAD_BODIES: list[tuple[Any, str | None, str]] = [
    ([], None, "invalid_type"),
    ("text", None, "invalid_type"),
    ({}, "user", "missing_required_parameter"),
    (body(workflow=...), "workflow", "missing_required_parameter"),
    (body(user=""), "user", "string_below_min_length"),
    (body(user=12), "user", "invalid_type"),
    (body(user="x" * 513), "user", "string_above_max_length"),
    (body(user=None), "user", "invalid_type"),
    (body(workflow="wf_1"), "workflow", "invalid_type"),
    (body(workflow={}), "workflow.id", "missing_required_parameter"),
    (body(workflow={"id": 5}), "workflow.id", "invalid_type"),
    (body(workflow={"id": "w", "extra": 1}), "workflow.extra", "unknown_parameter"),
    (body(workflow={"id": "w", "version": 3}), "workflow.version", "invalid_type"),
    (
        body(workflow={"id": "w", "state_variables": {"a": {"b": 1}}}),
        "workflow.state_variables.a",
        "invalid_type",
    ),
    (
        body(workflow={"id": "w", "state_variables": {"a": None}}),
        "workflow.state_variables.a",
        "invalid_type",
    ),
    (
        body(workflow={"id": "w", "state_variables": {f"k{i}": i for i in range(65)}}),
        "workflow.state_variables",
        "object_above_max_properties",
    ),
    (
        body(workflow={"id": "w", "state_variables": {"k" * 65: 1}}),
        "workflow.state_variables",
        "string_above_max_length",
    ),
    (
        body(workflow={"id": "w", "state_variables": [1]}),
        "workflow.state_variables",
        "invalid_type",
    ),
    (
        body(workflow={"id": "w", "tracing": {"enabled": "yes"}}),
        "workflow.tracing.enabled",
        "invalid_type",
    ),
    (body(workflow={"id": "w", "tracing": True}), "workflow.tracing", "invalid_type"),
    (body(expires_after=1800), "expires_after", "invalid_type"),
    (body(expires_after={"seconds": 60}), "expires_after.anchor", "missing_required_parameter"),
    (
        body(expires_after={"anchor": "created_at"}),
        "expires_after.seconds",
        "missing_required_parameter",
    ),
    (body(expires_after={"anchor": "now", "seconds": 60}), "expires_after.anchor", "invalid_value"),
    (
        body(expires_after={"anchor": "created_at", "seconds": 0}),
        "expires_after.seconds",
        "integer_below_min_value",
    ),
    (
        body(expires_after={"anchor": "created_at", "seconds": 601}),
        "expires_after.seconds",
        "integer_above_max_value",
    ),
    (
        body(expires_after={"anchor": "created_at", "seconds": "60"}),
        "expires_after.seconds",
        "invalid_type",
    ),
    (
        body(expires_after={"anchor": "created_at", "seconds": 60.5}),
        "expires_after.seconds",
        "invalid_type",
    ),
    (
        body(expires_after={"anchor": "created_at", "seconds": True}),
        "expires_after.seconds",
        "invalid_type",
    ),
    (
        body(expires_after={"anchor": "created_at", "seconds": 60, "x": 1}),
        "expires_after.x",
        "unknown_parameter",
    ),
    (
        body(rate_limits={"max_requests_per_1_minute": 0}),
        "rate_limits.max_requests_per_1_minute",
        "integer_below_min_value",
    ),
    (
        body(rate_limits={"max_requests_per_1_minute": "10"}),
        "rate_limits.max_requests_per_1_minute",
        "invalid_type",
    ),
    (body(rate_limits={"per_hour": 1}), "rate_limits.per_hour", "unknown_parameter"),
    (body(rate_limits=10), "rate_limits", "invalid_type"),
    (body(chatkit_configuration=[]), "chatkit_configuration", "invalid_type"),
    (config(theme={}), "chatkit_configuration.theme", "unknown_parameter"),
    (
        config(automatic_thread_titling={"enabled": 1}),
        "chatkit_configuration.automatic_thread_titling.enabled",
        "invalid_type",
    ),
    (
        config(file_upload={"max_file_size": 513}),
        "chatkit_configuration.file_upload.max_file_size",
        "integer_above_max_value",
    ),
    (
        config(file_upload={"max_file_size": 0}),
        "chatkit_configuration.file_upload.max_file_size",
        "integer_below_min_value",
    ),
    (
        config(file_upload={"max_files": 0}),
        "chatkit_configuration.file_upload.max_files",
        "integer_below_min_value",
    ),
    (
        config(file_upload={"enabled": "true"}),
        "chatkit_configuration.file_upload.enabled",
        "invalid_type",
    ),
    (
        config(history={"recent_threads": 0}),
        "chatkit_configuration.history.recent_threads",
        "integer_below_min_value",
    ),
    (
        config(history={"recent_threads": None}),
        "chatkit_configuration.history.recent_threads",
        "invalid_type",
    ),
    (config(history={"keep": True}), "chatkit_configuration.history.keep", "unknown_parameter"),
    # Beyond 2**53 - 1 a count would silently change in Redis's Lua and in JavaScript.
    (
        body(rate_limits={"max_requests_per_1_minute": 2**53}),
        "rate_limits.max_requests_per_1_minute",
        "integer_above_max_value",
    ),
    (
        config(file_upload={"max_files": 10**30}),
        "chatkit_configuration.file_upload.max_files",
        "integer_above_max_value",
    ),
    (
        config(history={"recent_threads": 2**63}),
        "chatkit_configuration.history.recent_threads",
        "integer_above_max_value",
    ),
    (STALE_CURL_EXAMPLE, "scope", "unknown_parameter"),
]


@pytest.mark.parametrize(("payload", "param", "code"), BAD_BODIES)
def test_bad_create_body_raises_bad_request_error(
    live: Live, payload: Any, param: str | None, code: str
) -> None:
    """Each bad body is a BadRequestError naming the parameter path and OpenAI's code."""
    with live.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.post(
            "/chatkit/sessions", body=payload, cast_to=ChatSession, options={"headers": BETA}
        )
    error = caught.value
    assert error.status_code == 400
    assert error.param == param
    assert error.code == code
    assert error.type == "invalid_request_error"


def test_messages_follow_openai_wording(live: Live) -> None:
    """Messages read like OpenAI's (the parameter quoted, the expectation spelled out)."""
    cases = [
        (
            body(expires_after={"anchor": "created_at", "seconds": 1800}),
            "Invalid 'expires_after.seconds': integer above maximum value. "
            "Expected a value <= 600, but got 1800 instead.",
        ),
        (body(workflow={}), "Missing required parameter: 'workflow.id'."),
        (
            body(user=7),
            "Invalid type for 'user': expected a string, but got an integer instead.",
        ),
        (body(extra=1), "Unknown parameter: 'extra'."),
    ]
    with live.client() as client:
        for payload, message in cases:
            with pytest.raises(openai.BadRequestError) as caught:
                client.post(
                    "/chatkit/sessions",
                    body=payload,
                    cast_to=ChatSession,
                    options={"headers": BETA},
                )
            assert isinstance(caught.value.body, dict)
            assert caught.value.body["message"] == message


def test_stale_reference_example_names_every_unknown_field(live: Live) -> None:
    """The reference page's curl example gets one 400 that lists all its misplaced fields."""
    with live.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.post(
            "/chatkit/sessions",
            body=STALE_CURL_EXAMPLE,
            cast_to=ChatSession,
            options={"headers": BETA},
        )
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == (
        "Unknown parameters: 'scope', 'max_requests_per_1_minute' (did you mean "
        "'rate_limits.max_requests_per_1_minute'?), 'max_requests_per_session'."
    )


def test_sdk_create_with_out_of_range_value_is_rejected_by_the_server(live: Live) -> None:
    """The SDK sends what it is given; the server is where the range is enforced."""
    with live.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.beta.chatkit.sessions.create(
            user="u",
            workflow={"id": "w"},
            chatkit_configuration={"file_upload": {"max_file_size": 1024}},
        )
    assert caught.value.param == "chatkit_configuration.file_upload.max_file_size"
    assert caught.value.code == "integer_above_max_value"


# (query, param, code)
BAD_QUERIES: list[tuple[dict[str, Any], str, str]] = [
    ({"limit": 101}, "limit", "integer_above_max_value"),
    ({"limit": -1}, "limit", "integer_below_min_value"),
    ({"limit": "ten"}, "limit", "invalid_type"),
    ({"limit": "1.5"}, "limit", "invalid_type"),
    ({"order": "sideways"}, "order", "invalid_value"),
    ({"after": "cthr_nowhere"}, "after", "invalid_value"),
    ({"before": "cthr_nowhere"}, "before", "invalid_value"),
    ({"user": ""}, "user", "string_below_min_length"),
    ({"user": "u" * 513}, "user", "string_above_max_length"),
    ({"page": 2}, "page", "unknown_parameter"),
]


@pytest.mark.parametrize(("query", "param", "code"), BAD_QUERIES)
def test_bad_list_query_raises_bad_request_error(
    live: Live, query: dict[str, Any], param: str, code: str
) -> None:
    """Query parameters are validated like body fields."""
    with live.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.beta.chatkit.threads.list(extra_query=query)
    assert caught.value.param == param
    assert caught.value.code == code


def test_bad_items_query_raises_bad_request_error(live: Live, user: str) -> None:
    """The items listing validates its query too, and has no user filter."""
    thread = live.threads.create_thread(user)
    with live.client() as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.beta.chatkit.threads.list_items(thread.id, limit=500)
        assert caught.value.param == "limit"
        with pytest.raises(openai.BadRequestError) as caught:
            client.beta.chatkit.threads.list_items(thread.id, extra_query={"user": user})
        assert caught.value.code == "unknown_parameter"


def test_wrong_api_key_raises_authentication_error(live: Live) -> None:
    """A key the service does not know is a 401 invalid_api_key, never echoed."""
    with (
        live.client(api_key="rk-wrong-key") as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.beta.chatkit.sessions.create(user="u", workflow=WF)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert "rk-wrong-key" not in str(caught.value.body)


def test_client_secret_is_not_an_api_key(live: Live, user: str) -> None:
    """A valid client secret used as the API key is refused, and not echoed."""
    with live.client() as client:
        secret = client.beta.chatkit.sessions.create(user=user, workflow=WF).client_secret
    with live.client(api_key=secret) as client:
        for call in (
            lambda: client.beta.chatkit.sessions.create(user=user, workflow=WF),
            lambda: client.beta.chatkit.threads.list(user=user),
        ):
            with pytest.raises(openai.AuthenticationError) as caught:
                call()
            assert caught.value.code == "invalid_api_key"
            assert secret not in str(caught.value.body)


def test_wrong_beta_header_raises_invalid_beta(live: Live) -> None:
    """Overriding the SDK's OpenAI-Beta header with another beta is a 400 invalid_beta."""
    with live.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.beta.chatkit.threads.list(extra_headers={"OpenAI-Beta": "assistants=v2"})
    assert caught.value.code == "invalid_beta"
    assert caught.value.param is None


@pytest.mark.anyio
async def test_async_client_raises_not_found_and_auth_errors(live: Live) -> None:
    """The async client maps statuses to the same exception classes."""
    async with live.aclient() as client:
        with pytest.raises(openai.NotFoundError):
            await client.beta.chatkit.threads.delete("cthr_missing")
    async with live.aclient(api_key="rk-nope") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.beta.chatkit.sessions.cancel("cksess_x")
