"""The guarantees where they were found to break, in-process, on memory, SQLite and PostgreSQL.

Cases that need a process to die are in ``tests/chaos/test_integrity.py``; these need none: a
child cancelled before it started, approvals bound to what was reviewed, a database that
hiccups during a durable operation's own read, an effect beside a wait, a worker's own expired
lease, and the wake-up races of the PostgreSQL store.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aetheris
from aetheris import App, Context, EffectState, JobStatus, ParkReason
from aetheris.errors import ConfigurationError, StoreUnavailable
from aetheris.journal import EventDraft, EventType
from aetheris.store import create_store
from aetheris.store.port import (
    ClaimFilter,
    Commit,
    Head,
    Lease,
    NewJob,
    StatusWrite,
    Store,
    job_wake,
)
from aetheris.testing import replay, running_worker

from .helpers import World, wait_for


class Flaky:
    """A store whose reads fail (as a database going away would) the first ``times`` calls."""

    def __init__(self, inner: Store, failing: set[str], times: int) -> None:
        self._inner = inner
        self._failing = failing
        self.left = times

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in self._failing:
            return method

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                raise StoreUnavailable(f"{name}: the database went away (test)")
            return await method(*args, **kwargs)

        return flaky


async def on_flaky_store(app: App, failing: set[str], times: int) -> tuple[Flaky, App]:
    """Make ``app``'s store flaky; return it and an App that watches the same store, unharmed."""
    store = await app.open_store()
    flaky = Flaky(store, failing, times)
    app._store = flaky  # type: ignore[assignment]  # the test's store, in place of the App's
    watcher = App(app.database_url)
    watcher._store = store
    return flaky, watcher


# -- a child cancelled before it started wakes its parent --------------------------------------


async def served_once_elsewhere(app: App, agent: str) -> None:
    """A worker of another App registered ``agent`` on this database once; none runs now (a
    child of an agent no worker ever registered is refused at ``ctx.run_agent``)."""
    await (await app.open_store()).register_agents({agent: None})


