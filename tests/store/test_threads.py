"""Threads and items on every store: seeding, updates, deletion, hidden items, pagination.

Ported from the in-memory ThreadStore's tests; each runs on memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratekeeper import InvalidParameter, ManualClock
from ratekeeper.store import (
    ConversationStore,
    ThreadNotFound,
    ThreadStatus,
    assistant_message,
    user_message,
)

from .conftest import Backing

pytestmark = pytest.mark.anyio

_users = itertools.count()


async def test_created_at_comes_from_the_clock_floored(backing: Backing) -> None:
    """Without an explicit created_at, the store's clock gives a whole second."""
    store = await backing.make(ManualClock(start=1_700_000_000.75))
    thread = await store.create_thread("u")
    item = await store.add_item(thread.id, user_message("hi"))
    assert thread.created_at == 1_700_000_000
    assert item.created_at == 1_700_000_000
    assert thread.id.startswith("cthr_")
    assert item.id.startswith("cthi_")
    assert (await store.get_thread(thread.id)).created_at == 1_700_000_000
    assert (await store.get_item(thread.id, item.id)).created_at == 1_700_000_000


@pytest.mark.parametrize("created_at", [1.5, True, "1"])
async def test_created_at_must_be_an_integer(store: ConversationStore, created_at: Any) -> None:
    """An explicit created_at is an integer Unix time, never a float, bool or string."""
    with pytest.raises(ValueError, match="created_at"):
        await store.create_thread("u", created_at=created_at)
    thread = await store.create_thread("u")
    with pytest.raises(ValueError, match="created_at"):
        await store.add_item(thread.id, user_message("hi"), created_at=created_at)


async def test_update_thread_changes_title_and_status_only_when_given(
    store: ConversationStore,
) -> None:
    """Leaving title out keeps it; title=None clears it; user and created_at never change."""
    thread = await store.create_thread("u", title="first")
    locked = await store.update_thread(thread.id, status=ThreadStatus("locked", "review"))
    assert locked.title == "first"
    assert locked.status.to_json() == {"type": "locked", "reason": "review"}
    cleared = await store.update_thread(thread.id, title=None)
    assert cleared.title is None
    assert cleared.status == locked.status
    assert (cleared.user, cleared.created_at) == (thread.user, thread.created_at)
    assert await store.get_thread(thread.id) == cleared
    closed = await store.update_thread(thread.id, status=ThreadStatus("closed", None))
    assert (await store.get_thread(thread.id)).status == closed.status == ThreadStatus("closed")
    assert await store.update_thread(thread.id) == closed


async def test_missing_threads_are_thread_not_found(store: ConversationStore) -> None:
    """Every thread operation on an unknown id raises ThreadNotFound."""
    with pytest.raises(ThreadNotFound):
        await store.get_thread("cthr_missing")
    with pytest.raises(ThreadNotFound):
        await store.update_thread("cthr_missing", title="x")
    with pytest.raises(ThreadNotFound):
        await store.update_thread("cthr_missing")
    with pytest.raises(ThreadNotFound):
        await store.delete_thread("cthr_missing")
    with pytest.raises(ThreadNotFound):
        await store.add_item("cthr_missing", user_message("hi"))
    with pytest.raises(ThreadNotFound):
        await store.list_items("cthr_missing")
    with pytest.raises(ThreadNotFound) as caught:
        await store.get_item("cthr_missing", "cthi_x")
    assert caught.value.item_id is None


async def test_delete_thread_returns_it_and_takes_its_items(store: ConversationStore) -> None:
    """A deleted thread is gone with its items; deleting it again is ThreadNotFound."""
    thread = await store.create_thread("u", title="t")
    item = await store.add_item(thread.id, user_message("hi"))
    assert await store.delete_thread(thread.id) == thread
    with pytest.raises(ThreadNotFound):
        await store.get_thread(thread.id)
    with pytest.raises(ThreadNotFound):
        await store.get_item(thread.id, item.id)
    with pytest.raises(ThreadNotFound):
        await store.delete_thread(thread.id)
    assert await store.count_threads() == 0


