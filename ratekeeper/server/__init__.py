"""The self-hosted ChatKit session service: OpenAI's ``/v1/chatkit`` REST surface on ratekeeper.

Build the ASGI app with :func:`create_app` (or run ``ratekeeper serve``); seed or read threads
through its conversation store (:mod:`ratekeeper.store`). Needs the ``server`` extra
(Starlette, uvicorn, and the SQL store's drivers).
"""

from __future__ import annotations

from ..store import (
    ITEM_TYPES,
    UNSET,
    Page,
    StoredItem,
    StoredThread,
    ThreadNotFound,
    ThreadStatus,
    assistant_message,
    user_message,
)
from .app import (
    app_from_env,
    backend_from_settings,
    create_app,
    openapi_document,
    store_from_settings,
)
from .auth import ApiKeys, new_api_key
from .context import ServiceContext
from .settings import SETTINGS, ServerSettings, Setting, SettingsError, default_data_dir

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
    "app_from_env",
    "assistant_message",
    "backend_from_settings",
    "create_app",
    "default_data_dir",
    "new_api_key",
    "openapi_document",
    "store_from_settings",
    "user_message",
)