async def test_cancelling_a_child_that_never_started_wakes_its_parent(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def parent(ctx: Context) -> str:
        try:
            return str(await ctx.run_agent("nobody_serves_this", {"x": 1}))
        except aetheris.ChildFailed as failed:
            return f"child ended {failed.detail['status']}"

    await served_once_elsewhere(app, "nobody_serves_this")
    handle = await app.start("parent")
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert job.park_reason is ParkReason.CHILD
        child = await app.get_job(f"{handle.job_id}.0")
        assert child.status is JobStatus.PENDING and child.attempts == 0
        await app.cancel(child.id)
        job = await wait_for(app, handle.job_id, timeout=5)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "child ended cancelled"
    await app.close()


async def test_a_parent_that_ends_cancels_its_children(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def impatient(ctx: Context) -> str:
        await ctx.run_agent("nobody_serves_this", {})
        return "never"

    await served_once_elsewhere(app, "nobody_serves_this")
    handle = await app.start("impatient", deadline=0.5)
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, timeout=5)
    assert job.status is JobStatus.FAILED  # at its deadline, parked on the child
    child = await app.get_job(f"{handle.job_id}.0")
    assert child.status is JobStatus.CANCELLED
    await app.close()


# -- approvals are bound to what was reviewed --------------------------------------------------


def approval_app(url: str, world: World) -> App:
    app = App(url, lease_ttl=2.0)

    @app.tool(effect="at_most_once", requires_approval=True)
    async def wire(iban: str, amount: int) -> str:
        world.hit("wire")
        return f"wired {amount}"

    @app.agent
    async def payout(ctx: Context, amount: int) -> str:
        await ctx.step("prepare", lambda: None)
        return await wire("DE00", amount)

    return app


async def test_an_approval_cannot_be_given_before_the_request_exists(store_url: str) -> None:
    world = World()
    app = approval_app(store_url, world)
    handle = await app.start("payout", {"amount": 5})
    with pytest.raises(aetheris.Conflict, match="no pending approval request"):
        await app.approve(handle.job_id, position=1)
    with pytest.raises(aetheris.InvalidInput, match="reserved for approval decisions"):
        await app.signal(handle.job_id, "approval:1", {"decision": "approved"})
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert job.park_reason is ParkReason.APPROVAL
        with pytest.raises(aetheris.Conflict, match="no pending approval request at position 7"):
            await app.approve(handle.job_id, position=7)
        await app.approve(handle.job_id, by="maria")
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED and world.calls["wire"] == 1
    await app.close()


async def test_a_decision_that_names_no_request_approves_nothing(store_url: str) -> None:
    world = World()
    app = approval_app(store_url, world)
    handle = await app.start("payout", {"amount": 5})
    store = await app.open_store()
    # Written past the App, as an old client or a raw database write would: no args hash.
    await store.send_signal(
        handle.job_id, "approval:1", {"decision": "approved", "by": "mallory"}, "early", None
    )
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "ApprovalRejected"
    assert "no arguments in particular" in job.error["message"]
    assert world.calls["wire"] == 0, "a tool ran with arguments nobody reviewed"
    await app.close()


# -- a database that hiccups during a durable operation's own read -----------------------------


async def test_an_outage_during_the_inbox_read_is_waited_out(store_url: str) -> None:
    app = App(store_url, lease_ttl=5.0)

    @app.agent
    async def listener(ctx: Context) -> object:
        await ctx.step("before", lambda: 1)
        return await ctx.wait_for_signal("go")

    handle = await app.start("listener")
    await app.signal(handle.job_id, "go", "payload")
    flaky, watcher = await on_flaky_store(app, {"signals"}, times=3)
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(watcher, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "payload" and flaky.left == 0
    await app.close()


async def test_an_outage_while_looking_up_a_child_is_waited_out(store_url: str) -> None:
    app = App(store_url, lease_ttl=5.0)

    @app.agent
    async def kid(ctx: Context, n: int) -> int:
        return n + 1

    @app.agent
    async def elder(ctx: Context) -> object:
        return await ctx.run_agent("kid", {"n": 1})

    handle = await app.start("elder")
    flaky, watcher = await on_flaky_store(app, {"get_job"}, times=2)
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(watcher, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == 2 and flaky.left == 0
    await app.close()


# -- an effect beside a wait lands before the job parks ----------------------------------------


@pytest.mark.parametrize("together", ["gather", "task_group"])
async def test_an_effect_running_beside_a_wait_is_recorded_before_the_job_parks(
    store_url: str, together: str
) -> None:
    world = World()
    app = App(store_url, lease_ttl=5.0)

    @app.tool(effect="at_most_once")
    async def charge(amount: int) -> str:
        await asyncio.sleep(0.3)
        world.hit("charge", aetheris.tool_context().idempotency_key)
        return f"ch-{amount}"

    @app.agent
    async def both(ctx: Context) -> list[object]:
        if together == "gather":
            return list(await asyncio.gather(charge(9), ctx.wait_for_signal("note")))
        async with asyncio.TaskGroup() as group:
            charged = group.create_task(charge(9))
            note = group.create_task(ctx.wait_for_signal("note"))
        return [charged.result(), note.result()]

    handle = await app.start("both")
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert job.park_reason is ParkReason.SIGNAL
        [row] = await (await app.open_store()).effects(job_id=handle.job_id)
        assert row.state is EffectState.COMMITTED, "the charge's outcome was dropped"
        await app.signal(handle.job_id, "note", "hi")
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == ["ch-9", "hi"]
    assert world.calls["charge"] == 1
    assert (await replay(app, handle.job_id)).outcome == "matched"
    await app.close()


# -- a worker's own expired lease, and worker options ------------------------------------------


async def test_a_worker_taking_back_its_own_expired_lease_counts_no_death(store_url: str) -> None:
    app = App(store_url, lease_ttl=0.5, max_recoveries=0)

    @app.agent
    async def slow(ctx: Context) -> str:
        await ctx.step("wait", asyncio.sleep, 1.0)
        return "done"

    handle = await app.start("slow")
    flaky, watcher = await on_flaky_store(app, {"heartbeat"}, times=1_000)
    async with running_worker(app, poll_interval=0.01) as worker:
        await asyncio.sleep(1.5)  # heartbeats fail: the lease expires under its own worker
        flaky.left = 0
        job = await wait_for(watcher, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.recoveries == 0
    assert worker.claimed >= 1
    await app.close()


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"lease_ttl": 0}, "lease_ttl must be at least 0.5"),
        ({"lease_ttl": -1}, "lease_ttl must be at least 0.5"),
        ({"lease_ttl": 0.1}, "lease_ttl must be at least 0.5"),
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"poll_interval": 0}, "poll_interval must be positive"),
        ({"grace": -1}, "grace must be zero or more"),
    ],
)
def test_a_worker_refuses_options_that_cannot_work(options: dict[str, float], problem: str) -> None:
    app = App("memory://")
    with pytest.raises(ConfigurationError, match=problem):
        app.worker(**options)