async def test_a_deleted_thread_id_can_be_used_again(store: ConversationStore) -> None:
    """Once deleted, a thread's id is free; the new thread starts without items."""
    thread = await store.create_thread("u", thread_id="cthr_again")
    await store.add_item(thread.id, user_message("old"), item_id="cthi_1")
    await store.delete_thread(thread.id)
    again = await store.create_thread("v", thread_id="cthr_again")
    assert again.user == "v"
    assert (await store.list_items(again.id)).data == []
    item = await store.add_item(again.id, user_message("new"), item_id="cthi_1")
    assert (await store.get_item(again.id, "cthi_1")).content == item.content


async def test_items_update_in_place_and_delete(store: ConversationStore) -> None:
    """update_item keeps an item's place; delete_item removes it; both 404 when absent."""
    thread = await store.create_thread("u")
    first = await store.add_item(thread.id, user_message("a"), created_at=1)
    second = await store.add_item(thread.id, assistant_message("b"), created_at=2)
    await store.update_item(thread.id, first.id, user_message("edited"))
    page = await store.list_items(thread.id, order="asc")
    assert [i.id for i in page.data] == [first.id, second.id]
    assert page.data[0].content is not None
    assert page.data[0].content["content"][0]["text"] == "edited"
    assert (await store.delete_item(thread.id, first.id)).id == first.id
    assert [i.id for i in (await store.list_items(thread.id)).data] == [second.id]
    with pytest.raises(ThreadNotFound) as caught:
        await store.get_item(thread.id, first.id)
    assert caught.value.item_id == first.id
    with pytest.raises(ThreadNotFound):
        await store.update_item(thread.id, first.id, user_message("x"))
    with pytest.raises(ThreadNotFound):
        await store.delete_item(thread.id, first.id)


async def test_extra_data_is_kept_but_never_shown(store: ConversationStore) -> None:
    """Adapters keep JSON data in `extra`; the REST shape never includes it."""
    marker = {"native": {"kind": "ThreadMetadata", "n": [1, 2.5, None, True]}}
    thread = await store.create_thread("u", extra=marker)
    item = await store.add_item(thread.id, user_message("hi"), extra=marker)
    assert (await store.get_thread(thread.id)).extra == marker
    assert (await store.get_item(thread.id, item.id)).extra == marker
    assert "extra" not in thread.to_json()
    assert "extra" not in item.to_json()


async def test_extra_is_replaced_only_when_given(store: ConversationStore) -> None:
    """update_thread/update_item keep extra when passed None, replace it otherwise."""
    thread = await store.create_thread("u", extra={"v": 1})
    item = await store.add_item(thread.id, user_message("hi"), extra={"v": 1})
    assert (await store.update_thread(thread.id, title="t")).extra == {"v": 1}
    assert (await store.update_item(thread.id, item.id, user_message("x"))).extra == {"v": 1}
    assert (await store.update_thread(thread.id, extra=["v", 2])).extra == ["v", 2]
    assert (await store.update_item(thread.id, item.id, None, extra="v3")).extra == "v3"
    assert (await store.get_thread(thread.id)).extra == ["v", 2]
    assert (await store.get_item(thread.id, item.id)).extra == "v3"


@pytest.mark.parametrize("extra", [object(), {"x": {1, 2}}, {"x": math.nan}, b"bytes"])
async def test_extra_that_is_not_json_is_refused(store: ConversationStore, extra: Any) -> None:
    """Every store keeps extra as JSON, so no store accepts what JSON cannot hold."""
    with pytest.raises(ValueError, match="JSON"):
        await store.create_thread("u", extra=extra)
    thread = await store.create_thread("u")
    with pytest.raises(ValueError, match="JSON"):
        await store.add_item(thread.id, user_message("hi"), extra=extra)
    item = await store.add_item(thread.id, user_message("hi"))
    with pytest.raises(ValueError, match="JSON"):
        await store.update_thread(thread.id, extra=extra)
    with pytest.raises(ValueError, match="JSON"):
        await store.update_item(thread.id, item.id, user_message("x"), extra=extra)
    assert await store.count_threads() == 1
    assert (await store.get_item(thread.id, item.id)).extra is None


