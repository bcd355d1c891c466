"""The service and its conversation store: chosen by settings, opened, purged, reported.

The store's own behaviour is the contract suite's (``tests/store/``); these tests check what
the service adds: which store the settings give, the purge it runs, and its 503.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from ratekeeper import Engine, ManualClock, MemoryBackend
from ratekeeper.server import ServerSettings, create_app, store_from_settings
from ratekeeper.server._settings import SettingsError
from ratekeeper.store import MemoryStore, StoredAttachment, StoreUnavailable, ThreadNotFound
from tests.postgres import require_postgres, scratch_database
from tests.service import free_port

from .conftest import API_KEY, BETA, serve

NOW = 1_700_000_000
DAY = 86_400


def test_default_store_is_the_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    """No --store: ratekeeper.sqlite3 in --data-dir (created when missing), never memory."""
    settings = ServerSettings(data_dir=str(tmp_path / "new" / "dir"))
    assert settings.store_url == f"sqlite:///{tmp_path}/new/dir/ratekeeper.sqlite3"
    store = store_from_settings(settings)
    assert type(store).__name__ == "SQLStore"
    assert store.shared


def test_xdg_data_home_moves_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without --data-dir the default follows $XDG_DATA_HOME, not the working directory."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert ServerSettings().store_url == f"sqlite:///{tmp_path}/ratekeeper/ratekeeper.sqlite3"
    monkeypatch.chdir(tmp_path / "..")
    assert ServerSettings().store_url == f"sqlite:///{tmp_path}/ratekeeper/ratekeeper.sqlite3"


def test_store_url_password_never_reaches_a_settings_error() -> None:
    """A store URL the settings cannot use is named without its password."""
    with pytest.raises(SettingsError) as caught:
        ServerSettings.from_env({"RATEKEEPER_STORE": "mysql://rk:hunter2@db/rk"})
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(ServerSettings(store="postgresql://rk:hunter2@db/rk"))


def test_threads_past_retention_and_stale_uploads_are_purged_before_serving() -> None:
    """--thread-retention and --upload-timeout: the first purge runs before the app serves."""
    clock = ManualClock(start=float(NOW))
    store = MemoryStore(clock)

    async def seed() -> tuple[str, str, str, str]:
        old = await store.create_thread("u", created_at=NOW - 3 * DAY)
        kept = await store.create_thread("u", created_at=NOW - DAY // 2)
        await store.save_attachment(
            StoredAttachment("atc_stale", "u", NOW - 7200, {}, upload_token_digest=b"t" * 32)
        )
        await store.save_attachment(
            StoredAttachment("atc_fresh", "u", NOW - 60, {}, upload_token_digest=b"t" * 32)
        )
        return old.id, kept.id, "atc_stale", "atc_fresh"

    old, kept, stale, fresh = asyncio.run(seed())
    app = create_app(
        ServerSettings(api_keys=(API_KEY,), thread_retention_days=1, upload_timeout_s=3600),
        backend=MemoryBackend(Engine(clock)),
        store=store,
        clock=clock,
    )
    with serve(app) as url:
        headers = {"Authorization": f"Bearer {API_KEY}", **BETA}
        gone = httpx.get(f"{url}/v1/chatkit/threads/{old}", headers=headers)
        assert gone.status_code == 404
        assert httpx.get(f"{url}/v1/chatkit/threads/{kept}", headers=headers).status_code == 200

    async def remaining() -> list[str]:
        with pytest.raises(ThreadNotFound):
            await store.get_thread(old)
        names = []
        for attachment_id in (stale, fresh):
            try:
                names.append((await store.get_attachment(attachment_id)).id)
            except LookupError:
                continue
        return names

    assert asyncio.run(remaining()) == [fresh]


class _DownStore(MemoryStore):
    """A store whose database is down for reads."""

    async def get_thread(self, thread_id: str) -> object:  # type: ignore[override]
        raise StoreUnavailable("down") from ConnectionRefusedError()


def test_a_store_failure_is_an_openai_shaped_503() -> None:
    """StoreUnavailable on a REST route: 503 store_unavailable with Retry-After, no cause."""
    app = create_app(ServerSettings(api_keys=(API_KEY,)), store=_DownStore())
    with serve(app) as url:
        response = httpx.get(
            f"{url}/v1/chatkit/threads/cthr_x",
            headers={"Authorization": f"Bearer {API_KEY}", **BETA},
        )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["retry-after-ms"] == "1000"
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "store_unavailable")
    assert "Refused" not in error["message"]


def test_a_value_postgresql_cannot_keep_is_a_400_not_a_500() -> None:
    """NUL in a REST query or in a ChatKit message on PostgreSQL: 400 / an error event."""
    require_postgres()
    with scratch_database() as database:
        app = create_app(ServerSettings(api_keys=(API_KEY,), store=database))
        with serve(app) as url:
            headers = {"Authorization": f"Bearer {API_KEY}", **BETA}
            listed = httpx.get(
                f"{url}/v1/chatkit/threads", params={"user": "a\x00b"}, headers=headers
            )
            assert listed.status_code == 400, listed.text
            assert listed.json()["error"]["code"] == "invalid_value"
            assert "\x00" not in listed.text
            created = httpx.post(
                f"{url}/v1/chatkit/sessions",
                json={"user": "u_nul", "workflow": {"id": "wf_1"}},
                headers=headers,
            )
            secret = created.json()["client_secret"]
            body = {
                "type": "threads.create",
                "params": {
                    "input": {
                        "content": [{"type": "input_text", "text": "nul \x00 here"}],
                        "attachments": [],
                        "inference_options": {},
                    }
                },
            }
            answer = httpx.post(
                f"{url}/chatkit",
                json=body,
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
    # openai-chatkit streams thread.created before it saves the message: the refusal comes as
    # ChatKit's own error event, not a 500 and not a broken stream.
    assert answer.status_code == 200, answer.text
    assert '"type":"error"' in answer.text
    assert "cannot keep" in answer.text


def test_public_url_is_where_upload_and_preview_urls_point() -> None:
    """--public-url: the URLs handed out name the external host, not the request's Host."""
    app = create_app(
        ServerSettings(
            api_keys=(API_KEY,), store="memory", public_url="https://chat.example.com/rk"
        )
    )
    with serve(app) as url:
        headers = {"Authorization": f"Bearer {API_KEY}", **BETA}
        created = httpx.post(
            f"{url}/v1/chatkit/sessions",
            json={
                "user": "u_public",
                "workflow": {"id": "wf_1"},
                "chatkit_configuration": {"file_upload": {"enabled": True}},
            },
            headers=headers,
        )
        secret = created.json()["client_secret"]
        answer = httpx.post(
            f"{url}/chatkit",
            json={
                "type": "attachments.create",
                "params": {"name": "a.png", "size": 3, "mime_type": "image/png"},
            },
            headers={"Authorization": f"Bearer {secret}"},
        )
    assert answer.status_code == 200, answer.text
    attachment = answer.json()
    base = "https://chat.example.com/rk/chatkit/attachments/"
    assert attachment["upload_descriptor"]["url"].startswith(base)
    assert attachment["preview_url"].startswith(base)


