"""ChatKit's protocol models ↔ the REST shapes of ``/v1/chatkit/threads``.

openai-chatkit's ``ThreadMetadata`` and ``ThreadItem`` models are what a ``ChatKitServer``
reads and writes; the REST surface shows ``chatkit.thread`` and ``chatkit.thread_item``
objects (OpenAI's schema). Each direction lives here:

* :func:`rest_content` turns a ChatKit item into the type-specific fields of a REST item, or
  ``None`` for the items the REST schema has no shape for (hidden context, end of turn,
  generated images, structured input): those are kept for the protocol and never listed.
* :func:`chatkit_item` turns a stored item back into a ChatKit item: the exact model when the
  ChatKit store kept one beside it (as JSON, in ``extra``), a faithful conversion for items
  seeded through the conversation store's REST shapes.

Where the REST schema is narrower, the REST view says what it can: tags read as their text,
entity annotations are left out, task and workflow titles become ``heading``. The ChatKit view
never loses anything, since the ChatKit store keeps the original model. Pure functions only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chatkit.types import (
    ActiveStatus,
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    ClientToolCallItem,
    ClosedStatus,
    CustomTask,
    FileAttachment,
    FileSource,
    HiddenContextItem,
    ImageAttachment,
    InferenceOptions,
    LockedStatus,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    ThreadMetadata,
    ToolChoice,
    URLSource,
    UserMessageContent,
    UserMessageItem,
    UserMessageTextContent,
    WidgetItem,
    Workflow,
    WorkflowItem,
)
from chatkit.types import ThreadStatus as ChatKitThreadStatus
from chatkit.widgets import DynamicWidgetRoot
from pydantic import TypeAdapter, ValidationError

from ..store import StoredItem, StoredThread, ThreadStatus

_THREAD_ITEM: TypeAdapter[ThreadItem] = TypeAdapter(ThreadItem)


def unix_seconds(moment: datetime) -> int:
    """Return a ChatKit timestamp as the REST schema's integer Unix time (rounded down).

    openai-chatkit stamps items with naive local ``datetime.now()``; ``timestamp()`` reads a
    naive value as local time, so both naive and aware values convert correctly.
    """
    return math.floor(moment.timestamp())


def _moment(created_at: int) -> datetime:
    # Naive local time, like the timestamps openai-chatkit itself writes.
    return datetime.fromtimestamp(created_at)


# -- threads --------------------------------------------------------------------------------


def rest_status(status: ChatKitThreadStatus) -> ThreadStatus:
    """Return the REST thread status for a ChatKit one."""
    if isinstance(status, LockedStatus | ClosedStatus):
        return ThreadStatus(status.type, status.reason)
    return ThreadStatus()


def chatkit_status(status: ThreadStatus) -> ChatKitThreadStatus:
    """Return the ChatKit thread status for a REST one."""
    if status.type == "locked":
        return LockedStatus(reason=status.reason)
    if status.type == "closed":
        return ClosedStatus(reason=status.reason)
    return ActiveStatus()


def chatkit_thread(stored: StoredThread) -> ThreadMetadata:
    """Return the ChatKit ``ThreadMetadata`` of a stored thread (a fresh copy).

    Title and status come from the store, which the REST surface and automatic titling also
    write; the rest (full-precision ``created_at``, ``metadata``, ``allowed_image_domains``)
    from the model the ChatKit store kept, when there is one.
    """
    if stored.extra is not None:
        try:
            thread = ThreadMetadata.model_validate(stored.extra)
        except ValidationError:
            pass  # written by another program: rebuilt from the REST fields below
        else:
            thread.title = stored.title
            thread.status = chatkit_status(stored.status)
            return thread
    return ThreadMetadata(
        id=stored.id,
        title=stored.title,
        created_at=_moment(stored.created_at),
        status=chatkit_status(stored.status),
    )


# -- ChatKit item -> REST -------------------------------------------------------------------


def _rest_attachment(attachment: Attachment) -> dict[str, Any]:
    preview = attachment.preview_url if isinstance(attachment, ImageAttachment) else None
    return {
        "type": attachment.type,
        "id": attachment.id,
        "name": attachment.name,
        "mime_type": attachment.mime_type,
        "preview_url": str(preview) if preview is not None else None,
    }


def _rest_user_part(part: UserMessageContent) -> dict[str, Any]:
    # The REST schema knows plain text only: a tag reads as its label.
    return {"type": "input_text", "text": part.text}


def _rest_inference_options(options: InferenceOptions | None) -> dict[str, Any] | None:
    if options is None or (options.tool_choice is None and options.model is None):
        return None
    tool_choice = {"id": options.tool_choice.id} if options.tool_choice is not None else None
    return {"tool_choice": tool_choice, "model": options.model}


def _rest_annotations(annotations: list[Annotation]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for annotation in annotations:
        source = annotation.source
        if isinstance(source, URLSource):
            result.append({"type": "url", "source": {"type": "url", "url": source.url}})
        elif isinstance(source, FileSource):
            result.append({"type": "file", "source": {"type": "file", "filename": source.filename}})
        # Entity sources have no REST shape.
    return result


def _task_fields(task: Any) -> dict[str, Any]:
    task_type = "thought" if isinstance(task, ThoughtTask) else "custom"
    summary = getattr(task, "content", None)
    return {
        "type": task_type,
        "heading": getattr(task, "title", None),
        "summary": summary if isinstance(summary, str) else None,
    }


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def rest_content(item: ThreadItem) -> dict[str, Any] | None:
    """Return the type-specific REST fields of a ChatKit item, or ``None`` if it has no shape."""
    if isinstance(item, UserMessageItem):
        content = [_rest_user_part(part) for part in item.content]
        if item.quoted_text is not None:
            content.append({"type": "quoted_text", "text": item.quoted_text})
        return {
            "type": "chatkit.user_message",
            "content": content,
            "attachments": [_rest_attachment(a) for a in item.attachments],
            "inference_options": _rest_inference_options(item.inference_options),
        }
    if isinstance(item, AssistantMessageItem):
        return {
            "type": "chatkit.assistant_message",
            "content": [
                {
                    "type": "output_text",
                    "text": part.text,
                    "annotations": _rest_annotations(part.annotations),
                }
                for part in item.content
            ],
        }
    if isinstance(item, ClientToolCallItem):
        return {
            "type": "chatkit.client_tool_call",
            "status": "completed" if item.status == "completed" else "in_progress",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": _json_text(item.arguments),
            "output": None if item.output is None else _json_text(item.output),
        }
    if isinstance(item, WidgetItem):
        widget = item.widget.model_dump_json(exclude_none=True, by_alias=True)
        return {"type": "chatkit.widget", "widget": widget}
    if isinstance(item, TaskItem):
        fields = _task_fields(item.task)
        return {
            "type": "chatkit.task",
            "task_type": fields["type"],
            "heading": fields["heading"],
            "summary": fields["summary"],
        }
    if isinstance(item, WorkflowItem):
        return {
            "type": "chatkit.task_group",
            "tasks": [_task_fields(task) for task in item.workflow.tasks],
        }
    return None


# -- REST -> ChatKit item -------------------------------------------------------------------


def _chatkit_attachment(raw: Mapping[str, Any]) -> Attachment:
    preview = raw.get("preview_url")
    fields = {"id": raw["id"], "name": raw["name"], "mime_type": raw["mime_type"]}
    if raw.get("type") == "image" and preview:
        return ImageAttachment(**fields, preview_url=preview)
    return FileAttachment(**fields)


def _chatkit_inference_options(raw: Mapping[str, Any] | None) -> InferenceOptions:
    if not raw:
        return InferenceOptions()
    tool_choice = raw.get("tool_choice")
    return InferenceOptions(
        tool_choice=ToolChoice(id=tool_choice["id"]) if tool_choice else None,
        model=raw.get("model"),
    )


def _chatkit_annotation(raw: Mapping[str, Any]) -> Annotation | None:
    source = raw.get("source") or {}
    if raw.get("type") == "url" and "url" in source:
        return Annotation(source=URLSource(url=source["url"], title=source["url"]))
    if raw.get("type") == "file" and "filename" in source:
        filename = source["filename"]
        return Annotation(source=FileSource(filename=filename, title=filename))
    return None


def _chatkit_task(raw: Mapping[str, Any]) -> CustomTask | ThoughtTask:
    if raw.get("type", raw.get("task_type")) == "thought":
        return ThoughtTask(title=raw.get("heading"), content=raw.get("summary") or "")
    return CustomTask(title=raw.get("heading"), content=raw.get("summary"))


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _converted(stored: StoredItem) -> ThreadItem:
    content = stored.content
    if content is None:
        raise ValueError(f"hidden item {stored.id!r} has no ChatKit model kept beside it")
    kind = content["type"]
    base: dict[str, Any] = {
        "id": stored.id,
        "thread_id": stored.thread_id,
        "created_at": _moment(stored.created_at),
    }
    if kind == "chatkit.user_message":
        parts: list[UserMessageContent] = []
        quoted = None
        for part in content.get("content", ()):
            if part.get("type") == "quoted_text":
                quoted = part.get("text")
            else:
                parts.append(UserMessageTextContent(text=part.get("text", "")))
        return UserMessageItem(
            **base,
            content=parts,
            attachments=[_chatkit_attachment(a) for a in content.get("attachments", ())],
            quoted_text=quoted,
            inference_options=_chatkit_inference_options(content.get("inference_options")),
        )
    if kind == "chatkit.assistant_message":
        return AssistantMessageItem(
            **base,
            content=[
                AssistantMessageContent(
                    text=part.get("text", ""),
                    annotations=[
                        a
                        for a in map(_chatkit_annotation, part.get("annotations", ()))
                        if a is not None
                    ],
                )
                for part in content.get("content", ())
            ],
        )
    if kind == "chatkit.client_tool_call":
        arguments = _loads(content.get("arguments"))
        return ClientToolCallItem(
            **base,
            status="completed" if content.get("status") == "completed" else "pending",
            call_id=content["call_id"],
            name=content["name"],
            arguments=arguments if isinstance(arguments, dict) else {"value": arguments},
            output=_loads(content.get("output")),
        )
    if kind == "chatkit.widget":
        return WidgetItem(**base, widget=DynamicWidgetRoot.model_validate_json(content["widget"]))
    if kind == "chatkit.task":
        return TaskItem(**base, task=_chatkit_task(content))
    if kind == "chatkit.task_group":
        tasks = [_chatkit_task(task) for task in content.get("tasks", ())]
        return WorkflowItem(**base, workflow=Workflow(type="custom", tasks=list(tasks)))
    raise ValueError(f"no ChatKit shape for a REST item of type {kind!r}")


def _kept_item(extra: Any) -> ThreadItem:
    """Read back a ChatKit item the ChatKit store kept as JSON.

    A widget is read as the ``DynamicWidgetRoot`` that ``WidgetTemplate.build`` returns:
    validating it as ``ThreadItem`` would pick one of openai-chatkit's named widget classes
    (``Card``…), which openai-chatkit deprecates (a ``DeprecationWarning`` on every read) and
    which is not the model the server saved. The JSON a client receives is the same.
    """
    if isinstance(extra, Mapping) and extra.get("type") == "widget":
        widget = DynamicWidgetRoot.model_validate(extra.get("widget"))
        return WidgetItem.model_validate({**extra, "widget": widget})
    return _THREAD_ITEM.validate_python(extra)


def chatkit_item(stored: StoredItem) -> ThreadItem:
    """Return the ChatKit item for a stored REST item (a fresh copy).

    A seeded item whose content cannot be read as ChatKit's model (say, a widget that is not
    valid widget JSON) comes back as a ``HiddenContextItem`` holding the REST content, which
    openai-chatkit never sends to the client: the thread still loads.
    """
    if stored.extra is not None:
        try:
            return _kept_item(stored.extra)
        except ValidationError:
            pass  # not a ChatKit item (written by another program): convert the REST fields
    try:
        return _converted(stored)
    except (KeyError, TypeError, ValueError, ValidationError):
        return HiddenContextItem(
            id=stored.id,
            thread_id=stored.thread_id,
            created_at=_moment(stored.created_at),
            content=dict(stored.content or {}),
        )
