"""The self-hosted ChatKit session service: OpenAI's ``/v1/chatkit`` REST surface on ratekeeper.

Build the ASGI app with :func:`create_app` (or run ``ratekeeper serve``); seed or read threads
through its conversation store (:mod:`ratekeeper.store`). Needs the ``server`` extra
(Starlette, uvicorn, and the SQL store's drivers).
"""

from __future__ import annotations

from .._http_errors import ApiError
from .._moved import register_moved as _register_moved
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
from ._app import (
    app_from_env,
    backend_from_settings,
    create_app,
    openapi_document,
    store_from_settings,
)
from ._auth import ApiKeys, new_api_key
from ._logs import RedactSecrets
from ._protocol import ConnectionLimits, LimitedHTTPProtocol
from ._service_context import ServiceContext
from ._settings import SETTINGS, ServerSettings, Setting, SettingsError, default_data_dir

__all__ = (
    "ITEM_TYPES",
    "SETTINGS",
    "UNSET",
    "ApiError",
    "ApiKeys",
    "ConnectionLimits",
    "LimitedHTTPProtocol",
    "Page",
    "RedactSecrets",
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

# The module paths of before 0.1.0, for one release (see ratekeeper._moved); `uvicorn --factory
# ratekeeper.server._app:app_from_env` goes on working through them.
_register_moved(
    __name__,
    {
        "context": "_service_context",
        "middleware": "_request_middleware",
        **{
            name: f"_{name}"
            for name in (
                "admission",
                "app",
                "auth",
                "bodies",
                "cli",
                "cors",
                "dev",
                "dev_faults",
                "dev_requests",
                "http_metrics",
                "logs",
                "metrics_listener",
                "models",
                "protocol",
                "responses",
                "sessions",
                "settings",
                "thread_routes",
                "validation",
            )
        },
    },
)
