"""A dump of the conversation store holds no attachment upload or preview token.

The real service (``ratekeeper serve``) creates image and file attachments through
``POST /chatkit``, uploads some, leaves one pending, and puts an image in a message, so the
tokens could be in every place the store keeps URLs: the attachment's metadata, the ChatKit
item and the REST item. Then the store is dumped while the service runs — the SQLite files'
bytes, or every row of every PostgreSQL table (``COPY … TO STDOUT``) — and searched for the
tokens in every form they could be written (plain, percent-encoded, ``repr()``, JSON). Zero hits;
and the URLs the clients got keep working after a restart (SQLite, key file in the data
directory) and on whichever of two workers answers (PostgreSQL and Redis, ``--token-key``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.chatkit.conftest import user_input
from tests.postgres import require_postgres, scratch_database
from tests.redis.servers import RedisProcess
from tests.service import ServiceProcess

from .leaks import leaks

_IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
_KEY = "k" * 8 + "-a-token-key-for-these-tests-only-0123456789"


def _chatkit(service: ServiceProcess, secret: str, type_: str, params: dict[str, Any]) -> Any:
    body = json.dumps({"type": type_, "params": params, "metadata": {}})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    response = httpx.post(f"{service.url}/chatkit", content=body, headers=headers, timeout=30.0)
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [
            json.loads(line[len("data: ") :])
            for line in response.text.splitlines()
            if line.startswith("data: ")
        ]
        assert [e for e in events if e["type"] == "error"] == [], events
        return events
    return response.json()


def _create(service: ServiceProcess, secret: str, name: str, mime: str) -> dict[str, Any]:
    params = {"name": name, "size": len(_IMAGE), "mime_type": mime}
    created: dict[str, Any] = _chatkit(service, secret, "attachments.create", params)
    return created


def _upload(url: str) -> httpx.Response:
    return httpx.post(url, files={"file": ("f", _IMAGE, "image/png")}, timeout=30.0)


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def _sqlite_dump(directory: Path) -> dict[str, str]:
    """Every file of the data directory but the key file (the database, its WAL, blobs)."""
    return {
        str(path): path.read_bytes().decode("latin-1")
        for path in directory.rglob("*")
        if path.is_file() and path.name != "token.key"
    }


def _postgres_dump(url: str) -> dict[str, str]:
    """Every row of every table of the database, as ``COPY`` writes it."""
    tables = subprocess.run(
        [
            "psql",
            url,
            "-XAtc",
            "select quote_ident(table_schema) || '.' || quote_ident(table_name) "
            "from information_schema.tables where table_type = 'BASE TABLE' "
            "and table_schema not in ('pg_catalog', 'information_schema')",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert tables, "the store created no table"
    return {
        table: subprocess.run(
            # The name comes quoted by quote_ident; psql interpolates it (:t) in its input.
            ["psql", url, "-XAt", "-v", f"t={table}"],
            input="copy (select * from :t) to stdout\n",
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        for table in tables
    }


@contextlib.contextmanager
def _service(kind: str, tmp_path: Path) -> Iterator[tuple[ServiceProcess, Any]]:
    """The service on a store of ``kind``, and a function that dumps that store."""
    if kind == "sqlite":
        data = tmp_path / "data"
        with ServiceProcess("--data-dir", str(data)) as service:
            yield service, lambda: _sqlite_dump(data)
        return
    require_postgres()
    redis_server = RedisProcess().start()
    try:
        with (
            scratch_database() as database,
            ServiceProcess(
                "--store",
                database,
                "--backend",
                redis_server.url,
                "--workers",
                "2",
                "--token-key",
                _KEY,
            ) as service,
        ):
            yield service, lambda: _postgres_dump(database)
    finally:
        redis_server.stop()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_store_dump_holds_no_upload_or_preview_token(kind: str, tmp_path: Path) -> None:
    """Tokens are handed to clients and work, yet no row or file of the store holds one."""
    with _service(kind, tmp_path) as (service, dump):
        secret = service.create_session(
            1000, chatkit_configuration={"file_upload": {"enabled": True}}
        )["client_secret"]
        image = _create(service, secret, "pixel.png", "image/png")
        document = _create(service, secret, "notes.txt", "text/plain")
        pending = _create(service, secret, "later.png", "image/png")
        for attachment in (image, document):
            assert _upload(attachment["upload_descriptor"]["url"]).status_code == 200
        events = _chatkit(
            service, secret, "threads.create", {"input": user_input("look", [image["id"]])}
        )
        thread_id = next(e for e in events if e["type"] == "thread.created")["thread"]["id"]
        shown = [e["item"] for e in events if e.get("item", {}).get("type") == "user_message"]
        assert shown[0]["attachments"][0]["preview_url"] == image["preview_url"]

        tokens = [
            _token(image["upload_descriptor"]["url"]),
            _token(image["preview_url"]),
            _token(document["upload_descriptor"]["url"]),
            _token(pending["upload_descriptor"]["url"]),
            _token(pending["preview_url"]),
        ]
        stored = dump()
        assert image["id"] in "".join(stored.values())  # the attachments are in the dump
        assert f"{image['id']}/preview" in "".join(stored.values())  # and so are the URLs
        assert not leaks(tokens, stored)

        # What the clients were given keeps working, on whichever worker answers.
        for _ in range(4):
            preview = httpx.get(image["preview_url"], timeout=30.0)
            assert (preview.status_code, preview.content) == (200, _IMAGE)
        with service.client() as client:
            items = client.beta.chatkit.threads.list_items(thread_id, order="asc")
            listed = [a.preview_url for item in items for a in getattr(item, "attachments", [])]
        assert listed == [image["preview_url"]]
        loaded = _chatkit(service, secret, "items.list", {"thread_id": thread_id, "order": "asc"})
        assert loaded["data"][0]["attachments"][0]["preview_url"] == image["preview_url"]
        # A stored URL, token removed, opens nothing.
        bare = image["preview_url"].partition("?")[0]
        assert httpx.get(bare, timeout=30.0).status_code == 404

        assert _upload(pending["upload_descriptor"]["url"]).status_code == 200
        assert _upload(pending["upload_descriptor"]["url"]).status_code == 404  # single use
        assert not leaks(tokens, dump())

        if kind == "sqlite":  # a restart reads the same key file: the URLs still work
            service.stop()
            service.start()
        for attachment in (image, pending):
            preview = httpx.get(attachment["preview_url"], timeout=30.0)
            assert (preview.status_code, preview.content) == (200, _IMAGE)
