"""Workers prune ended jobs by the App's retention and each agent's own, on every store; jobs
that have not ended stay; a fork whose origin was pruned runs on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

import aetheris
from aetheris.errors import ConfigurationError
from aetheris.pruner import Pruner
from aetheris.retention import Retention, parse_age, show_age
from aetheris.store import create_store
from aetheris.store.port import JobStatus, Store
from aetheris.testing import running_worker

FAST = Retention(older_than=0.3, interval=0.1, batch=2, pause=0.0)


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def make_app(url: str, retention: Retention | None = FAST) -> aetheris.App:
    app = aetheris.App(url, retention=retention, poll_interval=0.05)

    @app.agent
    async def quick(ctx: aetheris.Context, n: int) -> int:
        return await ctx.step("double", lambda: 2 * n)

    @app.agent(retention="1h")
    async def kept(ctx: aetheris.Context, n: int) -> int:
        return await ctx.step("same", lambda: n)

    @app.agent(retention=0.2)
    async def brief(ctx: aetheris.Context, n: int) -> int:
        return n

    @app.agent
    async def waiting(ctx: aetheris.Context) -> object:
        return await ctx.wait_for_signal("go")

    return app


async def ids_left(store: Store) -> set[str]:
    return {j.id for j in await store.list_jobs(limit=1000)}


async def test_a_worker_prunes_by_the_app_s_and_each_agent_s_retention(store_url: str) -> None:
    app = make_app(store_url)
    quick = [await app.start("quick", {"n": i}) for i in range(5)]
    kept = [await app.start("kept", {"n": i}) for i in range(2)]
    brief = await app.start("brief", {"n": 1})
    waiting = await app.start("waiting", {})
    never = await app.start("quick", {"n": 9}, queue="unserved")  # pending, never claimed
    stop = asyncio.Event()
    worker = asyncio.create_task(app.run_worker(concurrency=4, queues=["default"], stop=stop))
    try:
        for h in [*quick, *kept]:
            assert await h.result(timeout=10) is not None
        store = await app.open_store()
        gone = {h.job_id for h in [*quick, brief]}
        await until(lambda: _none_of(store, gone))
        left = await ids_left(store)
        assert {h.job_id for h in kept} <= left, "kept for an hour"
        assert {waiting.job_id, never.job_id} <= left
        assert (await store.get_job(waiting.job_id)).status is JobStatus.PARKED  # type: ignore[union-attr]
        await app.signal(waiting.job_id, "go", {"ok": 1})
        assert await waiting.result(timeout=10) == {"ok": 1}
        await until(lambda: _none_of(store, {waiting.job_id}))
        assert never.job_id in await ids_left(store)
        assert len(await store.events(kept[0].job_id)) > 0
    finally:
        stop.set()
        await worker
        await app.close()


async def _none_of(store: Store, ids: set[str]) -> bool:
    return not (ids & await ids_left(store))


async def test_without_a_retention_nothing_is_pruned(store_url: str) -> None:
    app = aetheris.App(store_url, poll_interval=0.05)

    @app.agent
    async def quick(ctx: aetheris.Context, n: int) -> int:
        return n

    handle = await app.start("quick", {"n": 1})
    stop = asyncio.Event()
    worker = asyncio.create_task(app.run_worker(stop=stop))
    try:
        assert await handle.result(timeout=10) == 1
        await asyncio.sleep(0.5)
        store = await app.open_store()
        assert await store.get_job(handle.job_id) is not None
        assert await store.tombstones([handle.job_id]) == {}
    finally:
        stop.set()
        await worker
        await app.close()


async def test_a_fork_whose_origin_was_pruned_runs_on(store_url: str) -> None:
    app = aetheris.App(store_url, poll_interval=0.05)

    @app.agent
    async def twice(ctx: aetheris.Context, n: int) -> list[int]:
        a = await ctx.step("one", lambda: n)
        b = await ctx.step("two", lambda: n + 1)
        return [a, b]

    origin = await app.start("twice", {"n": 1})
    stop = asyncio.Event()
    worker = asyncio.create_task(app.run_worker(stop=stop))
    try:
        assert await origin.result(timeout=10) == [1, 2]
    finally:
        stop.set()
        await worker
    fork = await app.fork(origin.job_id, 1, output=10)
    store = await app.open_store()
    pruned = await store.prune_ended(time.time() + 1)
    assert pruned.jobs == 1 and await store.get_job(origin.job_id) is None
    stop = asyncio.Event()
    worker = asyncio.create_task(app.run_worker(stop=stop))
    try:
        assert await fork.result(timeout=10) == [1, 10], "entry 0 replayed, entry 1 as edited"
    finally:
        stop.set()
        await worker
        await app.close()


def test_ages_are_read_and_bad_ones_named() -> None:
    assert parse_age("30d") == 30 * 86400 and parse_age("1d12h") == 36 * 3600
    assert parse_age(timedelta(minutes=5)) == 300 and parse_age(90) == 90
    assert parse_age("forever") == float("inf")
    assert show_age(36 * 3600) == "1d12h" and show_age(2.5) == "2.5s"
    for bad in ("3x", "30", "d", "-1d", "1 month"):
        with pytest.raises(ConfigurationError, match="not a duration"):
            parse_age(bad)
    with pytest.raises(ConfigurationError, match="more than 0"):
        parse_age(0)
    with pytest.raises(ConfigurationError, match="agent 'x'"):
        aetheris.App("memory://").agent(name="x", retention="soon")(_noop)
    with pytest.raises(ConfigurationError, match="retention"):
        aetheris.App("memory://", retention="3 weeks")


async def _noop(ctx: aetheris.Context) -> None:
    return None


async def test_workers_on_postgresql_take_turns_to_prune(pg_url: str) -> None:
    """Two workers' pruners on one PostgreSQL database: one prunes now, the other's turn comes
    an interval later (the store's token bucket), so they never prune side by side."""
    app = aetheris.App(pg_url, poll_interval=0.05)  # its worker prunes nothing

    @app.agent
    async def quick(ctx: aetheris.Context, n: int) -> int:
        return n

    handles = [await app.start("quick", {"n": i}) for i in range(6)]
    async with running_worker(app):
        for h in handles:
            await h.result(timeout=10)
    await asyncio.sleep(0.4)
    stores = [create_store(pg_url) for _ in range(2)]
    for store in stores:
        await store.open()
    policy = Retention(older_than=0.3, interval=30.0, batch=2, pause=0.0)
    pruners = [Pruner(s, policy, {}, time.time) for s in stores]
    tasks = [asyncio.create_task(p.run()) for p in pruners]
    try:
        await until(lambda: _none_of(stores[0], {h.job_id for h in handles}))
        await asyncio.sleep(0.5)
        assert sorted(p.turns for p in pruners) == [0, 1], "one pruned, one waits its turn"
        assert sorted(p.pruned.jobs for p in pruners) == [0, 6]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for store in stores:
            await store.close()
        await app.close()
