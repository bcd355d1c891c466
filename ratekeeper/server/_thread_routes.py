"""``/v1/chatkit/threads``: list, retrieve, delete, and list a thread's items."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..store import Page
from ._queries import parse_list_query, parse_thread_list_query
from ._service_context import ServiceContext


def _envelope(page: Page[Any]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [entry.to_json() for entry in page.data],
        "first_id": page.first_id,
        "last_id": page.last_id,
        "has_more": page.has_more,
    }


async def list_threads(request: Request) -> JSONResponse:
    """List threads, newest first by default (``ListThreadsMethod``)."""
    ctx = ServiceContext.of(request)
    ctx.authorize(request)
    query = parse_thread_list_query(request.query_params)
    page = await ctx.store.list_threads(
        user=query.user,
        limit=query.limit,
        order=query.order,
        after=query.after,
        before=query.before,
    )
    return JSONResponse(_envelope(page))


def _items_envelope(page: Page[Any], ctx: ServiceContext) -> dict[str, Any]:
    """:func:`_envelope` of items, their attachments' upload and preview tokens put back."""
    envelope = _envelope(page)
    envelope["data"] = [ctx.tokens.issue_item(item) for item in envelope["data"]]
    return envelope


async def retrieve_thread(request: Request) -> JSONResponse:
    """Return one thread (``GetThreadMethod``)."""
    ctx = ServiceContext.of(request)
    ctx.authorize(request)
    thread = await ctx.store.get_thread(request.path_params["thread_id"])
    return JSONResponse(thread.to_json())


async def delete_thread(request: Request) -> JSONResponse:
    """Delete a thread and its items (``DeleteThreadMethod``)."""
    ctx = ServiceContext.of(request)
    ctx.authorize(request)
    thread = await ctx.store.delete_thread(request.path_params["thread_id"])
    return JSONResponse({"id": thread.id, "object": "chatkit.thread.deleted", "deleted": True})


async def thread_resource(request: Request) -> JSONResponse:
    """``/v1/chatkit/threads/{thread_id}``: GET retrieves, DELETE deletes.

    One route for both methods, so a wrong method's 405 names both in ``Allow``.
    """
    if request.method == "DELETE":
        return await delete_thread(request)
    return await retrieve_thread(request)


async def list_thread_items(request: Request) -> JSONResponse:
    """List a thread's items (``ListThreadItemsMethod``)."""
    ctx = ServiceContext.of(request)
    ctx.authorize(request)
    query = parse_list_query(request.query_params)
    page = await ctx.store.list_items(
        request.path_params["thread_id"],
        limit=query.limit,
        order=query.order,
        after=query.after,
        before=query.before,
    )
    return JSONResponse(_items_envelope(page, ctx))
