"""Upload and preview routes over a real SQLite store whose bytes vanish or whose lock is held.

The service runs on uvicorn as ``ratekeeper serve`` builds it, with ``--store sqlite:///…``;
the failures are real ones: another SQLite connection holding the write lock past
``--store-timeout``, attachment files gone from beside the database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratekeeper.server import ServerSettings, create_app
from tests.server.conftest import API_KEY, Live, Schemas, serve

from .conftest import Protocol, user_input
from .test_attachment_flow import PNG, create, preview, upload, uploader


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """Where this test's SQLite store lives."""
    return tmp_path / "store.sqlite3"


@pytest.fixture
def sqlite_protocol(database: Path) -> Iterator[Protocol]:
    """A protocol client on a service of this test's own, on a SQLite store, 1 s timeout."""
    settings = ServerSettings(
        api_keys=(API_KEY,), store=f"sqlite:///{database}", store_timeout_s=1.0
    )
    app = create_app(settings)
    with serve(app) as url:
        client = Protocol(Live(url, app))
        yield client
        client.close()


@contextmanager
def write_lock_held(database: Path) -> Iterator[None]:
    """Hold the SQLite file's write lock from another connection (another worker, stuck)."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def check_store_unavailable(response: httpx.Response, schemas: Schemas) -> None:
    assert response.status_code == 503, response.text
    body: dict[str, Any] = response.json()
    schemas.check("ErrorResponse", body)
    assert (body["error"]["type"], body["error"]["code"]) == ("server_error", "store_unavailable")
    assert response.headers["retry-after"] == "1"
    assert response.headers["retry-after-ms"] == "1000"
    assert "locked" not in response.text  # the database's own words stay in the server


def test_the_protocol_endpoint_answers_a_stuck_store_with_503_store_unavailable(
    sqlite_protocol: Protocol, database: Path, schemas: Schemas
) -> None:
    """A write the store cannot make within --store-timeout: 503 store_unavailable (as on
    the REST surface and in the docs), not the session backend's backend_unavailable."""
    session = uploader(sqlite_protocol)
    with write_lock_held(database):
        response = sqlite_protocol.post(
            session.secret,
            "attachments.create",
            {"name": "a.txt", "size": 3, "mime_type": "text/plain"},
        )
    check_store_unavailable(response, schemas)


def test_a_store_failing_inside_a_stream_is_chatkits_retryable_error_event(
    sqlite_protocol: Protocol, database: Path
) -> None:
    """The stream has started (thread read) when the message cannot be written: ChatKit's own
    error event, allow_retry, no 500 and no broken stream; the thread is intact afterwards."""
    session = uploader(sqlite_protocol)
    thread_id, _ = sqlite_protocol.create_thread(session, "first")
    with write_lock_held(database):
        stream = sqlite_protocol.stream(
            session.secret,
            "threads.add_user_message",
            {"thread_id": thread_id, "input": user_input("second")},
        )
    assert stream.status_code == 200
    error = stream.first("error")
    assert error["allow_retry"] is True
    assert "locked" not in json.dumps(stream.events)
    items = sqlite_protocol.post(session.secret, "items.list", {"thread_id": thread_id})
    assert items.status_code == 200
    texts = [
        part["text"]
        for item in items.json()["data"]
        if item["type"] == "user_message"
        for part in item["content"]
    ]
    assert texts == ["first"]


def test_the_upload_route_answers_a_stuck_store_with_503_store_unavailable(
    sqlite_protocol: Protocol, database: Path, schemas: Schemas
) -> None:
    """The bytes arrived but the store cannot record them in time: 503, and the same upload
    URL still works once the store is free again."""
    session = uploader(sqlite_protocol)
    created = create(sqlite_protocol, session, "a.txt", "text/plain", 3)
    url = created["upload_descriptor"]["url"]
    with write_lock_held(database):
        response = sqlite_protocol.http.post(url, files={"file": ("a.txt", b"abc", "text/plain")})
    check_store_unavailable(response, schemas)
    assert upload(sqlite_protocol, created, b"abc")["id"] == created["id"]


def test_a_preview_whose_bytes_are_gone_is_a_404_not_a_broken_response(
    sqlite_protocol: Protocol, database: Path, schemas: Schemas
) -> None:
    """The metadata says uploaded, but the bytes are gone by the time they are read (deleted
    by another worker meanwhile, or a restored backup without its files): 404 not_found."""
    session = uploader(sqlite_protocol)
    image = upload(
        sqlite_protocol, create(sqlite_protocol, session, "p.png", "image/png", len(PNG)), PNG
    )
    assert preview(image["preview_url"]).content == PNG
    for path in Path(f"{database}.attachments").iterdir():
        path.unlink()
    response = preview(image["preview_url"])
    assert response.status_code == 404, response.text
    schemas.check("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "not_found"
