"""``POST /chatkit``: the ChatKit protocol endpoint, guarded by the session's client secret.

Every request goes through the same steps, each refusing before the next does any work:

1. the gate admits and counts it by ``Authorization: Bearer <client_secret>`` (401 for a
   missing, unknown, expired or cancelled secret; 429 with the rate-limit headers when the
   session used its ``max_requests_per_1_minute``), all through :meth:`Gate.check
   <ratekeeper.Gate.check>`, the one home of those answers;
2. the body is read (size cap) and parsed as a ChatKit request (400 for anything else);
3. the session's limits that apply to this kind of request are checked
   (:mod:`ratekeeper.chatkit.limits`), and the thread and attachments it names must be the
   user's (404);
4. the ``ChatKitServer`` processes it with a :class:`~ratekeeper.chatkit._context.
   ChatKitContext`: SSE for streaming operations, JSON for the rest.

So a rejection always comes before a stream starts; an error inside a stream is reported as
ChatKit's own ``error`` event. Admitted responses carry the rate-limit headers.

Every error leaves through :meth:`ChatKitEndpoint._respond` (failures are mapped to answers by
the REST surface's table, :data:`ratekeeper._http_errors.ANSWERS`, plus the endpoint's own
rows), or in a stream ChatKit's ``error`` event, which hide client secrets (and the API keys of
the service, given as ``redactor``) in what they say: a thread id, an attachment id or a request
``type`` a client sent is often quoted back.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from chatkit.errors import ErrorCode
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    ChatKitReq,
    ErrorEvent,
    ThreadsListReq,
    UserMessageInput,
)
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .._clock import Clock
from .._errors import BackendError, SessionNotFound
from .._gate import Gate
from .._http_errors import ANSWERS, ApiError, ErrorAnswer, answer_for, error_response
from .._json_body import read_json_body
from .._ratelimit_headers import verdict_for
from .._redact import SHAPES, Redactor
from .._tokens import AttachmentTokens
from .._types import Decision, Reason, Session, SessionStatus
from ..store import (
    AttachmentNotFound,
    ConversationStore,
    ThreadNotFound,
    UnstorableValue,
)
from ._attachments import ChatKitAttachmentStore, UploadRefused
from ._context import ChatKitContext
from ._gateway import admit_authorization, verdict_response
from ._limits import ChatKitLimitError, check_upload_size, history_refusal, upload_refusal
from ._responder import EchoChatKitServer
from ._store import ChatKitStore

#: Largest request body accepted by default (``input.transcribe`` carries base64 audio).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# Room for the multipart framing around an uploaded file's bytes.
_MULTIPART_OVERHEAD = 64 * 1024
# The longest error message answered (after redaction): client input quoted in one is cut.
_MAX_MESSAGE = 400
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# An image preview is served from the service's own origin, with a type the client declared:
# one that is no plain `image/<subtype>` (a header injection, parameters, non-ASCII) is served
# as bytes, and whatever it is, it may run and load nothing (an SVG's script, opened as a page)
# nor hand its token-bearing URL on as a Referer.
_IMAGE_TYPE = re.compile(r"image/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")
_PREVIEW_HEADERS = {
    "cache-control": "private, max-age=3600",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "referrer-policy": "no-referrer",
}
_logger = logging.getLogger("ratekeeper.chatkit")

#: Builds the ``ChatKitServer`` on the endpoint's stores: ``factory(store, attachment_store)``.
#: Build yours on these two, so its threads are the REST surface's threads.
ServerFactory = Callable[[ChatKitStore, ChatKitAttachmentStore], ChatKitServer[ChatKitContext]]
# Bytes read from an uploaded file at a time, on their way into the conversation store.
_UPLOAD_CHUNK = 256 * 1024


def echo_server(
    store: ChatKitStore, attachment_store: ChatKitAttachmentStore
) -> ChatKitServer[ChatKitContext]:
    """The default :data:`ServerFactory`: the built-in :class:`EchoChatKitServer`."""
    return EchoChatKitServer(store, attachment_store)


def _ended_session(status: str) -> ErrorAnswer:
    """The gate's own 401 for a session that ended (or vanished) after admission."""
    verdict = verdict_for(Decision(False, Reason(status), 0, 0, math.inf, 0.0))
    assert verdict.error is not None
    error = verdict.error["error"]
    return ErrorAnswer(
        verdict.status_code,
        error["message"],
        error["type"],
        error["code"],
        error["param"],
        dict(verdict.headers),
    )


