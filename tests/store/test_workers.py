"""The registry of workers (``register_worker``, ``touch_worker``, ``workers``), on every store."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import sqlite3

from aetheris.store.memory import MemoryStore
from aetheris.store.port import WORKER_ALIVE_WINDOW, WORKER_FORGET_AFTER, Store
from aetheris.store.postgres import PostgresStore
from aetheris.store.sqlite import SQLiteStore


def backdate(store: Store, owner: str, seconds: float) -> None:
    """Make ``owner`` last seen ``seconds`` earlier than it was (as if it stopped touching)."""
    if isinstance(store, MemoryStore):
        info = store._workers[owner]
        store._workers[owner] = dataclasses.replace(info, last_seen=info.last_seen - seconds)
    elif isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            conn.execute(
                "UPDATE workers SET last_seen = last_seen - ? WHERE id = ?", (seconds, owner)
            )
    else:
        import psycopg

        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute(
                "UPDATE workers SET last_seen = last_seen - %s WHERE id = %s", (seconds, owner)
            )


async def test_a_registered_worker_is_listed_alive_with_what_it_serves(store: Store) -> None:
    await store.register_worker("w1", agents=["b", "a"])
    await asyncio.sleep(0.01)
    await store.register_worker("w2", agents=["a"], queues=["fast", "slow"])
    first, second = await store.workers()
    assert (first.id, first.agents, first.queues) == ("w1", ("b", "a"), None)
    assert (second.id, second.agents, second.queues) == ("w2", ("a",), ("fast", "slow"))
    for info in (first, second):
        assert info.alive
        assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
        assert info.started_at == info.last_seen
    assert first.started_at <= second.started_at
    assert first.serves("a") and first.serves("b", "any") and not first.serves("c")
    assert second.serves("a", "fast") and not second.serves("a", "default")


async def test_a_touch_moves_last_seen_and_keeps_the_rest(store: Store) -> None:
    await store.register_worker("w1", agents=["a"])
    [before] = await store.workers()
    await asyncio.sleep(0.02)
    await store.touch_worker("w1")
    [after] = await store.workers()
    assert after.last_seen > before.last_seen
    assert dataclasses.replace(after, last_seen=before.last_seen) == before
    await store.touch_worker("not-registered-here")  # nothing to touch: nothing happens
    assert [w.id for w in await store.workers()] == ["w1"]


async def test_a_worker_not_seen_within_the_window_is_not_alive(store: Store) -> None:
    await store.register_worker("w1", agents=["a"])
    backdate(store, "w1", WORKER_ALIVE_WINDOW + 1)
    [stale] = await store.workers()
    assert not stale.alive
    await store.touch_worker("w1")
    [back] = await store.workers()
    assert back.alive


async def test_a_graceful_stop_removes_the_row_and_a_kill_leaves_it(store: Store) -> None:
    await store.register_worker("stops", agents=["a"])
    await store.register_worker("killed", agents=["a"])
    await store.unregister_worker("stops")
    await store.unregister_worker("killed", graceful=False)
    assert [w.id for w in await store.workers()] == ["killed"]
    await store.touch_worker("killed")  # withdrawn from this store: no longer touched
    backdate(store, "killed", WORKER_ALIVE_WINDOW + 1)
    [left] = await store.workers()
    assert not left.alive


async def test_rows_long_unseen_are_forgotten_and_a_touch_writes_its_own_back(
    store: Store,
) -> None:
    await store.register_worker("old", agents=["a"])
    await store.register_worker("paused", agents=["a"])
    [_, paused] = await store.workers()
    await store.unregister_worker("old", graceful=False)
    backdate(store, "old", WORKER_FORGET_AFTER + 1)
    backdate(store, "paused", WORKER_FORGET_AFTER + 1)
    await store.register_worker("new", agents=["a"])
    assert [w.id for w in await store.workers()] == ["new"]
    # A worker whose row was forgotten while its process was stopped is listed again.
    await store.touch_worker("paused")
    rows = {w.id: w for w in await store.workers()}
    assert set(rows) == {"new", "paused"}
    assert rows["paused"].alive and rows["paused"].started_at == paused.started_at
