"""The service without openai-chatkit: it starts, and simply has no protocol endpoint."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import pytest

from ratekeeper.server import ServerSettings, create_app
from ratekeeper.store import MemoryStore
from tests.server.conftest import API_KEY

if TYPE_CHECKING:
    from chatkit.server import ChatKitServer

    from ratekeeper.chatkit import ChatKitAttachmentStore, ChatKitContext, ChatKitStore


@pytest.fixture
def without_openai_chatkit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``chatkit`` unimportable, as when the package is not installed (undone after)."""
    ours = ("ratekeeper.chatkit", "chatkit")
    for name in [n for n in sys.modules if n in ours or n.startswith(tuple(f"{o}." for o in ours))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "chatkit", None)  # a None entry: "no module named chatkit"


@pytest.mark.usefixtures("without_openai_chatkit")
def test_the_service_starts_without_openai_chatkit() -> None:
    """create_app serves everything but ``/chatkit``."""
    app = create_app(ServerSettings(api_keys=(API_KEY,)), store=MemoryStore())
    paths = {getattr(route, "path", None) for route in app.routes}
    assert "/v1/chatkit/sessions" in paths
    assert "/chatkit" not in paths


def _never_built(
    store: ChatKitStore, attachments: ChatKitAttachmentStore
) -> ChatKitServer[ChatKitContext]:
    raise AssertionError("create_app fails before it builds a server")


@pytest.mark.usefixtures("without_openai_chatkit")
def test_a_custom_server_without_openai_chatkit_is_an_error() -> None:
    """Asking for a ChatKit server when openai-chatkit is missing fails loudly."""
    with pytest.raises(ModuleNotFoundError):
        create_app(
            ServerSettings(api_keys=(API_KEY,)),
            store=MemoryStore(),
            chatkit_server_factory=_never_built,
        )
