"""The ThreadStore's Python API: seeding, updates, deletion and pagination against a model."""

from __future__ import annotations

import threading
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratekeeper import InvalidParameter, ManualClock
from ratekeeper.server import (
    ThreadNotFound,
    ThreadStatus,
    ThreadStore,
    assistant_message,
    user_message,
)


def test_created_at_comes_from_the_clock_floored() -> None:
    """Without an explicit created_at, the store's clock gives a whole second."""
    clock = ManualClock(start=1_700_000_000.75)
    store = ThreadStore(clock)
    thread = store.create_thread("u")
    item = store.add_item(thread.id, user_message("hi"))
    assert thread.created_at == 1_700_000_000
    assert item.created_at == 1_700_000_000
    assert thread.id.startswith("cthr_")
    assert item.id.startswith("cthi_")


def test_update_thread_changes_title_and_status_only_when_given() -> None:
    """Leaving title out keeps it; title=None clears it; user and created_at never change."""
    store = ThreadStore(ManualClock())
    thread = store.create_thread("u", title="first")
    locked = store.update_thread(thread.id, status=ThreadStatus("locked", "review"))
    assert locked.title == "first"
    assert locked.status.to_json() == {"type": "locked", "reason": "review"}
    cleared = store.update_thread(thread.id, title=None)
    assert cleared.title is None
    assert cleared.status == locked.status
    assert (cleared.user, cleared.created_at) == (thread.user, thread.created_at)
    assert store.get_thread(thread.id) == cleared


def test_items_update_in_place_and_delete() -> None:
    """update_item keeps an item's place; delete_item removes it; both 404 when absent."""
    store = ThreadStore(ManualClock())
    thread = store.create_thread("u")
    first = store.add_item(thread.id, user_message("a"), created_at=1)
    second = store.add_item(thread.id, assistant_message("b"), created_at=2)
    store.update_item(thread.id, first.id, user_message("edited"))
    page = store.list_items(thread.id, order="asc")
    assert [i.id for i in page.data] == [first.id, second.id]
    assert page.data[0].content["content"][0]["text"] == "edited"
    store.delete_item(thread.id, first.id)
    assert [i.id for i in store.list_items(thread.id).data] == [second.id]
    with pytest.raises(ThreadNotFound):
        store.get_item(thread.id, first.id)
    with pytest.raises(ThreadNotFound):
        store.update_item(thread.id, first.id, user_message("x"))


def test_extra_data_is_kept_but_never_shown() -> None:
    """Adapters keep native objects in `extra`; the REST shape never includes them."""
    store = ThreadStore(ManualClock())
    marker = object()
    thread = store.create_thread("u", extra=marker)
    item = store.add_item(thread.id, user_message("hi"), extra=marker)
    assert store.get_thread(thread.id).extra is marker
    assert store.get_item(thread.id, item.id).extra is marker
    assert "extra" not in thread.to_json()
    assert "extra" not in item.to_json()


@pytest.mark.parametrize(
    "content",
    [{}, {"type": "message"}, {"type": "chatkit.widget", "id": "x"}],
)
def test_bad_item_content_is_refused(content: dict[str, object]) -> None:
    """Content needs a known type and must not set the fields the store owns."""
    store = ThreadStore(ManualClock())
    thread = store.create_thread("u")
    with pytest.raises(ValueError, match=r"type|must not set"):
        store.add_item(thread.id, content)


def test_duplicate_ids_and_empty_user_are_refused() -> None:
    """Explicit ids must be unique; a thread needs a user."""
    store = ThreadStore(ManualClock())
    store.create_thread("u", thread_id="cthr_1")
    with pytest.raises(ValueError, match="taken"):
        store.create_thread("v", thread_id="cthr_1")
    with pytest.raises(ValueError, match="user"):
        store.create_thread("")


def test_cursor_naming_no_entry_is_an_invalid_parameter() -> None:
    """An unknown cursor is a 400-style error naming the cursor parameter."""
    store = ThreadStore(ManualClock())
    with pytest.raises(InvalidParameter) as caught:
        store.list_threads(after="cthr_unknown")
    assert caught.value.param == "after"


def test_concurrent_writers_from_threads_lose_nothing() -> None:
    """The store is thread-safe: writers on several OS threads all land."""
    store = ThreadStore(ManualClock())

    def write(user: str) -> None:
        for _ in range(200):
            store.create_thread(user)

    workers = [threading.Thread(target=write, args=(f"u{i}",)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert store.count_threads() == 800
    assert all(store.count_threads(f"u{i}") == 200 for i in range(4))


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


@settings(max_examples=200, deadline=None)
@given(
    stamps=st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=12),
    limit=st.integers(min_value=0, max_value=6),
    order=st.sampled_from(["asc", "desc"]),
    cursors=st.tuples(st.integers(-1, 11), st.integers(-1, 11)),
)
def test_pagination_matches_the_model(
    stamps: list[int],
    limit: int,
    order: Literal["asc", "desc"],
    cursors: tuple[int, int],
) -> None:
    """Any data, limit, order and cursor pair pages exactly as the documented rule says."""
    store = ThreadStore(ManualClock())
    threads = [store.create_thread("u", created_at=stamp) for stamp in stamps]
    # Creation order breaks ties between equal created_at values.
    ids = [t.id for t in sorted(threads, key=lambda t: (t.created_at, threads.index(t)))]
    after = ids[cursors[0]] if 0 <= cursors[0] < len(ids) else None
    before = ids[cursors[1]] if 0 <= cursors[1] < len(ids) else None
    page = store.list_threads(limit=limit, order=order, after=after, before=before)
    expected, has_more = model_page(ids, limit, order, after, before)
    assert [t.id for t in page.data] == expected
    assert page.has_more == has_more
    assert page.first_id == (expected[0] if expected else None)
    assert page.last_id == (expected[-1] if expected else None)