@pytest.mark.parametrize(
    "content",
    [{}, {"type": "message"}, {"type": "chatkit.widget", "id": "x"}],
)
async def test_bad_item_content_is_refused(
    store: ConversationStore, content: dict[str, object]
) -> None:
    """Content needs a known type and must not set the fields the store owns."""
    thread = await store.create_thread("u")
    with pytest.raises(ValueError, match=r"type|must not set"):
        await store.add_item(thread.id, content)
    item = await store.add_item(thread.id, user_message("hi"))
    with pytest.raises(ValueError, match=r"type|must not set"):
        await store.update_item(thread.id, item.id, content)


async def test_duplicate_ids_and_empty_user_are_refused(store: ConversationStore) -> None:
    """Explicit ids must be unique; a thread needs a user."""
    await store.create_thread("u", thread_id="cthr_1")
    with pytest.raises(ValueError, match="taken"):
        await store.create_thread("v", thread_id="cthr_1")
    with pytest.raises(ValueError, match="user"):
        await store.create_thread("")
    assert await store.count_threads() == 1
    assert (await store.get_thread("cthr_1")).user == "u"


async def test_duplicate_item_ids_are_refused_within_a_thread(store: ConversationStore) -> None:
    """Item ids are unique within their thread; another thread may reuse one."""
    first = await store.create_thread("u")
    second = await store.create_thread("u")
    await store.add_item(first.id, user_message("a"), item_id="cthi_1")
    with pytest.raises(ValueError, match="taken"):
        await store.add_item(first.id, user_message("b"), item_id="cthi_1")
    await store.add_item(second.id, user_message("c"), item_id="cthi_1")
    assert len((await store.list_items(first.id)).data) == 1
    # The refused append used up nothing: the next one lands right after the first.
    later = await store.add_item(first.id, user_message("d"))
    page = await store.list_items(first.id, order="asc")
    assert [i.id for i in page.data] == ["cthi_1", later.id]


async def test_cursor_naming_no_entry_is_an_invalid_parameter(store: ConversationStore) -> None:
    """An unknown cursor is a 400-style error naming the cursor parameter."""
    with pytest.raises(InvalidParameter) as caught:
        await store.list_threads(after="cthr_unknown")
    assert caught.value.param == "after"
    assert caught.value.code == "invalid_value"
    assert caught.value.message == "Invalid 'after': no entry with id 'cthr_unknown' to page from."
    thread = await store.create_thread("u")
    with pytest.raises(InvalidParameter) as caught:
        await store.list_items(thread.id, before="cthi_unknown")
    assert caught.value.param == "before"
    with pytest.raises(InvalidParameter) as caught:
        await store.list_threads(before="x" * 300)
    assert caught.value.message == f"Invalid 'before': no entry with id '{'x' * 128}' to page from."


async def test_an_item_cursor_must_belong_to_the_thread(store: ConversationStore) -> None:
    """An item of another thread is no cursor for this one."""
    first = await store.create_thread("u")
    second = await store.create_thread("u")
    other = await store.add_item(second.id, user_message("hi"))
    with pytest.raises(InvalidParameter):
        await store.list_items(first.id, after=other.id)


async def test_a_thread_cursor_may_name_another_users_thread(store: ConversationStore) -> None:
    """list_threads(user=…) resolves its cursor among every thread, and pages by position."""
    mine_old = await store.create_thread("me", created_at=1)
    theirs = await store.create_thread("them", created_at=2)
    mine_new = await store.create_thread("me", created_at=3)
    page = await store.list_threads(user="me", after=theirs.id, order="asc")
    assert [t.id for t in page.data] == [mine_new.id]
    page = await store.list_threads(user="me", after=theirs.id)
    assert [t.id for t in page.data] == [mine_old.id]


