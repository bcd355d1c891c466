"""Conversation state as users run it: real ``ratekeeper serve`` processes, real databases.

Threads, items and attachment bytes written through ``POST /chatkit`` must be read back by the
official SDK from any worker or host that opens the same store, survive SIGTERM and SIGKILL,
and a database outage must be a 503 (never a 500 or a hang) that heals by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.chatkit.conftest import user_input as _input
from tests.postgres import PrivatePostgres, require_postgres, scratch_database
from tests.redis.servers import RedisProcess
from tests.service import ServiceProcess

# A PNG's first bytes, then filler: the service stores bytes, it does not decode images.
_IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64


def _chatkit(
    service: ServiceProcess, secret: str, type_: str, params: dict[str, Any]
) -> tuple[int, list[dict[str, Any]], bytes]:
    """One protocol request on a fresh connection: status, SSE events (if any), raw body."""
    body = json.dumps({"type": type_, "params": params, "metadata": {}})
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    with httpx.Client(base_url=service.url, timeout=30.0) as client:
        response = client.post("/chatkit", content=body, headers=headers)
    events = []
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
    return response.status_code, events, response.content


def _new_thread(service: ServiceProcess, secret: str, text: str) -> str:
    status, events, body = _chatkit(service, secret, "threads.create", {"input": _input(text)})
    assert status == 200, body
    created = next(e for e in events if e["type"] == "thread.created")
    return str(created["thread"]["id"])


def _add_message(service: ServiceProcess, secret: str, thread_id: str, text: str) -> None:
    status, events, body = _chatkit(
        service,
        secret,
        "threads.add_user_message",
        {"thread_id": thread_id, "input": _input(text)},
    )
    assert status == 200, body
    assert [e for e in events if e["type"] == "error"] == [], events


def _items(service: ServiceProcess, thread_id: str) -> list[tuple[str, str, str]]:
    """Every REST item of a thread, oldest first, read by the SDK in small pages."""
    with service.client() as client:
        items = client.beta.chatkit.threads.list_items(thread_id, order="asc", limit=7)
        return [(item.id, item.type, _text(item)) for item in items]


def _text(item: Any) -> str:
    parts = getattr(item, "content", None) or []
    return " ".join(str(getattr(part, "text", "")) for part in parts)


def _upload_image(service: ServiceProcess, secret: str) -> dict[str, Any]:
    status, _, body = _chatkit(
        service,
        secret,
        "attachments.create",
        {"name": "pixel.png", "size": len(_IMAGE), "mime_type": "image/png"},
    )
    assert status == 200, body
    attachment: dict[str, Any] = json.loads(body)
    uploaded = httpx.post(
        attachment["upload_descriptor"]["url"],
        files={"file": ("pixel.png", _IMAGE, "image/png")},
        timeout=30.0,
    )
    assert uploaded.status_code == 200, uploaded.text
    return attachment


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A private Redis for this module's services (sessions shared by workers and hosts)."""
    server = RedisProcess().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_threads_items_and_bytes_survive_restarts(
    tmp_path: Path, stop: signal.Signals, kind: str
) -> None:
    """`ratekeeper serve` on its default store (and on PostgreSQL): stop it either way, start
    it again, nothing is lost.

    Sessions live in memory and are gone after the restart (as documented); threads, their
    items and their attachments' bytes live in the store: the SQLite file of the data
    directory, which the service creates when missing, or PostgreSQL (bytes in chunk rows).
    """
    with _store_flags(kind, tmp_path) as store:
        _restart_keeps_everything(ServiceProcess(*store), stop)
    if kind == "sqlite":
        assert (tmp_path / "data" / "ratekeeper.sqlite3").is_file()