def _session_not_found(exc: Exception) -> ErrorAnswer:
    # Purged between admission and reserve_upload: the gate's 401, not the REST surface's 404.
    return _ended_session(Reason.UNKNOWN_SESSION)


def _limit_error(exc: Exception) -> ErrorAnswer:
    assert isinstance(exc, ChatKitLimitError)
    return ErrorAnswer(exc.status_code, exc.message, code=exc.code, param=exc.param)


def _not_found(exc: Exception) -> ErrorAnswer:
    # A custom server's own reads of the store, then openai-chatkit's NotFoundError.
    message = exc.message if isinstance(exc, ThreadNotFound | AttachmentNotFound) else f"{exc}."
    return ErrorAnswer(404, message, code="not_found", quotes_input=True)


def _invalid_request(exc: Exception) -> ErrorAnswer:
    assert isinstance(exc, ValidationError)
    message, param = _validation_message(exc)
    return ErrorAnswer(400, message, code="invalid_chatkit_request", param=param, quotes_input=True)


def _unsupported(exc: Exception) -> ErrorAnswer:
    return ErrorAnswer(
        501, "This ChatKit server does not support that operation.", code="unsupported_operation"
    )


#: The REST surface's table (:data:`ratekeeper._http_errors.ANSWERS`) with the endpoint's own
#: rows: its limits, ChatKit's request and lookup errors, a session gone after admission.
_ANSWERS: Mapping[type[Exception], Callable[[Exception], ErrorAnswer]] = {
    **ANSWERS,
    SessionNotFound: _session_not_found,
    ThreadNotFound: _not_found,
    AttachmentNotFound: _not_found,
    NotFoundError: _not_found,
    ChatKitLimitError: _limit_error,
    ValidationError: _invalid_request,
    NotImplementedError: _unsupported,
}


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors(include_url=False, include_input=False)[0]
    parts = tuple(first.get("loc", ()))
    if parts and not str(first.get("type", "")).startswith("union_tag"):
        # ChatKit requests are a union tagged by `type`: drop the tag, keep the body's path.
        parts = parts[1:]
    loc = ".".join(str(part) for part in parts)
    # Cut by _error, after redaction: a cut made first could leave half a secret unrecognised.
    detail = str(first.get("msg", "invalid value"))
    if loc:
        return f"Invalid ChatKit request: '{loc}': {detail}.", loc
    return f"Invalid ChatKit request: {detail}.", None