@pytest.mark.parametrize("value", ["chat.example.com", "ftp://x", "https://x/?a=1", "https://"])
def test_a_public_url_must_be_an_http_base_url(value: str) -> None:
    """A --public-url that is no http(s) base URL is a settings error naming the setting."""
    with pytest.raises(SettingsError, match="RATEKEEPER_PUBLIC_URL"):
        ServerSettings.from_env({"RATEKEEPER_PUBLIC_URL": value})


def test_readyz_is_ready_when_backend_and_store_answer() -> None:
    """/readyz: 200 naming both parts ok (liveness stays /healthz)."""
    app = create_app(ServerSettings(api_keys=(API_KEY,), store="memory"))
    with serve(app) as url:
        response = httpx.get(f"{url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "backend": "ok", "store": "ok"}


@pytest.mark.redis
def test_readyz_is_503_while_the_session_backend_is_unreachable() -> None:
    """A Redis nobody listens on: /healthz 200 (alive), /readyz 503 naming the backend."""
    settings = ServerSettings(
        api_keys=(API_KEY,), store="memory", backend=f"redis://127.0.0.1:{free_port()}/0"
    )
    with serve(create_app(settings)) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        response = httpx.get(f"{url}/readyz", timeout=30)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["retry-after-ms"] == "1000"
    assert response.json() == {"status": "unavailable", "backend": "unavailable", "store": "ok"}