def _restart_keeps_everything(service: ServiceProcess, stop: signal.Signals) -> None:
    with service:
        session = service.create_session(
            100, chatkit_configuration={"file_upload": {"enabled": True}}
        )
        secret = session["client_secret"]
        thread_id = _new_thread(service, secret, "first words")
        attachment = _upload_image(service, secret)
        status, _, body = _chatkit(
            service,
            secret,
            "threads.add_user_message",
            {"thread_id": thread_id, "input": _input("a picture", [attachment["id"]])},
        )
        assert status == 200, body
        before = _items(service, thread_id)
        with service.client() as client:
            title = client.beta.chatkit.threads.retrieve(thread_id).title
        service.stop(stop)

    with service:
        assert _items(service, thread_id) == before
        assert [kind for _, kind, _ in before] == [
            "chatkit.user_message",
            "chatkit.assistant_message",
            "chatkit.user_message",
            "chatkit.assistant_message",
        ]
        with service.client() as client:
            thread = client.beta.chatkit.threads.retrieve(thread_id)
            assert (thread.title, thread.user) == (title, "u_service")
            listed = client.beta.chatkit.threads.list_items(thread_id, order="asc")
            carried = listed.data[2].attachments  # type: ignore[union-attr]
        assert [a.id for a in carried] == [attachment["id"]]
        preview = httpx.get(attachment["preview_url"], timeout=30.0)
        assert preview.status_code == 200
        assert preview.content == _IMAGE
        assert preview.headers["content-type"] == "image/png"
        # The old session died with the process; the secret is refused, not a 500.
        status, _, _ = _chatkit(service, secret, "threads.list", {})
        assert status == 401


@pytest.mark.redis
def test_four_workers_on_redis_and_postgres_share_every_thread(redis_url: str) -> None:
    """--workers 4 on Redis and PostgreSQL: no 404 on any worker, every item once, in order."""
    require_postgres()
    with (
        scratch_database() as database,
        ServiceProcess("--backend", redis_url, "--store", database, "--workers", "4") as service,
    ):
        secret = service.create_session(10_000)["client_secret"]
        thread_id = _new_thread(service, secret, "m-start")
        for _ in range(100):  # a new client each time: a fresh connection, any worker
            with service.client() as client:
                assert client.beta.chatkit.threads.retrieve(thread_id).id == thread_id
        for number in range(50):
            _add_message(service, secret, thread_id, f"m{number}")
        items = _items(service, thread_id)
        users = [text for _, kind, text in items if kind == "chatkit.user_message"]
        assert users == ["m-start", *(f"m{number}" for number in range(50))]
        assert len({item_id for item_id, _, _ in items}) == len(items) == 2 * 51
        # Every user message is followed by its echo: nothing interleaved out of order.
        for (_, kind, text), (_, next_kind, echo) in zip(items[::2], items[1::2], strict=True):
            assert (kind, next_kind, echo) == (
                "chatkit.user_message",
                "chatkit.assistant_message",
                text,
            )


@contextlib.contextmanager
def _store_flags(kind: str, tmp_path: Path) -> Iterator[tuple[str, ...]]:
    """The flags of a shared store: the default SQLite file in a data directory, or a scratch
    PostgreSQL database."""
    if kind == "sqlite":
        yield ("--data-dir", str(tmp_path / "data"))
        return
    require_postgres()
    with scratch_database() as database:
        yield ("--store", database)


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_appends_to_one_thread_on_several_workers_lose_nothing(
    redis_url: str, kind: str, tmp_path: Path
) -> None:
    """Two clients appending to one thread at once, through four workers sharing the default
    SQLite file (no 'database is locked' reaches anyone) or PostgreSQL: every message lands."""
    with (
        _store_flags(kind, tmp_path) as store,
        ServiceProcess("--backend", redis_url, *store, "--workers", "4") as service,
    ):
        secret = service.create_session(10_000)["client_secret"]
        thread_id = _new_thread(service, secret, "start")

        def append(writer: str) -> None:
            for number in range(15):
                _add_message(service, secret, thread_id, f"{writer}-{number}")

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(append, ["a", "b"]))
        items = _items(service, thread_id)
        users = [text for _, kind, text in items if kind == "chatkit.user_message"]
        assert sorted(users) == sorted(["start", *(f"{w}-{n}" for w in "ab" for n in range(15))])
        for writer in "ab":  # each writer's own messages keep their order
            own = [text for text in users if text.startswith(f"{writer}-")]
            assert own == [f"{writer}-{n}" for n in range(15)]
        assert len({item_id for item_id, _, _ in items}) == len(items) == 2 * 31