# -- wake-ups: a job never sleeps on what is already there -------------------------------------


async def test_a_job_that_parks_while_a_cancel_is_pending_is_woken_to_end(store_url: str) -> None:
    app = App(store_url, lease_ttl=5.0)
    started = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        started.set()
        await release.wait()

    @app.agent
    async def waits(ctx: Context) -> object:
        await asyncio.gather(ctx.step("hold", hold), ctx.wait_for_signal("never"))
        return "never"

    handle = await app.start("waits")
    async with running_worker(app, poll_interval=0.01):
        await started.wait()
        store = await app.open_store()
        # Past the App, so this worker learns of it at a heartbeat at the earliest: the run
        # parks first, with the cancel pending.
        await store.control(handle.job_id, aetheris.Control.CANCEL)
        release.set()
        job = await wait_for(app, handle.job_id, timeout=10)
    assert job.status is JobStatus.CANCELLED, job
    await app.close()


async def test_a_parked_job_is_due_at_its_deadline(store_url: str) -> None:
    app = App(store_url, lease_ttl=5.0)

    @app.agent
    async def patient(ctx: Context) -> object:
        return await ctx.wait_for_signal("never")

    handle = await app.start("patient", deadline=0.5)
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, timeout=5)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "DeadlineExceeded"
    await app.close()


async def test_a_child_ending_while_its_parent_parks_wakes_it(pg_url: str) -> None:
    """PostgreSQL: the child's end locks the parent first, so the parent's park sees it."""
    from aetheris.store.postgres import PostgresStore

    store = create_store(pg_url)
    await store.open()
    assert isinstance(store, PostgresStore)
    parent, _ = await store.create_job(_new("parent"))
    child, _ = await store.create_job(_new("child", parent=parent.id))
    where = ClaimFilter(["a"])
    claims = {c.job.id: c for c in [await store.claim("w", 30, where) for _ in "ab"] if c}
    p, c = claims[parent.id], claims[child.id]
    paused, go = asyncio.Event(), asyncio.Event()
    follow_up = store._follow_up

    async def slow_follow_up(conn: Any, job_id: str, commit: Commit) -> None:
        await follow_up(conn, job_id, commit)
        if job_id == child.id:
            paused.set()
            await go.wait()  # the child's transaction stays open, its end not yet visible

    store._follow_up = slow_follow_up  # type: ignore[method-assign]
    ends = asyncio.create_task(_end(store, c.lease, c.job, parent.id))
    await paused.wait()
    parks = asyncio.create_task(_park_on(store, p.lease, p.job, child.id))
    await asyncio.sleep(0.5)  # the parent's park waits for the child's transaction
    go.set()
    await asyncio.gather(ends, parks)
    woken = await store.get_job(parent.id)
    assert woken is not None and woken.status is JobStatus.PENDING, woken
    await store.close()


def _new(job_id: str, parent: str | None = None) -> NewJob:
    return NewJob(id=job_id, agent="a", input={}, parent_id=parent)


async def _end(store: Store, lease: Lease, job: aetheris.Job, parent: str) -> None:
    await store.commit(
        lease,
        Commit(
            [EventDraft(EventType.JOB_SUCCEEDED, {"result": 1})],
            status=StatusWrite(JobStatus.SUCCEEDED, result=1),
            head=Head(job.event_count, job.head_hash),
            wake=[(parent, job_wake(job.id))],
        ),
    )


async def _park_on(store: Store, lease: Lease, job: aetheris.Job, child: str) -> None:
    await store.commit(
        lease,
        Commit(
            [EventDraft(EventType.JOB_PARKED, {"reason": "child", "detail": {}})],
            status=StatusWrite(
                JobStatus.PARKED, park_reason=ParkReason.CHILD, wake_on=job_wake(child)
            ),
            head=Head(job.event_count, job.head_hash),
        ),
    )
