"""What a newcomer sees: which workers are alive and what they serve."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from aetheris import App, Context, JobStatus
from aetheris.testing import running_worker

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], timeout: float = 5.0) -> T:
    """``probe()`` once it is truthy (a worker registers as its task starts)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"still {value!r} after {timeout}s"
        await asyncio.sleep(0.01)


# -- the registry of live workers --------------------------------------------------------------


async def test_a_running_worker_is_listed_alive_and_gone_once_it_stops(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def fast(ctx: Context) -> None:
        return None

    assert await app.workers() == []
    async with running_worker(app, poll_interval=0.01, queues=["q1"]) as worker:
        [info] = await eventually(app.workers)
        assert (info.id, info.agents, info.queues, info.alive) == (
            worker.owner,
            ("fast",),
            ("q1",),
            True,
        )
    assert await app.workers() == []
    await app.close()


async def test_an_idle_worker_keeps_its_presence_fresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("aetheris.scheduler.PRESENCE_INTERVAL", 0.05)
    app = App("memory://", lease_ttl=0.6)

    @app.agent
    async def idle(ctx: Context) -> None:
        return None

    async with running_worker(app, poll_interval=0.01):
        [first] = await eventually(app.workers)
        await asyncio.sleep(0.8)  # a few heartbeat cycles, no job at all
        [later] = await app.workers()
    assert later.last_seen > first.last_seen


async def test_serving_tells_whether_a_job_of_an_agent_would_wait(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def served(ctx: Context) -> None:
        return None

    before = await app.serving("served")
    assert (before.workers, before.registered, before.defined) == ((), False, True)
    assert before.warning is not None and "no worker has ever served" in before.warning
    async with running_worker(app, poll_interval=0.01, queues=["fast"]):
        await eventually(app.workers)
        now = await app.serving(served)
        assert [w.agents for w in now.workers] == [("served",)]
        assert now.warning is None
        elsewhere = await app.serving("served", queue="slow")
        assert elsewhere.workers == ()
        assert elsewhere.warning is not None and "in queue 'slow'" in elsewhere.warning
    after = await app.serving("served")
    assert (after.workers, after.registered) == ((), True)
    assert after.warning is not None and "no live worker serves" in after.warning
    await app.close()


async def test_a_job_of_an_agent_nobody_defines_is_accepted_and_said_to_wait() -> None:
    app = App("memory://")
    handle = await app.start("deployed_later")
    assert (await handle.status()) is JobStatus.PENDING
    serving = await app.serving("deployed_later")
    assert (serving.registered, serving.defined) == (False, False)
    assert serving.warning is not None and "'deployed_later'" in serving.warning
