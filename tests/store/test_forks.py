"""A forked job is created with its journal already in it, all or nothing, on every store."""

from __future__ import annotations

import pytest

from aetheris.errors import Conflict
from aetheris.journal import EventDraft, EventType, verify_chain
from aetheris.store.port import (
    Commit,
    EffectClass,
    EffectState,
    EffectWrite,
    ForkedJob,
    Guard,
    JobStatus,
    Store,
)
from tests.store.test_conformance import ALL, new_job, op


def forked(job_id: str, journal: Commit) -> ForkedJob:
    return ForkedJob(
        id=job_id, agent="a", input={"n": 1}, forked_from={"job": "j1", "at": 2}, journal=journal
    )


def row(position: int) -> EffectWrite:
    return EffectWrite(
        position, "t", EffectClass.AT_MOST_ONCE, "h", f"k{position}", EffectState.COMMITTED
    )


async def test_a_fork_is_created_with_its_journal_ledger_and_blobs(store: Store) -> None:
    journal = Commit([op(0), op(1)], [row(1)], blobs=[("ab" * 32, b"blob")])
    job, created = await store.create_job(forked("f1", journal))
    assert created and job.status is JobStatus.PENDING and job.event_count == 3
    events = await store.events("f1")
    assert [e.type for e in events] == [EventType.JOB_CREATED, EventType.OP, EventType.OP]
    assert events[0].data["forked_from"] == {"job": "j1", "at": 2}
    assert [e.position for e in events[1:]] == [0, 1]
    assert verify_chain("f1", events).ok and job.head_hash == events[-1].hash
    [effect] = await store.effects(job_id="f1")
    assert (effect.position, effect.state) == (1, EffectState.COMMITTED)
    assert await store.blobs("f1") == {"ab" * 32: b"blob"}
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None and claim.job.attempts == 1 and claim.job.event_count == 4


async def test_a_fork_created_by_its_origin_s_control_write_links_both(store: Store) -> None:
    await store.create_job(new_job("j1"))
    link = EventDraft(EventType.JOB_FORKED, {"fork": "f1", "at": 1})
    fork = forked("f1", Commit([op(0)]))
    await store.apply("j1", Commit([link], create=[fork]), Guard(frozenset({JobStatus.PENDING})))
    assert [e.type for e in await store.events("j1")][-1] is EventType.JOB_FORKED
    assert [e.type for e in await store.events("f1")] == [EventType.JOB_CREATED, EventType.OP]


async def test_a_refused_fork_writes_nothing(store: Store) -> None:
    await store.create_job(new_job("j1"))
    link = EventDraft(EventType.JOB_FORKED, {"fork": "f1", "at": 1})
    twice = forked("f1", Commit([op(0)], [row(0), row(0)]))
    guard = Guard(frozenset({JobStatus.PENDING}))
    with pytest.raises(Conflict, match="twice"):
        await store.apply("j1", Commit([link], create=[twice]), guard)
    origin = await store.get_job("j1")
    assert origin is not None and origin.lease_epoch == 0, "refused before the epoch moved"
    assert await store.get_job("f1") is None
    assert [e.type for e in await store.events("j1")] == [EventType.JOB_CREATED]