class ChatKitEndpoint:
    """The ChatKit protocol endpoint and its attachment upload route.

    Args:
        gate: admits requests by client secret (and holds the sessions).
        conversations: the conversation store the REST surface reads; the ``ChatKitServer``
            writes to it through a :class:`~ratekeeper.chatkit.ChatKitStore`.
        server_factory: builds the ``ChatKitServer`` from the ChatKit store and the attachment
            store; :func:`echo_server` by default. The gate wraps whatever it returns.
        path: where the endpoint is served; uploads go to ``{path}/attachments/{id}/upload``,
            image previews are served from ``{path}/attachments/{id}/preview``.
        max_body_bytes: largest request body accepted (413 above it).
        public_url: the service's external base URL (e.g. ``https://chat.example.com``),
            for upload URLs behind a proxy; the request's own base URL when ``None``.
        clock: stamps new attachments; the system clock by default.
        redactor: hides secrets in every error it answers; by default what is shaped like a
            client secret or a credential (the service passes its own, which knows its API
            keys too).
        tokens: derives the upload and preview tokens (never stored); every worker and host
            sharing ``conversations`` needs the same key (this process's own random key when
            ``None``).

    Attributes:
        store: the ChatKit ``Store``.
        attachments: the ChatKit ``AttachmentStore``.
        server: the ``ChatKitServer``.

    openai-chatkit runs on asyncio (it calls ``asyncio.sleep``), so serve this endpoint from
    an asyncio event loop (uvicorn's). Not thread-safe: one event loop.
    """

    def __init__(
        self,
        gate: Gate,
        conversations: ConversationStore,
        server_factory: ServerFactory | None = None,
        *,
        path: str = "/chatkit",
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        public_url: str | None = None,
        clock: Clock | None = None,
        redactor: Redactor = SHAPES,
        tokens: AttachmentTokens | None = None,
    ) -> None:
        if not path.startswith("/") or path.endswith("/"):
            raise ValueError(f"path must start with '/' and not end with one, got {path!r}")
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
        self.gate = gate
        self.redactor = redactor
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.public_url = public_url.rstrip("/") if public_url is not None else None
        self.store = ChatKitStore(conversations, clock=clock, tokens=tokens)
        self.attachments = ChatKitAttachmentStore(conversations, clock=clock, tokens=tokens)
        factory = server_factory if server_factory is not None else echo_server
        server = factory(self.store, self.attachments)
        if not isinstance(server, ChatKitServer):
            raise TypeError(f"server_factory must return a ChatKitServer, got {type(server)!r}")
        self.server = server
        self._requests: TypeAdapter[Any] = TypeAdapter(ChatKitReq)

    def routes(self) -> list[Route]:
        """Return the Starlette routes: the protocol endpoint, uploads and image previews."""
        return [
            Route(self.path, self.handle, methods=["POST"]),
            Route(
                f"{self.path}/attachments/{{attachment_id}}/upload", self.upload, methods=["POST"]
            ),
            Route(
                f"{self.path}/attachments/{{attachment_id}}/preview",
                self.preview,
                methods=["GET"],
            ),
        ]

    def _error(self, status_code: int, message: str, code: str | None, **options: Any) -> Response:
        """An error the endpoint answers itself (its message may quote a request)."""
        return self._respond(
            ErrorAnswer(status_code, message, code=code, quotes_input=True, **options)
        )

    def _answer(self, exc: Exception, headers: Mapping[str, str] | None = None) -> Response:
        """Answer a request the endpoint could not serve, before any stream: the failure's
        row of :data:`_ANSWERS`, else a 500 (logged)."""
        answer = answer_for(exc, _ANSWERS)
        if answer is None:
            _logger.error("ChatKit request failed: %s", type(exc).__name__, exc_info=exc)
            answer = ErrorAnswer(
                500,
                "The ChatKit server had an error while processing your request.",
                "server_error",
            )
        return self._respond(answer, headers)

    def _respond(self, answer: ErrorAnswer, headers: Mapping[str, str] | None = None) -> Response:
        """The response of ``answer``, with ``headers`` (the verdict's) under its own: through
        :func:`~ratekeeper._http_errors.error_response` with this endpoint's redactor, a message
        quoting a request cut short after redaction."""
        if answer.quotes_input:
            answer = answer._replace(message=self.redactor.echo(answer.message, _MAX_MESSAGE))
        return error_response(
            answer._replace(headers={**(headers or {}), **(answer.headers or {})}), self.redactor
        )

    # -- the protocol endpoint -------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Serve one ChatKit protocol request (see the module's docstring for the steps)."""
        # One backend call decides, counts and returns the session (one Redis round trip).
        verdict, session = await admit_authorization(
            self.gate, request.headers.get("authorization")
        )
        if not verdict.allowed:
            return verdict_response(verdict)
        headers = dict(verdict.headers)
        if session is None:  # an admitted request always carries its session
            return self._respond(_ended_session(Reason.UNKNOWN_SESSION), headers)
        try:
            body = await read_json_body(request, self.max_body_bytes)
            parsed = self._requests.validate_json(body)
        except (ApiError, ValidationError) as exc:
            return self._answer(exc, headers)

        context = self._context(request, session, verdict.decision)
        try:
            await self._check_limits(parsed, context)
            result = await self.server.process(body, context)
        except Exception as exc:  # every failure becomes an OpenAI-shaped answer
            return self._answer(exc, headers)
        if isinstance(result, StreamingResult):
            return StreamingResponse(
                self._events(result),
                media_type="text/event-stream",
                headers={**headers, **_SSE_HEADERS},
            )
        return Response(result.json, media_type="application/json", headers=headers)

    def _context(
        self, request: Request, session: Session, decision: Decision | None
    ) -> ChatKitContext:
        base = self.public_url if self.public_url is not None else str(request.base_url)
        upload_base = f"{base.rstrip('/')}{self.path}/attachments/"
        return ChatKitContext(session, decision, upload_base, request)

    async def _check_limits(self, request: Any, context: ChatKitContext) -> None:
        """Refuse what the session's limits forbid, and names of what is not the user's.

        Raises:
            ChatKitLimitError: a ``history`` or ``file_upload`` limit refuses the request.
            NotFoundError: the request names a thread or attachment the user does not have.
            NotImplementedError: attachments were asked of a server without an attachment store.
        """
        if isinstance(request, ThreadsListReq):
            refusal = history_refusal(context.history)
            if refusal is not None:
                raise refusal
        if (
            isinstance(request, AttachmentsCreateReq | AttachmentsDeleteReq)
            and self.server.attachment_store is None
        ):
            raise NotImplementedError("this ChatKit server does not accept attachments")
        if isinstance(request, AttachmentsCreateReq):
            size = request.params.size
            check_upload_size(size)
            decision = await self.gate.reserve_upload(context.session_id, size)
            refusal = upload_refusal(decision, size, context.file_upload)
            if refusal is not None:
                raise refusal
        store = self.server.store
        params = getattr(request, "params", None)
        thread_id = getattr(params, "thread_id", None)
        if isinstance(thread_id, str):
            await store.load_thread(thread_id, context)
        user_input = getattr(params, "input", None)
        if isinstance(user_input, UserMessageInput):
            for attachment_id in user_input.attachments:
                await store.load_attachment(attachment_id, context)

    async def _events(self, result: StreamingResult) -> AsyncIterator[bytes]:
        """Relay a stream; a failure after it started becomes ChatKit's ``error`` event."""
        try:
            async for chunk in result:
                yield chunk
        except Exception as exc:  # the client must hear of it, in-stream
            if isinstance(exc, ChatKitLimitError | NotFoundError):
                message = self.redactor.echo(str(exc), _MAX_MESSAGE)
                event = ErrorEvent(code="custom", message=message, allow_retry=False)
            elif isinstance(exc, UnstorableValue):
                event = ErrorEvent(code="custom", message=exc.public_message, allow_retry=False)
            elif isinstance(exc, BackendError):  # the store or backend went away mid-stream
                _logger.warning("ChatKit stream failed: %s", type(exc.__cause__).__name__)
                event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)
            else:
                _logger.error("ChatKit stream failed: %s", type(exc).__name__, exc_info=exc)
                event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)
            # Serialized as openai-chatkit serializes its own events.
            data = event.model_dump_json(by_alias=True, exclude_none=True)
            yield b"data: " + data.encode() + b"\n\n"

    # -- two-phase attachment uploads ------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        """Receive an attachment's bytes (``multipart/form-data``, field ``file``).

        The URL's single-use token, issued by ``attachments.create``, authorizes the upload;
        the session that created the attachment must still be active.
        """
        attachment_id = request.path_params["attachment_id"]
        token = request.query_params.get("token", "")
        try:
            pending = await self.attachments.pending(attachment_id, token)
        except BackendError as exc:
            return self._answer(exc)
        if pending is None or pending.session_id is None or pending.declared_bytes is None:
            return self._error(
                404,
                "No upload is pending for this attachment, or its upload URL is not valid.",
                "upload_not_found",
            )
        try:
            session = await self.gate.get(pending.session_id)
        except (SessionNotFound, BackendError) as exc:
            return self._answer(exc)
        if session.status is not SessionStatus.ACTIVE:
            return self._respond(_ended_session(session.status.value))
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            return self._error(411, "Uploads need a Content-Length header.", "length_required")
        if int(declared) > pending.declared_bytes + _MULTIPART_OVERHEAD:
            return self._error(
                413,
                f"The upload is larger than the {pending.declared_bytes} bytes declared when "
                "the attachment was created.",
                "file_too_large",
            )
        try:
            # Starlette spools the file to disk past 1 MB; from there it is streamed into the
            # conversation store, so no upload is ever held whole in memory.
            async with request.form(max_files=1, max_fields=16) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    return self._error(
                        400,
                        "Send the file as multipart/form-data in a field named 'file'.",
                        "missing_required_parameter",
                        param="file",
                    )
                attachment = await self.attachments.accept(pending, _file_chunks(upload))
        except (MultiPartException, ClientDisconnect) as exc:
            return self._error(400, f"Malformed upload: {exc}", "invalid_upload")
        except HTTPException as exc:  # Starlette re-raises a MultiPartException as this
            return self._error(400, f"Malformed upload: {exc.detail}", "invalid_upload")
        except UploadRefused as exc:
            return self._error(exc.status_code, exc.message, exc.code)
        except BackendError as exc:
            return self._answer(exc)
        body = attachment.model_dump_json(exclude_none=True, context={"exclude_metadata": True})
        return Response(body, media_type="application/json")

    async def preview(self, request: Request) -> Response:
        """Serve an uploaded image's bytes to the holder of its preview URL."""
        attachment_id = request.path_params["attachment_id"]
        gone = self._error(404, "No image preview at this URL.", "not_found")
        try:
            stored = await self.attachments.preview(
                attachment_id, request.query_params.get("token", "")
            )
            if stored is None:
                return gone
            chunks = self.store.conversations.read_attachment_bytes(attachment_id)
            # The first block is read before the answer starts: bytes deleted since the token
            # was checked (by another worker, say) are still a 404, not a 200 cut short.
            first = await anext(chunks, b"")
        except AttachmentNotFound:
            return gone
        except BackendError as exc:
            return self._answer(exc)
        attachment = stored.data.get("attachment") or {}
        media_type = str(attachment.get("mime_type") or "").lower()
        if _IMAGE_TYPE.fullmatch(media_type) is None:
            media_type = "application/octet-stream"
        return StreamingResponse(
            _prepend(first, chunks),
            media_type=media_type,
            headers={**_PREVIEW_HEADERS, "content-length": str(stored.size_bytes)},
        )


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


async def _file_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await upload.read(_UPLOAD_CHUNK):
        yield chunk


def chatkit_routes(
    gate: Gate,
    conversations: ConversationStore,
    server_factory: ServerFactory | None = None,
    **options: Any,
) -> list[Route]:
    """Return the routes of a :class:`ChatKitEndpoint` (``POST /chatkit`` and its uploads).

    Args:
        gate: admits requests by client secret.
        conversations: the conversation store the REST surface reads.
        server_factory: builds your ``ChatKitServer`` on the endpoint's stores; the echo
            server when ``None``.
        **options: the keyword arguments of :class:`ChatKitEndpoint` (``path``, …).
    """
    return ChatKitEndpoint(gate, conversations, server_factory, **options).routes()
