"""What every route needs, in one object on ``app.state``: settings, gate, store, keys."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import Scope

from .._bearer import bearer_token_in
from .._gate import Gate
from .._redact import SHAPES, Redactor
from .._tokens import AttachmentTokens
from ..store import ConversationStore
from ._auth import ApiKeys, check_beta, check_beta_values
from ._settings import ServerSettings


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """The service's parts, shared by its routes.

    Attributes:
        settings: the service's settings.
        gate: creates, reads and cancels sessions and admits session requests.
        store: the conversation store behind ``/v1/chatkit/threads`` and ``/chatkit``.
        api_keys: the keys accepted on the REST surface.
        redactor: hides client secrets and these keys in every error body, log record and
            echoed request id (:mod:`ratekeeper._redact`).
        tokens: derives attachment upload and preview tokens and puts them back into the
            stored URLs the REST surface lists (:mod:`ratekeeper._tokens`).

    Immutable; its parts document their own thread-safety.
    """

    settings: ServerSettings
    gate: Gate
    store: ConversationStore
    api_keys: ApiKeys
    redactor: Redactor = field(default=SHAPES)
    tokens: AttachmentTokens = field(default_factory=AttachmentTokens.for_this_process)

    @staticmethod
    def of(request: Request) -> ServiceContext:
        """Return the context of the app serving ``request``."""
        ctx: ServiceContext = request.app.state.ratekeeper
        return ctx

    def authorize(self, request: Request) -> None:
        """Check the API key, then the ``OpenAI-Beta`` header (unless relaxed).

        Raises:
            ApiError: 401 for a missing or wrong key, 400 ``invalid_beta`` for the header.
        """
        self.api_keys.require(request)
        if not self.settings.allow_missing_beta_header:
            check_beta(request)

    def authorize_scope(self, scope: Scope) -> None:
        """:meth:`authorize` for an HTTP request's ASGI scope: the same checks and answers,
        without building a :class:`~starlette.requests.Request` and its headers."""
        headers = scope["headers"]
        self.api_keys.require_token(bearer_token_in(headers))
        if not self.settings.allow_missing_beta_header:
            # As Starlette's ``headers.getlist`` reads them: the name as sent, in lower case.
            check_beta_values(
                [value.decode("latin-1") for name, value in headers if name == b"openai-beta"]
            )
