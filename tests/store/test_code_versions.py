"""Code versions in the store: what a commit records, what a claim takes (every store)."""

from __future__ import annotations

import asyncio

from aetheris.journal import EventDraft, EventType, verify_chain
from aetheris.store.port import (
    ClaimFilter,
    Commit,
    Head,
    JobStatus,
    NewJob,
    ParkReason,
    StatusWrite,
    Store,
)

V1 = {"a": "v1", "b": "b1"}
V2 = {"a": "v2", "b": "b1"}


def new_job(job_id: str, agent: str = "a") -> NewJob:
    return NewJob(id=job_id, agent=agent, input={})


def op(position: int) -> EventDraft:
    data = {"kind": "step", "name": "s", "ordinal": 1, "args_hash": "", "result": position}
    return EventDraft(EventType.OP, data, position)


async def _park_after_entries(store: Store, job_id: str, versions: dict[str, str]) -> None:
    """Claim ``job_id``, write one entry as ``versions``' code, park it, wake it (pending)."""
    claim = await store.claim("w", 30.0, ClaimFilter(["a", "b"], versions=versions))
    assert claim is not None and claim.job.id == job_id
    job = claim.job
    parked = StatusWrite(JobStatus.PARKED, ParkReason.TIMER, wake_on=None, wake_at=0.0)
    commit = Commit([op(0)], status=parked, head=Head(job.event_count, job.head_hash))
    await store.commit(claim.lease, commit.by_code(versions[job.agent]))


async def test_the_claim_records_the_claimers_code_and_commits_the_jobs_version(
    store: Store,
) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w", 30.0, ClaimFilter(["a"], versions=V1))
    assert claim is not None
    assert claim.job.code_version is None  # nothing written by any code yet
    events = await store.events("j1")
    assert events[-1].type is EventType.JOB_CLAIMED and events[-1].data["code"] == "v1"
    head = Head(claim.job.event_count, claim.job.head_hash)
    sealed = await store.commit(claim.lease, Commit([op(0)], head=head).by_code("v1"))
    assert sealed[0].data["code"] == "v1"
    job = await store.get_job("j1")
    assert job is not None and job.code_version == "v1"
    # A commit with no entry that holds a position leaves the version as it is.
    head = Head(job.event_count, job.head_hash)
    released = Commit(
        [EventDraft(EventType.JOB_RELEASED, {"reason": "x"})],
        status=StatusWrite(JobStatus.PENDING),
        head=head,
    ).by_code("v9")
    await store.commit(claim.lease, released)
    job = await store.get_job("j1")
    assert job is not None and job.code_version == "v1"
    assert verify_chain("j1", await store.events("j1")).ok


async def test_matching_only_passes_over_jobs_another_version_wrote(store: Store) -> None:
    await store.create_job(new_job("old"))
    await _park_after_entries(store, "old", V1)  # due now: claimable again
    await store.create_job(new_job("new"))
    refuse_v2 = ClaimFilter(["a"], versions=V2, matching_only=True)
    claim = await store.claim("w2", 30.0, refuse_v2)
    assert claim is not None and claim.job.id == "new"  # a job no code wrote yet
    assert await store.claim("w2", 30.0, refuse_v2) is None
    # Without matching_only the same worker takes it; a v1 worker takes it either way.
    refuse_v1 = ClaimFilter(["a"], versions=V1, matching_only=True)
    claim = await store.claim("w1", 30.0, refuse_v1)
    assert claim is not None and claim.job.id == "old" and claim.job.code_version == "v1"


async def test_matching_only_compares_versions_agent_by_agent(store: Store) -> None:
    await store.create_job(new_job("ja", agent="a"))
    await _park_after_entries(store, "ja", {"a": "b1", "b": "b1"})  # a's version named b1
    refuse = ClaimFilter(["a", "b"], versions=V2, matching_only=True)
    assert await store.claim("w", 30.0, refuse) is None  # b1 is b's version, not a's


async def test_matching_only_passes_over_expired_leases_of_other_code(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 0.01, ClaimFilter(["a"], versions=V1))
    assert claim is not None
    head = Head(claim.job.event_count, claim.job.head_hash)
    await store.commit(claim.lease, Commit([op(0)], head=head).by_code("v1"))
    await asyncio.sleep(0.05)
    assert (
        await store.claim("w2", 30.0, ClaimFilter(["a"], versions=V2, matching_only=True)) is None
    )
    taken = await store.claim("w3", 30.0, ClaimFilter(["a"], versions=V1, matching_only=True))
    assert taken is not None and taken.recovered_from == "w1"


async def test_a_claim_passes_over_the_jobs_it_skips(store: Store) -> None:
    await store.create_job(new_job("j1"))
    await store.create_job(new_job("j2"))
    claim = await store.claim("w", 30.0, ClaimFilter(["a"], skip=["j1"]))
    assert claim is not None and claim.job.id == "j2"
    assert await store.claim("w", 30.0, ClaimFilter(["a"], skip=["j1"])) is None
    claim = await store.claim("w", 30.0, ClaimFilter(["a"]))
    assert claim is not None and claim.job.id == "j1"
