"""Property: whatever JSON is posted to create, the live server never answers 5xx.

Bodies mix arbitrary JSON with near-valid ones (the real field names, values of any type), so
the search reaches deep into validation rather than stopping at the first unknown name.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import API_KEY, Live, Schemas

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Either a plausible value or any JSON at all."""
    return strategy | json_values


def near(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects holding any subset of ``fields`` (plus, sometimes, a stray one)."""
    return st.fixed_dictionaries({}, optional=fields) | st.dictionaries(
        st.sampled_from([*fields, "stray"]), json_values, max_size=3
    )


small_ints = st.integers(min_value=-5, max_value=700)
workflow = near(
    {
        "id": maybe(st.text(max_size=10)),
        "version": maybe(st.text(max_size=5)),
        "state_variables": maybe(st.dictionaries(st.text(max_size=70), json_values, max_size=70)),
        "tracing": maybe(near({"enabled": maybe(st.booleans())})),
    }
)
configuration = near(
    {
        "automatic_thread_titling": maybe(near({"enabled": maybe(st.booleans())})),
        "file_upload": maybe(
            near(
                {
                    "enabled": maybe(st.booleans()),
                    "max_file_size": maybe(small_ints),
                    "max_files": maybe(small_ints),
                }
            )
        ),
        "history": maybe(
            near({"enabled": maybe(st.booleans()), "recent_threads": maybe(small_ints)})
        ),
    }
)
bodies = json_values | near(
    {
        "user": maybe(st.text(max_size=600)),
        "workflow": maybe(workflow),
        "expires_after": maybe(
            near({"anchor": maybe(st.just("created_at")), "seconds": maybe(small_ints)})
        ),
        "rate_limits": maybe(near({"max_requests_per_1_minute": maybe(small_ints)})),
        "chatkit_configuration": maybe(configuration),
    }
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=bodies)
def test_create_never_answers_5xx(live: Live, schemas: Schemas, body: Any) -> None:
    """Every answer is a session (schema-valid) or an OpenAI-shaped 4xx."""
    with live.http() as http:
        response = http.post(
            "/v1/chatkit/sessions",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        schemas.check("ChatSessionResource", response.json())
    else:
        assert response.status_code == 400
        schemas.check("ErrorResponse", response.json())


@settings(max_examples=60, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_answer_5xx(live: Live, raw: bytes) -> None:
    """Not even bytes that are not JSON at all get a 5xx."""
    response = httpx.post(
        f"{live.url}/v1/chatkit/sessions",
        content=raw,
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "OpenAI-Beta": "chatkit_beta=v1",
            "content-type": "application/json",
        },
    )
    assert response.status_code in (200, 400)
