"""MemoryStore across OS threads: its lock makes it safe to share beyond one event loop."""

from __future__ import annotations

import threading

import anyio

from ratekeeper import ManualClock
from ratekeeper.store import MemoryStore, user_message


def test_concurrent_writers_from_threads_lose_nothing() -> None:
    """Writers on several OS threads, each with its own event loop, all land."""
    store = MemoryStore(ManualClock())
    shared = anyio.run(store.create_thread, "shared")

    async def write(user: str) -> None:
        for n in range(200):
            await store.create_thread(user)
            await store.add_item(shared.id, user_message(f"{user} {n}"))

    workers = [threading.Thread(target=anyio.run, args=(write, f"u{i}")) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    async def check() -> None:
        assert await store.count_threads() == 801
        assert [await store.count_threads(f"u{i}") for i in range(4)] == [200] * 4
        items = await store.list_items(shared.id, limit=1000)
        assert len(items.data) == 800

    anyio.run(check)
