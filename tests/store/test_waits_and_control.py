"""The store's part in signals, timers, parked jobs and control actions, on every store."""

from __future__ import annotations

import asyncio
import time

import pytest

from aetheris.errors import Conflict, JobNotFound
from aetheris.journal import EventDraft, EventType
from aetheris.store.port import (
    Claim,
    ClaimFilter,
    Commit,
    Control,
    Head,
    JobStatus,
    NewJob,
    ParkReason,
    StatusWrite,
    Store,
    job_wake,
    signal_wake,
)

ALL = ClaimFilter(["a"])


async def running(store: Store, job_id: str = "j1", **kw: object) -> Claim:
    await store.create_job(NewJob(id=job_id, agent="a", input={}, **kw))  # type: ignore[arg-type]
    claim = await store.claim("w", 30.0, ALL)
    assert claim is not None and claim.job.id == job_id
    return claim


def head(claim: Claim) -> Head:
    return Head(claim.job.event_count, claim.job.head_hash)


async def park(store: Store, claim: Claim, **status: object) -> None:
    write = StatusWrite(JobStatus.PARKED, park_reason=ParkReason.SIGNAL, **status)  # type: ignore[arg-type]
    await store.commit(
        claim.lease, Commit([EventDraft(EventType.JOB_PARKED, {})], status=write, head=head(claim))
    )


async def test_signals_are_kept_in_order_and_deduplicated(store: Store) -> None:
    claim = await running(store)
    first, created = await store.send_signal("j1", "go", {"n": 1}, "s1", "alice")
    again, created_again = await store.send_signal("j1", "go", {"n": 99}, "s1", "alice")
    second, _ = await store.send_signal("j1", "go", {"n": 2}, "s2", None)
    assert created and not created_again
    assert again == first and again.payload == {"n": 1}
    assert [s.seq for s in await store.signals("j1")] == [first.seq, second.seq]
    assert first.seq < second.seq and first.sender == "alice"
    op = EventDraft(EventType.OP, {"kind": "signal", "name": "go"}, 0)
    await store.commit(claim.lease, Commit([op], consume=[(first.seq, 0)], head=head(claim)))
    assert [s.signal_id for s in await store.signals("j1")] == ["s2"]
    everything = await store.signals("j1", pending=False)
    assert [s.consumed_position for s in everything] == [0, None]
    job = await store.get_job("j1")
    assert job is not None
    again_commit = Commit(consume=[(first.seq, 1)], head=Head(job.event_count, job.head_hash))
    with pytest.raises(Conflict, match="already received"):
        await store.commit(claim.lease, again_commit)


async def test_signals_to_unknown_or_finished_jobs_are_refused(store: Store) -> None:
    with pytest.raises(JobNotFound):
        await store.send_signal("nope", "go", None, "s", None)
    claim = await running(store)
    done = StatusWrite(JobStatus.SUCCEEDED, result=1)
    await store.commit(claim.lease, Commit(status=done, head=head(claim)))
    with pytest.raises(Conflict, match="ended"):
        await store.send_signal("j1", "go", None, "s", None)


async def test_a_signal_wakes_a_job_parked_for_it_and_only_for_it(store: Store) -> None:
    claim = await running(store)
    await park(store, claim, wake_on=signal_wake("go"))
    await store.send_signal("j1", "other", None, "s1", None)
    job = await store.get_job("j1")
    assert job is not None and job.status is JobStatus.PARKED
    await store.send_signal("j1", "go", None, "s2", None)
    job = await store.get_job("j1")
    assert job is not None and job.status is JobStatus.PENDING and job.wake_on is None


async def test_parking_on_a_signal_already_there_does_not_sleep(store: Store) -> None:
    claim = await running(store)
    await store.send_signal("j1", "go", None, "s1", None)
    await park(store, claim, wake_on=signal_wake("go"))
    job = await store.get_job("j1")
    assert job is not None and job.status is JobStatus.PENDING


async def test_due_parked_jobs_are_claimable_and_next_wake_says_when(store: Store) -> None:
    claim = await running(store)
    soon = time.time() + 0.2
    await park(store, claim, wake_at=soon)
    assert await store.next_wake() == pytest.approx(soon)
    assert await store.claim("w2", 30.0, ALL) is None
    await asyncio.sleep(0.25)
    again = await store.claim("w2", 30.0, ALL)
    assert again is not None and again.job.id == "j1" and again.job.wake_at is None
    assert again.recovered_from is None and again.job.recoveries == 0
    assert await store.next_wake() is None