@pytest.mark.redis
def test_two_hosts_on_one_postgres_serve_the_same_threads(redis_url: str) -> None:
    """Two separate services (two hosts' worth) share threads; one dying loses nothing."""
    require_postgres()
    with scratch_database() as database:
        flags = ("--backend", redis_url, "--store", database)
        with ServiceProcess(*flags) as first, ServiceProcess(*flags) as second:
            secret = first.create_session(1_000)["client_secret"]
            thread_id = _new_thread(first, secret, "from the first host")
            _add_message(second, secret, thread_id, "from the second host")
            first.stop(signal.SIGKILL)
            texts = [text for _, kind, text in _items(second, thread_id) if "user" in kind]
            assert texts == ["from the first host", "from the second host"]
            with second.client() as client:
                client.beta.chatkit.threads.delete(thread_id)
                with pytest.raises(openai.NotFoundError):
                    client.beta.chatkit.threads.retrieve(thread_id)


def test_postgres_outage_is_a_503_that_heals_without_a_restart(tmp_path: Path) -> None:
    """PostgreSQL stopped, then paused: OpenAI-shaped 503s within the store timeout, never a
    500 or a hang; when it is back the same process serves again, and nothing acknowledged
    before the outage is lost."""
    require_postgres()
    postgres = PrivatePostgres().start()
    try:
        with ServiceProcess("--store", postgres.url, "--store-timeout", "2") as service:
            secret = service.create_session(1_000)["client_secret"]
            thread_id = _new_thread(service, secret, "before the outage")
            before = _items(service, thread_id)

            for outage in ("stopped", "paused"):
                if outage == "stopped":
                    postgres.stop()
                else:
                    postgres.pause()
                with service.rest() as rest:
                    response = rest.get(f"/v1/chatkit/threads/{thread_id}")
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "store_unavailable"
                assert response.headers["retry-after"] == "1"
                status, events, body = _chatkit(
                    service,
                    secret,
                    "threads.add_user_message",
                    {"thread_id": thread_id, "input": _input("during the outage")},
                )
                assert status == 503, body
                assert events == []
                assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200
                ready = httpx.get(f"{service.url}/readyz", timeout=30)
                assert ready.status_code == 503
                assert ready.json()["store"] == "unavailable"
                if outage == "stopped":
                    postgres.start()
                else:
                    postgres.resume()
                assert _items(service, thread_id) == before

            assert httpx.get(f"{service.url}/readyz", timeout=30).json()["status"] == "ready"
            _add_message(service, secret, thread_id, "after the outage")
            texts = [text for _, kind, text in _items(service, thread_id) if "user" in kind]
            assert texts == ["before the outage", "after the outage"]
    finally:
        postgres.close()


def test_a_100_mb_upload_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    """Uploading 100 MB raises the service's resident memory by a few MB at most."""
    size = 100 * 1024 * 1024
    payload = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with payload.open("wb") as out:
        block = bytes(range(256)) * 4096  # 1 MiB
        for _ in range(size // len(block)):
            out.write(block)
            digest.update(block)
    with ServiceProcess("--data-dir", str(tmp_path / "data")) as service:
        session = service.create_session(
            100, chatkit_configuration={"file_upload": {"enabled": True}}
        )
        secret = session["client_secret"]
        status, _, body = _chatkit(
            service,
            secret,
            "attachments.create",
            {"name": "big.bin", "size": size, "mime_type": "application/octet-stream"},
        )
        assert status == 200, body
        url = json.loads(body)["upload_descriptor"]["url"]
        before = service.processes()[0].memory_info().rss
        with payload.open("rb") as file:
            uploaded = httpx.post(url, files={"file": ("big.bin", file)}, timeout=120.0)
        assert uploaded.status_code == 200, uploaded.text
        after = service.processes()[0].memory_info().rss
        stored = list((tmp_path / "data").glob("ratekeeper.sqlite3.attachments/*"))
        assert len(stored) == 1
        assert stored[0].stat().st_size == size
        with stored[0].open("rb") as file:
            assert hashlib.file_digest(file, "sha256").digest() == digest.digest()
    assert after - before < 8 * 1024 * 1024, f"RSS grew by {(after - before) / 2**20:.1f} MiB"