@pytest.mark.parametrize(("order", "limit"), [("up", 20), ("asc", -1)])
async def test_bad_order_or_limit_is_a_value_error(
    store: ConversationStore, order: Any, limit: int
) -> None:
    """order is asc or desc; limit is not negative."""
    thread = await store.create_thread("u")
    with pytest.raises(ValueError, match=r"order|limit"):
        await store.list_threads(order=order, limit=limit)
    with pytest.raises(ValueError, match=r"order|limit"):
        await store.list_items(thread.id, order=order, limit=limit)


async def test_count_threads_counts_per_user(store: ConversationStore) -> None:
    """count_threads counts everybody's threads, or one user's."""
    for user in ("a", "a", "b"):
        await store.create_thread(user)
    assert await store.count_threads() == 3
    assert await store.count_threads("a") == 2
    assert await store.count_threads("nobody") == 0


async def test_concurrent_writers_lose_nothing(store: ConversationStore) -> None:
    """Writers on concurrent tasks all land: threads, and items appended to one thread."""
    shared = await store.create_thread("shared")
    added: list[str] = []

    async def write(user: str) -> None:
        for n in range(25):
            await store.create_thread(user)
            added.append((await store.add_item(shared.id, user_message(f"{user} {n}"))).id)

    async with anyio.create_task_group() as tasks:
        for i in range(4):
            tasks.start_soon(write, f"u{i}")
    assert await store.count_threads() == 101
    assert [await store.count_threads(f"u{i}") for i in range(4)] == [25] * 4
    listed = (await store.list_items(shared.id, limit=1000, order="asc")).data
    assert sorted(i.id for i in listed) == sorted(added)


# -- hidden items -----------------------------------------------------------------------------


async def test_hidden_items_are_listed_only_with_include_hidden(store: ConversationStore) -> None:
    """An item without REST content keeps its place, and only the ChatKit view lists it."""
    thread = await store.create_thread("u")
    first = await store.add_item(thread.id, user_message("a"))
    hidden = await store.add_item(thread.id, None, extra={"hidden_context": "x"})
    last = await store.add_item(thread.id, assistant_message("b"))
    rest = await store.list_items(thread.id, order="asc")
    assert [i.id for i in rest.data] == [first.id, last.id]
    everything = await store.list_items(thread.id, order="asc", include_hidden=True)
    assert [i.id for i in everything.data] == [first.id, hidden.id, last.id]
    got = await store.get_item(thread.id, hidden.id)
    assert got.hidden
    assert got.content is None
    assert got.extra == {"hidden_context": "x"}
    with pytest.raises(ValueError, match="REST"):
        got.to_json()


async def test_hidden_items_page_like_visible_ones(store: ConversationStore) -> None:
    """Limits and has_more count listed items only; a hidden item is a valid cursor."""
    thread = await store.create_thread("u")
    first = await store.add_item(thread.id, user_message("a"))
    hidden = await store.add_item(thread.id, None)
    last = await store.add_item(thread.id, user_message("b"))
    page = await store.list_items(thread.id, order="asc", limit=1)
    assert ([i.id for i in page.data], page.has_more) == ([first.id], True)
    page = await store.list_items(thread.id, order="asc", limit=1, after=first.id)
    assert ([i.id for i in page.data], page.has_more) == ([last.id], False)
    page = await store.list_items(thread.id, order="asc", after=hidden.id)
    assert [i.id for i in page.data] == [last.id]
    page = await store.list_items(thread.id, order="asc", before=hidden.id)
    assert [i.id for i in page.data] == [first.id]
    page = await store.list_items(
        thread.id, order="asc", after=first.id, limit=1, include_hidden=True
    )
    assert ([i.id for i in page.data], page.has_more) == ([hidden.id], True)