async def test_a_finished_child_wakes_its_parent(store: Store) -> None:
    parent = await running(store, "p")
    await park(store, parent, wake_on=job_wake("p.0"))
    await store.create_job(NewJob(id="p.0", agent="a", input={}, parent_id="p"))
    child = await store.claim("w", 30.0, ALL)
    assert child is not None and child.job.parent_id == "p"
    done = StatusWrite(JobStatus.SUCCEEDED, result=7)
    await store.commit(
        child.lease, Commit(status=done, head=head(child), wake=[("p", job_wake("p.0"))])
    )
    job = await store.get_job("p")
    assert job is not None and job.status is JobStatus.PENDING


async def test_parking_on_a_child_that_already_ended_does_not_sleep(store: Store) -> None:
    await store.create_job(NewJob(id="c", agent="other", input={}))
    await store.control("c", Control.CANCEL)
    parent = await running(store, "p")
    await park(store, parent, wake_on=job_wake("c"))
    job = await store.get_job("p")
    assert job is not None and job.status is JobStatus.PENDING


async def test_cancel_a_job_that_never_started_ends_it_at_once(store: Store) -> None:
    await store.create_job(NewJob(id="j1", agent="a", input={}))
    job = await store.control("j1", Control.CANCEL)
    assert job.status is JobStatus.CANCELLED and job.error is not None
    assert [e.type for e in await store.events("j1")][-1] is EventType.JOB_CANCELLED
    with pytest.raises(Conflict, match="already ended"):
        await store.control("j1", Control.CANCEL)


async def test_cancel_a_running_job_flags_it_and_heartbeats_carry_the_flag(store: Store) -> None:
    claim = await running(store)
    events_before = len(await store.events("j1"))
    job = await store.control("j1", Control.CANCEL)
    assert job.status is JobStatus.RUNNING and job.control is Control.CANCEL
    assert len(await store.events("j1")) == events_before, "a holder's journal is not touched"
    beat = await store.heartbeat([claim.lease], 30.0)
    assert beat.lost == set() and beat.control == {"j1": Control.CANCEL}


async def test_who_flagged_a_running_job_is_kept_with_the_flag_until_it_ends(
    store: Store,
) -> None:
    claim = await running(store)
    job = await store.control("j1", Control.PAUSE, by="key:k1 (operator)")
    assert job.control is Control.PAUSE and job.control_by == "key:k1 (operator)"
    job = await store.control("j1", Control.RESUME, by="key:k2 (admin)")
    assert job.control is None and job.control_by is None
    await store.control("j1", Control.CANCEL, by="key:k3 (operator)")
    job = await store.get_job("j1")
    assert job is not None and job.control_by == "key:k3 (operator)"
    end = StatusWrite(JobStatus.CANCELLED)
    drafts = [EventDraft(EventType.JOB_CANCELLED, {})]
    await store.commit(claim.lease, Commit(drafts, status=end, head=head(claim)))
    job = await store.get_job("j1")
    assert job is not None and job.control is None and job.control_by is None


async def test_cancel_a_parked_job_wakes_it_and_cascades_to_children(store: Store) -> None:
    parent = await running(store, "p")
    await park(store, parent, wake_on=job_wake("p.0"))
    await store.create_job(NewJob(id="p.0", agent="other", input={}, parent_id="p"))
    job = await store.control("p", Control.CANCEL)
    assert job.status is JobStatus.PENDING and job.control is Control.CANCEL
    child = await store.get_job("p.0")
    assert child is not None and child.status is JobStatus.CANCELLED


async def test_pause_and_resume(store: Store) -> None:
    await store.create_job(NewJob(id="j1", agent="a", input={}))
    job = await store.control("j1", Control.PAUSE)
    assert job.status is JobStatus.PARKED and job.park_reason is ParkReason.PAUSED
    assert await store.claim("w", 30.0, ALL) is None
    job = await store.control("j1", Control.RESUME)
    assert job.status is JobStatus.PENDING and job.control is None
    with pytest.raises(Conflict, match="not paused"):
        await store.control("j1", Control.RESUME)
    claim = await store.claim("w", 30.0, ALL)
    assert claim is not None
    job = await store.control("j1", Control.PAUSE)
    assert job.status is JobStatus.RUNNING and job.control is Control.PAUSE
    job = await store.control("j1", Control.RESUME)
    assert job.control is None


async def test_reclaiming_an_expired_lease_counts_a_recovery(store: Store) -> None:
    await store.create_job(NewJob(id="j1", agent="a", input={}))
    await store.claim("w1", 0.01, ALL)
    await asyncio.sleep(0.05)
    claim = await store.claim("w2", 30.0, ALL)
    assert claim is not None and claim.job.recoveries == 1
