"""The self-hosted ChatKit session service: OpenAI's ``/v1/chatkit`` REST surface on ratekeeper.

Build the ASGI app with :func:`create_app` (or run ``ratekeeper serve``); seed or read threads
through :class:`ThreadStore`. Needs the ``server`` extra (Starlette, uvicorn).
"""

from __future__ import annotations

from .app import app_from_env, backend_from_settings, create_app, openapi_document
from .auth import ApiKeys, new_api_key
from .context import ServiceContext
from .settings import SETTINGS, ServerSettings, Setting, SettingsError
from .threads import (
    ITEM_TYPES,
    UNSET,
    Page,
    StoredItem,
    StoredThread,
    ThreadNotFound,
    ThreadStatus,
    ThreadStore,
    assistant_message,
    user_message,
)

__all__ = (
    "ITEM_TYPES",
    "SETTINGS",
    "UNSET",
    "ApiKeys",
    "Page",
    "ServerSettings",
    "ServiceContext",
    "Setting",
    "SettingsError",
    "StoredItem",
    "StoredThread",
    "ThreadNotFound",
    "ThreadStatus",
    "ThreadStore",
    "app_from_env",
    "assistant_message",
    "backend_from_settings",
    "create_app",
    "new_api_key",
    "openapi_document",
    "user_message",
)