async def test_update_item_switches_hidden_and_visible_in_place(store: ConversationStore) -> None:
    """Hiding an item drops it from REST listings; showing it again puts it back in place."""
    thread = await store.create_thread("u")
    ids = [(await store.add_item(thread.id, user_message(str(n)))).id for n in range(3)]
    hidden = await store.update_item(thread.id, ids[1], None)
    assert hidden.hidden
    assert [i.id for i in (await store.list_items(thread.id, order="asc")).data] == [
        ids[0],
        ids[2],
    ]
    everything = await store.list_items(thread.id, order="asc", include_hidden=True)
    assert [i.id for i in everything.data] == ids
    shown = await store.update_item(thread.id, ids[1], assistant_message("back"))
    assert shown.type == "chatkit.assistant_message"
    assert shown.created_at == hidden.created_at
    assert [i.id for i in (await store.list_items(thread.id, order="asc")).data] == ids


# -- ordering and cursors ---------------------------------------------------------------------


async def test_ties_within_one_second_break_by_write_order(store: ConversationStore) -> None:
    """Entries created in the same second list in the order they were written."""
    threads = [await store.create_thread("u", created_at=5) for _ in range(5)]
    listed = (await store.list_threads(order="asc")).data
    assert [t.id for t in listed] == [t.id for t in threads]
    listed = (await store.list_threads(order="desc")).data
    assert [t.id for t in listed] == [t.id for t in reversed(threads)]
    thread = threads[0]
    # Chosen ids must not decide: "z…" first, "a…" last.
    made = [
        await store.add_item(thread.id, user_message(str(n)), item_id=f"{'zyx'[n]}-item")
        for n in range(3)
    ]
    listed_items = (await store.list_items(thread.id, order="asc")).data
    assert [i.id for i in listed_items] == [i.id for i in made]


async def test_created_at_orders_before_write_order(store: ConversationStore) -> None:
    """An entry written later but created earlier lists before (ordering is by created_at)."""
    late = await store.create_thread("u", created_at=10)
    early = await store.create_thread("u", created_at=9)
    assert [t.id for t in (await store.list_threads(order="asc")).data] == [early.id, late.id]
    second = await store.add_item(late.id, user_message("2"), created_at=10)
    first = await store.add_item(late.id, user_message("1"), created_at=9)
    listed = (await store.list_items(late.id, order="asc")).data
    assert [i.id for i in listed] == [first.id, second.id]


async def test_cursors_naming_deleted_threads_still_page(store: ConversationStore) -> None:
    """Listing and deleting in one loop works: a deleted thread's position stays a cursor."""
    ids = [(await store.create_thread("u", created_at=n)).id for n in range(6)]
    page = await store.list_threads(order="asc", limit=2)
    seen = [t.id for t in page.data]
    for thread_id in seen:
        await store.delete_thread(thread_id)
    while page.has_more:
        page = await store.list_threads(order="asc", limit=2, after=page.last_id)
        seen += [t.id for t in page.data]
        for thread in page.data:
            await store.delete_thread(thread.id)
    assert seen == ids
    assert await store.count_threads() == 0
    gone = await store.list_threads(before=ids[1], order="asc")
    assert gone.data == []


async def test_cursors_naming_deleted_items_still_page(store: ConversationStore) -> None:
    """A deleted item's position stays a cursor, for after and before, in both orders."""
    thread = await store.create_thread("u")
    ids = [(await store.add_item(thread.id, user_message(str(n)))).id for n in range(5)]
    await store.delete_item(thread.id, ids[2])
    page = await store.list_items(thread.id, order="asc", after=ids[2])
    assert [i.id for i in page.data] == ids[3:]
    page = await store.list_items(thread.id, order="desc", after=ids[2])
    assert [i.id for i in page.data] == [ids[1], ids[0]]
    page = await store.list_items(thread.id, order="asc", before=ids[2], limit=1)
    assert ([i.id for i in page.data], page.has_more) == ([ids[1]], True)


