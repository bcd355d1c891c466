"""The ChatKit protocol endpoint (custom-backend mode), guarded by the session's client secret.

Needs ``openai-chatkit`` (``pip install 'ratekeeper[chatkit]'``). The service mounts it at
``POST /chatkit`` on its own; to build it yourself::

    from ratekeeper.chatkit import chatkit_routes

    routes = chatkit_routes(gate, conversation_store, server_factory=MyChatKitServer)

See ``docs/chatkit.md``.
"""

from __future__ import annotations

import warnings

# openai-chatkit's widgets module deprecates its own named widget classes while defining them,
# so importing it warns once; silence exactly that, so `-W error` runs still import us.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message="Direct usage of named widget classes is deprecated",
        category=DeprecationWarning,
    )
    import chatkit.server  # noqa: F401 - imported here, under the filter, for every submodule

from .._moved import register_moved as _register_moved
from .._tokens import AttachmentTokens
from ._attachments import ChatKitAttachmentStore, UploadRefused
from ._context import ChatKitContext
from ._gateway import admit_authorization, bearer_secret, check_authorization, verdict_response
from ._limits import ChatKitLimitError, thread_title
from ._responder import EchoChatKitServer, adopt_stored_title, echo_text
from ._route import (
    DEFAULT_MAX_BODY_BYTES,
    ChatKitEndpoint,
    ServerFactory,
    chatkit_routes,
    echo_server,
)
from ._store import ChatKitStore

__all__ = (
    "DEFAULT_MAX_BODY_BYTES",
    "AttachmentTokens",
    "ChatKitAttachmentStore",
    "ChatKitContext",
    "ChatKitEndpoint",
    "ChatKitLimitError",
    "ChatKitStore",
    "EchoChatKitServer",
    "ServerFactory",
    "UploadRefused",
    "admit_authorization",
    "adopt_stored_title",
    "bearer_secret",
    "chatkit_routes",
    "check_authorization",
    "echo_server",
    "echo_text",
    "thread_title",
    "verdict_response",
)

# The module paths of before 0.1.0, for one release (see ratekeeper._moved).
_register_moved(
    __name__,
    {
        name: f"_{name}"
        for name in (
            "attachments",
            "context",
            "gateway",
            "limits",
            "responder",
            "rest_shapes",
            "route",
            "store",
        )
    },
)
