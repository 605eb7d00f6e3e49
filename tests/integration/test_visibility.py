"""What a newcomer sees: the worker's log lines, which workers are alive, and no silent waits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

import aetheris
from aetheris import App, Context, JobStatus, ParkReason
from aetheris.journal import EventType
from aetheris.testing import running_worker, simulate_crash

from .helpers import crash_worker, wait_for

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


# -- one log line per start, park, resume and end ---------------------------------------------


def lines(caplog: pytest.LogCaptureFixture, job_id: str) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "aetheris.worker.jobs" and r.getMessage().startswith(f"job {job_id} ")
    ]


async def test_a_job_that_succeeds_logs_its_start_and_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aetheris")
    app = App("memory://", lease_ttl=2.0)

    @app.agent
    async def greet(ctx: Context, name: str) -> str:
        return f"hello {name}"

    handle = await app.start("greet", {"name": "ada"})
    async with running_worker(app, poll_interval=0.01):
        assert await handle.result(timeout=5) == "hello ada"
    assert lines(caplog, handle.job_id) == [
        (logging.INFO, f"job {handle.job_id} started: agent greet, run 1, epoch 1"),
        (logging.INFO, f"job {handle.job_id} succeeded: agent greet, run 1"),
    ]


async def test_a_job_that_waits_for_a_signal_logs_its_park_and_its_resume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aetheris")
    app = App("memory://", lease_ttl=2.0)

    @app.agent
    async def waiter(ctx: Context) -> object:
        return await ctx.wait_for_signal("go")

    handle = await app.start("waiter")
    job_id = handle.job_id
    async with running_worker(app, poll_interval=0.01):
        await wait_for(app, job_id, JobStatus.PARKED)
        await app.signal(job_id, "go", "now")
        assert await handle.result(timeout=5) == "now"
    assert lines(caplog, job_id) == [
        (logging.INFO, f"job {job_id} started: agent waiter, run 1, epoch 1"),
        (logging.INFO, f"job {job_id} parked (signal 'go'): agent waiter, run 1"),
        (
            logging.INFO,
            f"job {job_id} resumed after park (signal): agent waiter, run 2, epoch 2",
        ),
        (logging.INFO, f"job {job_id} succeeded: agent waiter, run 2"),
    ]


def _deep_down() -> None:
    raise ValueError("the card was declined")


async def test_a_failing_job_logs_an_error_with_its_traceback_and_keeps_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aetheris")
    app = App("memory://", lease_ttl=2.0)

    @app.agent
    async def broken(ctx: Context) -> None:
        _deep_down()

    handle = await app.start("broken")
    async with running_worker(app, poll_interval=0.01):
        with pytest.raises(aetheris.JobFailed):
            await handle.result(timeout=5)
    [start, end] = lines(caplog, handle.job_id)
    assert start == (logging.INFO, f"job {handle.job_id} started: agent broken, run 1, epoch 1")
    level, message = end
    assert level == logging.ERROR
    first, *trace = message.splitlines()
    assert first == (
        f"job {handle.job_id} failed: agent broken, run 1: ValueError: the card was declined"
    )
    assert trace[0] == "Traceback (most recent call last):"
    assert any("_deep_down()" in line for line in trace)
    assert trace[-1] == "ValueError: the card was declined"
    error = (await app.get_job(handle.job_id)).error or {}
    assert (error["type"], error["message"]) == ("ValueError", "the card was declined")
    assert "_deep_down()" in error["traceback"]


async def test_a_job_taken_over_from_a_dead_worker_says_from_which(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aetheris")
    app = App("memory://", lease_ttl=0.5)

    @app.tool
    async def lookup() -> int:
        return 1

    @app.agent
    async def sturdy(ctx: Context) -> int:
        return await lookup() + 1

    handle = await app.start("sturdy")
    with simulate_crash("after_outcome:lookup"):
        await crash_worker(app, handle.job_id)
    async with running_worker(app, poll_interval=0.01):
        assert await handle.result(timeout=5) == 2
    events = await (await app.open_store()).events(handle.job_id)
    dead = next(e.data["owner"] for e in events if e.type is EventType.JOB_CLAIMED)
    assert lines(caplog, handle.job_id)[-2:] == [
        (
            logging.INFO,
            f"job {handle.job_id} recovered from worker {dead}: agent sturdy, run 2, epoch 2, "
            "recoveries 1/5",
        ),
        (logging.INFO, f"job {handle.job_id} succeeded: agent sturdy, run 2"),
    ]


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


# -- no silent hangs ---------------------------------------------------------------------------


async def test_a_child_of_an_agent_no_worker_knows_fails_at_the_call(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def parent(ctx: Context, catch: bool) -> str:
        try:
            return str(await ctx.run_agent("ghost", {}))
        except aetheris.UnknownAgent as unknown:
            if not catch:
                raise
            return f"no {unknown.name}; known: {unknown.known}"

    caught = await app.start("parent", {"catch": True})
    raised = await app.start("parent", {"catch": False})
    async with running_worker(app, poll_interval=0.01):
        assert await caught.result(timeout=5) == "no ghost; known: ['parent']"
        job = await wait_for(app, raised.job_id, timeout=5)
    assert job.status is JobStatus.FAILED
    error = job.error or {}
    assert error["type"] == "UnknownAgent"
    assert error["message"] == "unknown agent 'ghost' (known agents: parent)"
    assert [j.id for j in await app.list_jobs() if j.parent_id] == []  # no child was created
    assert (await aetheris.testing.replay(app, caught.job_id)).outcome == "matched"
    await app.close()


async def test_waiting_for_names_the_signal_a_parked_job_waits_for(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def two_waits(ctx: Context) -> object:
        first = await ctx.wait_for_signal("go")
        decision = await ctx.approval("ship", {"n": 1})
        return [first, decision.approved]

    handle = await app.start("two_waits")
    job_id = handle.job_id
    assert await app.waiting_for(job_id) is None  # pending: waits for no signal
    async with running_worker(app, poll_interval=0.01):
        await wait_for(app, job_id, JobStatus.PARKED)
        assert await app.waiting_for(job_id) == "go"
        await app.signal(job_id, "not-now", 1)  # no wait takes it: it stays in the inbox
        assert await app.waiting_for(job_id) == "go"
        await app.signal(job_id, "go", 1)

        async def asking() -> dict[str, object] | None:
            job = await app.get_job(job_id)
            return job.park_detail if job.park_reason is ParkReason.APPROVAL else None

        position = (await eventually(asking))["position"]
        assert await app.waiting_for(job_id) == f"approval:{position}"
        await app.approve(job_id)
        assert await handle.result(timeout=5) == [1, True]
    assert await app.waiting_for(job_id) is None
    await app.close()
