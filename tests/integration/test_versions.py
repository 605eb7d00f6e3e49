"""Deploying new agent code while jobs run: code versions, worker policies, ``ctx.patched``.

Each test redeploys in one process: two Apps on one database (SQLite, PostgreSQL) stand for
the old and the new deploy of the same agent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import pytest

from aetheris import App, Context, JobStatus, ParkReason
from aetheris.errors import ConfigurationError
from aetheris.journal import CODED, EventType, verify_chain
from aetheris.replay import replay
from aetheris.testing import running_worker
from aetheris.versions import HANDBACKS

from .helpers import wait_for


def deploy(url: str, code: str, paid: Counter[str]) -> App:
    """The refund agent as deployed at ``code``: ``v1``; ``v2`` adds a risk check before the
    approval behind ``ctx.patched``; ``v2-unpatched`` adds it without."""
    app = App(url, lease_ttl=2.0)

    @app.tool(effect="at_most_once")
    async def pay(amount: int) -> str:
        paid[f"pay {amount}"] += 1
        return "paid"

    async def quote(amount: int) -> int:
        return amount * 100

    if code == "v1":

        @app.agent(name="refund")
        async def refund_v1(ctx: Context, amount: int) -> dict[str, Any]:
            cents = await ctx.step("quote", quote, amount)
            await ctx.approval("refund", {"cents": cents})
            await pay(amount)
            return {"branch": "old", "cents": cents}

    elif code == "v2":

        @app.agent(name="refund")
        async def refund_v2(ctx: Context, amount: int) -> dict[str, Any]:
            cents = await ctx.step("quote", quote, amount)
            branch = "old"
            if ctx.patched("risk-check"):
                await ctx.step("risk", quote, amount)
                branch = "new"
            await ctx.approval("refund", {"cents": cents})
            await pay(amount)
            return {"branch": branch, "cents": cents}

    else:

        @app.agent(name="refund")
        async def refund_unpatched(ctx: Context, amount: int) -> dict[str, Any]:
            cents = await ctx.step("quote", quote, amount)
            await ctx.step("risk", quote, amount)
            await ctx.approval("refund", {"cents": cents})
            await pay(amount)
            return {"branch": "new", "cents": cents}

    return app


async def _parked_under_v1(url: str, paid: Counter[str]) -> tuple[App, str]:
    """A v1 job parked on its approval, then approved while no worker runs: pending."""
    v1 = deploy(url, "v1", paid)
    handle = await v1.start("refund", {"amount": 7})
    async with running_worker(v1, poll_interval=0.01):
        await wait_for(v1, handle.job_id, JobStatus.PARKED)
    await v1.approve(handle.job_id, by="ops")
    return v1, handle.job_id


def _codes(events: list[Any]) -> list[str | None]:
    return [e.data.get("code") for e in events if e.type in CODED]


async def test_a_patched_deploy_finishes_old_jobs_on_the_old_branch(durable_url: str) -> None:
    paid: Counter[str] = Counter()
    v1, old_job = await _parked_under_v1(durable_url, paid)
    v1_code = v1.agent_def("refund").version
    v2 = deploy(durable_url, "v2", paid)
    v2_code = v2.agent_def("refund").version
    assert v1_code != v2_code
    new = await v2.start("refund", {"amount": 9})
    async with running_worker(v2, poll_interval=0.01):  # the default policy: check
        assert (await wait_for(v2, old_job)).result == {"branch": "old", "cents": 700}
        await wait_for(v2, new.job_id, JobStatus.PARKED)
        await v2.approve(new.job_id, by="ops")
        assert (await wait_for(v2, new.job_id)).result == {"branch": "new", "cents": 900}
    assert paid == Counter({"pay 7": 1, "pay 9": 1})

    store = await v2.open_store()
    old_events, new_events = await store.events(old_job), await store.events(new.job_id)
    # The old job: no marker; entries of v1 until the park, of v2 after.
    assert not [e for e in old_events if e.data.get("kind") == "patch"]
    assert _codes(old_events) == [v1_code, v1_code, v2_code, v2_code, v2_code]
    assert (await v2.get_job(old_job)).code_version == v2_code
    claims = [e.data.get("code") for e in old_events if e.type is EventType.JOB_CLAIMED]
    assert claims == [v1_code, v2_code]
    assert not [e for e in old_events if e.type is EventType.JOB_RELEASED]
    # The new job: the marker at position 1, before the risk step.
    marker = [e for e in new_events if e.data.get("kind") == "patch"]
    assert [(e.position, e.data["name"], e.data["code"]) for e in marker] == [
        (1, "risk-check", v2_code)
    ]
    for job_id, events in ((old_job, old_events), (new.job_id, new_events)):
        assert verify_chain(job_id, events).ok
        assert (await replay(v2, job_id)).outcome == "matched"
    # The old code cannot replay the new job: the marker is compared like any entry.
    report = await replay(v1, new.job_id)
    assert report.outcome == "diverged" and report.position == 1
    assert "patch risk-check" in (report.diff or "")
    await v1.close()
    await v2.close()


async def test_check_hands_back_a_diverging_job_without_parking_it(
    durable_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    paid: Counter[str] = Counter()
    v1, job_id = await _parked_under_v1(durable_url, paid)
    v2 = deploy(durable_url, "v2-unpatched", paid)
    v2_code = v2.agent_def("refund").version
    caplog.set_level(logging.WARNING, logger="aetheris.worker")
    async with running_worker(v2, poll_interval=0.01, on_new_code="check") as worker:
        store = await v2.open_store()
        for _ in range(200):
            events = await store.events(job_id)
            if any(e.type is EventType.JOB_RELEASED for e in events):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # many claim rounds: the job is passed over, not re-claimed
        job = await v2.get_job(job_id)
        assert job.status is JobStatus.PENDING and job.park_reason is None
        assert job.code_version == v1.agent_def("refund").version  # as the old code left it
        events = await store.events(job_id)
        by_v2 = [e for e in events if e.type is EventType.JOB_CLAIMED and e.data["code"] == v2_code]
        assert len(by_v2) == 1 and worker.gate.policy == "check"
        (released,) = [e for e in events if e.type is EventType.JOB_RELEASED]
        assert released.data["written_by"] == v1.agent_def("refund").version
        assert released.data["divergence"]["position"] == 1
        assert "step risk" in released.data["divergence"]["diff"]
    assert any("diverges from its journal" in r.getMessage() for r in caplog.records)
    assert paid == Counter()
    # A worker running the old code takes it and finishes it.
    async with running_worker(v1, poll_interval=0.01):
        assert (await wait_for(v1, job_id)).result == {"branch": "old", "cents": 700}
    assert paid == Counter({"pay 7": 1})
    assert verify_chain(job_id, await store.events(job_id)).ok
    await v1.close()
    await v2.close()


async def test_a_job_no_old_worker_comes_for_parks_after_its_hand_backs(durable_url: str) -> None:
    """With no worker of the old code left, ``check`` hands the job back HANDBACKS times, then
    parks it ``nondeterminism`` where operators look; nothing is dispatched on the way."""
    paid: Counter[str] = Counter()
    v1, job_id = await _parked_under_v1(durable_url, paid)
    v2 = deploy(durable_url, "v2-unpatched", paid)
    async with running_worker(v2, poll_interval=0.01, on_new_code="check", recheck_after=0):
        job = await wait_for(v2, job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.NONDETERMINISM, job
    events = await (await v2.open_store()).events(job_id)
    released = [e for e in events if e.type is EventType.JOB_RELEASED]
    assert len(released) == HANDBACKS and paid == Counter()
    assert "step risk" in job.park_detail["diff"]
    await v1.close()
    await v2.close()


async def test_refuse_leaves_old_jobs_to_old_workers_and_takes_new_ones(durable_url: str) -> None:
    paid: Counter[str] = Counter()
    v1, old_job = await _parked_under_v1(durable_url, paid)
    v2 = deploy(durable_url, "v2-unpatched", paid)
    new = await v2.start("refund", {"amount": 3})
    async with running_worker(v2, poll_interval=0.01, on_new_code="refuse"):
        await wait_for(v2, new.job_id, JobStatus.PARKED)
        await asyncio.sleep(0.3)
        old = await v2.get_job(old_job)
        assert old.status is JobStatus.PENDING
        store = await v2.open_store()
        claims = [e for e in await store.events(old_job) if e.type is EventType.JOB_CLAIMED]
        assert len(claims) == 1  # only v1's first run
    async with running_worker(v1, poll_interval=0.01, on_new_code="refuse"):
        assert (await wait_for(v1, old_job)).result == {"branch": "old", "cents": 700}
    assert (await v1.get_job(new.job_id)).status is JobStatus.PARKED  # v1 refuses v2's job
    await v1.close()
    await v2.close()


async def test_proceed_parks_a_diverging_job_as_before(durable_url: str) -> None:
    paid: Counter[str] = Counter()
    v1, job_id = await _parked_under_v1(durable_url, paid)
    v2 = deploy(durable_url, "v2-unpatched", paid)
    async with running_worker(v2, poll_interval=0.01, on_new_code="proceed"):
        job = await wait_for(v2, job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.NONDETERMINISM and job.park_detail is not None
    assert job.park_detail["position"] == 1
    assert paid == Counter()
    await v1.close()
    await v2.close()


async def test_a_patch_after_the_recorded_prefix_is_taken_by_a_resumed_job(
    store_url: str,
) -> None:
    """Past where a job was, the new code runs live: the marker is recorded, the branch taken."""
    app = App(store_url)

    @app.agent
    async def gated(ctx: Context) -> bool:
        await ctx.wait_for_signal("go")
        taken = ctx.patched("after")
        ctx.deprecate_patch("other")  # recorded too: a later position
        return taken

    handle = await app.start("gated", {})
    async with running_worker(app, poll_interval=0.01):
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        await app.signal(handle.job_id, "go")
        await wait_for(app, handle.job_id)
    events = await (await app.open_store()).events(handle.job_id)
    markers = [(e.position, e.data["name"]) for e in events if e.data.get("kind") == "patch"]
    assert (await app.get_job(handle.job_id)).result is True
    assert markers == [(1, "after"), (2, "other")]
    assert (await replay(app, handle.job_id)).outcome == "matched"
    await app.close()


async def test_an_unknown_policy_and_an_empty_patch_id_are_refused() -> None:
    app = App("memory://")

    @app.agent
    async def patcher(ctx: Context) -> None:
        ctx.patched("")

    with pytest.raises(ConfigurationError, match="on_new_code must be one of"):
        app.worker(on_new_code="sometimes")
    handle = await app.start("patcher", {})
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error["type"] == "InvalidInput" and "patch id" in job.error["message"]
    await app.close()
