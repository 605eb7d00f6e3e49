"""Signals, approvals, durable time, cancel and pause, child agents, deadlines: in-process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

import aetheris
from aetheris import App, Context, JobStatus, ParkReason
from aetheris.journal import EventType
from aetheris.testing import replay, running_worker

from .helpers import wait_for


def counting_app(url: str) -> tuple[App, Counter[str]]:
    app = App(url, lease_ttl=2.0)
    calls: Counter[str] = Counter()

    @app.tool
    async def prepare(n: int) -> int:
        calls["prepare"] += 1
        return n * 2

    @app.tool(effect="at_most_once")
    async def pay(amount: int) -> str:
        calls["pay"] += 1
        return f"paid {amount}"

    @app.agent
    async def needs_ok(ctx: Context, n: int) -> dict[str, object]:
        amount = await prepare(n)
        decision = await ctx.approval("refund", {"amount": amount})
        receipt = await pay(amount)
        return {"receipt": receipt, "by": decision.by}

    @app.agent
    async def listens(ctx: Context, count: int, timeout: float | None = None) -> list[object]:
        await prepare(count)
        got = []
        for _ in range(count):
            try:
                got.append(await ctx.wait_for_signal("note", timeout=timeout))
            except aetheris.SignalTimeout:
                got.append("timeout")
        return got

    return app, calls


async def test_approval_resumes_without_repeating_anything(store_url: str) -> None:
    app, calls = counting_app(store_url)
    handle = await app.start("needs_ok", {"n": 21})
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert job.park_reason is ParkReason.APPROVAL
        request = job.park_detail or {}
        assert request["name"] == "refund" and request["payload"] == {"amount": 42}
        assert calls == {"prepare": 1}
        await app.approve(handle.job_id, by="maria", args_hash=request["args_hash"])
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert job.result == {"receipt": "paid 42", "by": "maria"}
    assert calls == {"prepare": 1, "pay": 1}
    events = await (await app.open_store()).events(job.id)
    decided = [e.data for e in events if e.type is EventType.OP and e.data["kind"] == "approval"]
    assert decided[0]["result"]["by"] == "maria" and decided[0]["sender"] == "maria"
    assert (await replay(app, job.id)).outcome == "matched"
    with pytest.raises(aetheris.Conflict, match="no pending approval"):
        await app.approve(handle.job_id)
    await app.close()


async def test_reject_raises_in_the_agent_which_may_handle_it(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def asks(ctx: Context) -> str:
        try:
            await ctx.approval("deploy", {"to": "prod"})
        except aetheris.ApprovalRejected as exc:
            return f"not deployed: {exc.detail['reason']} (by {exc.detail['by']})"
        return "deployed"

    handle = await app.start("asks", {})
    async with running_worker(app, poll_interval=0.01):
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        await app.reject(handle.job_id, by="sam", reason="freeze week")
        job = await wait_for(app, handle.job_id)
    assert job.result == "not deployed: freeze week (by sam)"
    assert (await replay(app, job.id)).outcome == "matched"
    await app.close()


async def test_approving_arguments_that_changed_is_refused(store_url: str) -> None:
    app, _ = counting_app(store_url)
    handle = await app.start("needs_ok", {"n": 1})
    async with running_worker(app, poll_interval=0.01):
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        with pytest.raises(aetheris.Conflict, match="review it again"):
            await app.approve(handle.job_id, args_hash="0" * 64)
    assert (await app.get_job(handle.job_id)).status is JobStatus.PARKED
    await app.close()


async def test_a_guarded_tool_waits_for_approval_of_that_exact_call(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)
    sent: list[str] = []

    @app.tool(effect="at_most_once", requires_approval=True)
    async def wire(iban: str, amount: int) -> str:
        sent.append(iban)
        return "wired"

    @app.agent
    async def treasury(ctx: Context) -> str:
        return await wire("DE89", amount=500)

    handle = await app.start("treasury", {})
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        request = (job.park_detail or {})["payload"]
        assert request["tool"] == "wire"
        assert request["args"] == ["DE89"] and request["kwargs"] == {"amount": 500}
        assert sent == []
        await app.approve(handle.job_id, by="cfo")
        job = await wait_for(app, handle.job_id)
    assert job.result == "wired" and sent == ["DE89"]
    await app.close()


async def test_approval_deadline_escalates_then_fails(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def slow_humans(ctx: Context) -> str:
        try:
            await ctx.approval("refund", {}, timeout=0.3, escalate_to="manager")
        except aetheris.ApprovalTimeout as exc:
            return f"timed out; escalated to {exc.detail['escalated_to']}"
        return "approved"

    handle = await app.start("slow_humans", {})
    async with running_worker(app, poll_interval=0.02):
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        job = await wait_for(app, handle.job_id, timeout=10)
    assert job.result == "timed out; escalated to manager"
    events = await (await app.open_store()).events(job.id)
    parks = [e.data["detail"] for e in events if e.type is EventType.JOB_PARKED]
    assert parks[0]["escalated_to"] is None and parks[-1]["escalated_to"] == "manager"
    await app.close()


async def test_signals_before_the_wait_in_order_once_each(store_url: str) -> None:
    app, _ = counting_app(store_url)
    handle = await app.start("listens", {"count": 3})
    for i in range(3):
        await app.signal(handle.job_id, "note", {"i": i}, signal_id=f"n{i}")
    await app.signal(handle.job_id, "note", {"i": 0}, signal_id="n0")  # a duplicate: dropped
    await app.signal(handle.job_id, "other", "ignored")
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id)
    assert job.result == [{"i": 0}, {"i": 1}, {"i": 2}]
    store = await app.open_store()
    assert [s.name for s in await store.signals(job.id)] == ["other"]
    await app.close()


async def test_signals_after_the_wait_wake_the_parked_job(store_url: str) -> None:
    app, calls = counting_app(store_url)
    handle = await app.start("listens", {"count": 2})
    async with running_worker(app, poll_interval=0.01):
        for i in range(2):
            job = await wait_for(app, handle.job_id, JobStatus.PARKED)
            assert job.park_reason is ParkReason.SIGNAL
            await app.signal(handle.job_id, "note", i)
            if i == 0:
                await asyncio.sleep(0.2)
        job = await wait_for(app, handle.job_id)
    assert job.result == [0, 1]
    assert calls == {"prepare": 1}
    await app.close()


async def test_signal_timeout_is_catchable_and_replays(store_url: str) -> None:
    app, _ = counting_app(store_url)
    handle = await app.start("listens", {"count": 1, "timeout": 0.2})
    async with running_worker(app, poll_interval=0.02):
        job = await wait_for(app, handle.job_id, timeout=10)
    assert job.result == ["timeout"]
    assert (await replay(app, job.id)).outcome == "matched"
    await app.close()


async def test_signals_to_unknown_or_finished_jobs_are_errors(store_url: str) -> None:
    app, _ = counting_app(store_url)
    with pytest.raises(aetheris.JobNotFound):
        await app.signal("nope", "note")
    handle = await app.start("listens", {"count": 0})
    async with running_worker(app, poll_interval=0.01):
        await wait_for(app, handle.job_id)
    with pytest.raises(aetheris.Conflict, match="ended"):
        await app.signal(handle.job_id, "note")
    await app.close()


async def test_durable_sleep_parks_and_wakes(store_url: str) -> None:
    app, calls = counting_app(store_url)

    @app.agent
    async def naps(ctx: Context) -> float:
        await calls_prepare(ctx)
        began = ctx.now()
        await ctx.sleep(0.4)
        return (ctx.now() - began).total_seconds()

    async def calls_prepare(ctx: Context) -> None:
        calls["naps"] += 1

    handle = await app.start("naps", {})
    async with running_worker(app, poll_interval=0.05):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert job.park_reason is ParkReason.TIMER and job.wake_at is not None
        job = await wait_for(app, handle.job_id, timeout=10)
    assert job.result >= 0.4
    await app.close()


async def test_parked_jobs_hold_no_worker_slot(store_url: str) -> None:
    app = App(store_url, lease_ttl=5.0)

    @app.agent
    async def waits(ctx: Context) -> object:
        return await ctx.wait_for_signal("never")

    @app.agent
    async def quick(ctx: Context, n: int) -> int:
        return n

    parked = [
        (await app.start("waits", {})).job_id for _ in range(200 if "memory" in store_url else 1000)
    ]
    async with running_worker(app, concurrency=1, poll_interval=0.01):
        deadline = time.monotonic() + 60
        while len(await app.list_jobs(status=JobStatus.PARKED, limit=2000)) < len(parked):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        handles = [await app.start("quick", {"n": i}) for i in range(5)]
        results = [await h.result(timeout=10) for h in handles]
    assert results == list(range(5))
    await app.close()


async def test_cancel_interrupts_a_slow_tool_and_compensates(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)
    undone: list[str] = []

    @app.tool(effect="idempotent", compensate=lambda req: undone.append(req.tool))
    async def reserve() -> str:
        return "r1"

    @app.tool(effect="at_most_once")
    async def slow_send() -> str:
        await asyncio.sleep(30)
        return "sent"

    @app.agent
    async def long_job(ctx: Context) -> str:
        await reserve()
        return await slow_send()

    handle = await app.start("long_job", {})
    async with running_worker(app, poll_interval=0.01):
        deadline = time.monotonic() + 10
        while not [
            e
            for e in await (await app.open_store()).effects(job_id=handle.job_id)
            if e.tool == "slow_send"
        ]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        began = time.monotonic()
        await app.cancel(handle.job_id)
        job = await wait_for(app, handle.job_id, timeout=10)
    assert time.monotonic() - began < 5, "the slow tool was not interrupted"
    assert job.status is JobStatus.CANCELLED
    assert undone == ["reserve"]
    assert job.error is not None and job.error["in_doubt"] == [1]
    rows = {e.tool: e.state for e in await (await app.open_store()).effects(job_id=job.id)}
    assert rows["slow_send"] is aetheris.EffectState.IN_DOUBT
    await app.close()


async def test_pause_and_resume_a_running_job(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)
    gate = asyncio.Event()

    @app.tool
    async def wait_gate() -> None:
        await gate.wait()

    @app.agent
    async def pausable(ctx: Context) -> str:
        await wait_gate()
        await ctx.step("after", lambda: 1)
        return "done"

    handle = await app.start("pausable", {})
    async with running_worker(app, poll_interval=0.01):
        await wait_for(app, handle.job_id, JobStatus.RUNNING)
        await app.pause(handle.job_id)
        gate.set()
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert job.park_reason is ParkReason.PAUSED
        await app.resume(handle.job_id)
        job = await wait_for(app, handle.job_id)
    assert job.result == "done"
    await app.close()


async def test_child_agents_and_their_failures(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def child(ctx: Context, n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n * 10

    @app.agent
    async def parent(ctx: Context) -> list[object]:
        out: list[object] = [await ctx.run_agent("child", {"n": 4})]
        try:
            await ctx.run_agent("child", {"n": -1})
        except aetheris.ChildFailed as exc:
            out.append(exc.detail["status"])
        return out

    handle = await app.start("parent", {})
    async with running_worker(app, concurrency=2, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, timeout=20)
    assert job.result == [40, "failed"]
    children = [j for j in await app.list_jobs() if j.parent_id == job.id]
    assert sorted(c.status.value for c in children) == ["failed", "succeeded"]
    assert (await replay(app, job.id)).outcome == "matched"
    await app.close()


async def test_cancelling_the_parent_cancels_the_child(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.agent
    async def stuck(ctx: Context) -> object:
        return await ctx.wait_for_signal("never")

    @app.agent
    async def boss(ctx: Context) -> object:
        return await ctx.run_agent("stuck", {})

    handle = await app.start("boss", {})
    async with running_worker(app, concurrency=2, poll_interval=0.01):
        await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=10)
        await wait_for(app, f"{handle.job_id}.0", JobStatus.PARKED, timeout=10)
        await app.cancel(handle.job_id)
        job = await wait_for(app, handle.job_id, timeout=10)
        child = await wait_for(app, f"{handle.job_id}.0", timeout=10)
    assert job.status is JobStatus.CANCELLED
    assert child.status is JobStatus.CANCELLED
    await app.close()


async def test_parallel_steps_replay_in_their_positions(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.tool
    async def fetch(i: int) -> int:
        await asyncio.sleep(0.01 * (5 - i))
        return i * i

    @app.agent
    async def fan_out(ctx: Context) -> list[int]:
        return list(await asyncio.gather(*(fetch(i) for i in range(5))))

    handle = await app.start("fan_out", {})
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id)
    assert job.result == [0, 1, 4, 9, 16]
    assert (await replay(app, job.id)).outcome == "matched"
    await app.close()


async def test_a_job_deadline_interrupts_and_fails_it(store_url: str) -> None:
    app = App(store_url, lease_ttl=2.0)

    @app.tool
    async def crawl() -> None:
        await asyncio.sleep(30)

    @app.agent
    async def endless(ctx: Context) -> None:
        await crawl()

    handle = await app.start("endless", {}, deadline=0.3)
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, timeout=10)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "DeadlineExceeded"
    await app.close()