async def test_auto_pagination_visits_every_entry_once(store: ConversationStore) -> None:
    """after=last_id while has_more walks every thread once, in both orders."""
    ids = [(await store.create_thread("u", created_at=n // 3)).id for n in range(10)]
    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        seen: list[str] = []
        after = None
        while True:
            page = await store.list_threads(order=order, limit=3, after=after)  # type: ignore[arg-type]
            seen += [t.id for t in page.data]
            if not page.has_more:
                break
            after = page.last_id
        assert seen == expected


# -- pagination against a brute-force model ---------------------------------------------------


def model_page(
    ids: list[str],
    limit: int,
    order: Literal["asc", "desc"],
    after: str | None,
    before: str | None,
) -> tuple[list[str], bool]:
    """The documented rule, written the slow obvious way over ids listed oldest first."""
    ordered = ids if order == "asc" else ids[::-1]
    start = ordered.index(after) + 1 if after is not None else 0
    stop = ordered.index(before) if before is not None else len(ordered)
    window = ordered[start:stop] if start <= stop else []
    if before is not None and after is None:
        page = window[max(0, len(window) - limit) :]
    else:
        page = window[:limit]
    return page, len(window) > len(page)


_PAGINATION = settings(
    max_examples=200,
    deadline=None,
    # One store serves every example; each example writes under a user (or thread) of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_PAGINATION
@given(
    stamps=st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=12),
    limit=st.integers(min_value=0, max_value=6),
    order=st.sampled_from(["asc", "desc"]),
    cursors=st.tuples(st.integers(-1, 11), st.integers(-1, 11)),
)
async def test_pagination_matches_the_model(
    store: ConversationStore,
    stamps: list[int],
    limit: int,
    order: Literal["asc", "desc"],
    cursors: tuple[int, int],
) -> None:
    """Any data, limit, order and cursor pair pages exactly as the documented rule says."""
    user = f"u{next(_users)}"
    threads = [await store.create_thread(user, created_at=stamp) for stamp in stamps]
    # Creation order breaks ties between equal created_at values.
    ids = [t.id for t in sorted(threads, key=lambda t: (t.created_at, threads.index(t)))]
    after = ids[cursors[0]] if 0 <= cursors[0] < len(ids) else None
    before = ids[cursors[1]] if 0 <= cursors[1] < len(ids) else None
    page = await store.list_threads(user=user, limit=limit, order=order, after=after, before=before)
    expected, has_more = model_page(ids, limit, order, after, before)
    assert [t.id for t in page.data] == expected
    assert page.has_more == has_more
    assert page.first_id == (expected[0] if expected else None)
    assert page.last_id == (expected[-1] if expected else None)


@_PAGINATION
@given(
    entries=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3), st.booleans()), min_size=0, max_size=10
    ),
    limit=st.integers(min_value=0, max_value=5),
    order=st.sampled_from(["asc", "desc"]),
    cursors=st.tuples(st.integers(-1, 9), st.integers(-1, 9)),
    include_hidden=st.booleans(),
)
async def test_item_pagination_matches_the_model(
    store: ConversationStore,
    entries: list[tuple[int, bool]],
    limit: int,
    order: Literal["asc", "desc"],
    cursors: tuple[int, int],
    include_hidden: bool,
) -> None:
    """Items page by the same rule; hidden ones are skipped unless asked for, yet are cursors."""
    thread = await store.create_thread("u")
    made = [
        await store.add_item(thread.id, None if hidden else user_message("x"), created_at=stamp)
        for stamp, hidden in entries
    ]
    everything = sorted(made, key=lambda i: (i.created_at, made.index(i)))
    after = everything[cursors[0]].id if 0 <= cursors[0] < len(made) else None
    before = everything[cursors[1]].id if 0 <= cursors[1] < len(made) else None
    # The model: the listed items plus the cursors (a hidden cursor marks its place, and a
    # cursor is never on its own page).
    listed = [i.id for i in everything if include_hidden or not i.hidden or i.id in (after, before)]
    page = await store.list_items(
        thread.id,
        limit=limit,
        order=order,
        after=after,
        before=before,
        include_hidden=include_hidden,
    )
    expected, has_more = model_page(listed, limit, order, after, before)
    assert [i.id for i in page.data] == expected
    assert page.has_more == has_more
