"""The store port's contract: every test runs against every store implementation."""

from __future__ import annotations

import asyncio

import pytest

from aetheris.errors import Conflict, IdempotencyConflict, JobNotFound, LeaseLost
from aetheris.journal import GENESIS_HASH, EventDraft, EventType, verify_chain
from aetheris.store.port import (
    Budget,
    ClaimFilter,
    Commit,
    EffectClass,
    EffectState,
    EffectWrite,
    Guard,
    Head,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    StatusWrite,
    Store,
)

ALL = ClaimFilter(["a", "b"])


def new_job(job_id: str, agent: str = "a", **kw: object) -> NewJob:
    return NewJob(id=job_id, agent=agent, input={"n": 1}, **kw)  # type: ignore[arg-type]


def op(position: int, name: str = "t", result: object = 1) -> EventDraft:
    data = {"kind": "tool", "name": name, "ordinal": 1, "args_hash": "h", "result": result}
    return EventDraft(EventType.OP, data, position)


def intent(position: int, state: EffectState = EffectState.INTENT, **kw: object) -> EffectWrite:
    return EffectWrite(position, "pay", EffectClass.AT_MOST_ONCE, "h", f"k{position}", state, **kw)  # type: ignore[arg-type]


async def test_create_job_records_created_event(store: Store) -> None:
    job, created = await store.create_job(new_job("j1"))
    assert created
    assert job.status is JobStatus.PENDING
    assert job.input == {"n": 1}
    assert job.lease_epoch == 0 and job.attempts == 0
    events = await store.events("j1")
    assert [e.type for e in events] == [EventType.JOB_CREATED]
    assert events[0].prev_hash == GENESIS_HASH
    assert job.event_count == 1 and job.head_hash == events[0].hash


async def test_idempotency_key_returns_the_same_job(store: Store) -> None:
    first, created = await store.create_job(new_job("j1", idempotency_key="k"))
    again, created_again = await store.create_job(new_job("j2", idempotency_key="k"))
    assert created and not created_again
    assert again.id == first.id == "j1"
    assert await store.get_job("j2") is None


async def test_idempotency_key_with_other_input_is_refused(store: Store) -> None:
    await store.create_job(new_job("j1", idempotency_key="k"))
    other = NewJob(id="j2", agent="a", input={"n": 2}, idempotency_key="k")
    with pytest.raises(IdempotencyConflict, match="different agent or input"):
        await store.create_job(other)


async def test_duplicate_job_id_is_a_conflict(store: Store) -> None:
    await store.create_job(new_job("j1"))
    with pytest.raises(Conflict, match="already exists"):
        await store.create_job(new_job("j1"))


async def test_claim_bumps_epoch_and_records_owner(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    assert claim.lease == Lease("j1", 1, "w1")
    assert claim.job.status is JobStatus.RUNNING
    assert claim.job.lease_owner == "w1" and claim.job.attempts == 1
    assert claim.recovered_from is None
    events = await store.events("j1")
    assert events[-1].type is EventType.JOB_CLAIMED
    assert events[-1].data == {"owner": "w1", "epoch": 1, "attempt": 1, "recovered_from": None}


async def test_a_first_claim_reads_the_budget_the_job_was_created_with(store: Store) -> None:
    await store.create_job(new_job("j1", budget=Budget(tokens=500, cost=None)))
    await store.create_job(new_job("j2", priority=-1))
    first = await store.claim("w1", 0.01, ALL)
    assert first is not None and first.job.id == "j1" and first.job.first_run
    assert (first.budget_read, first.budget) == (True, Budget(tokens=500, cost=None))
    unbudgeted = await store.claim("w1", 30.0, ClaimFilter(["a"], skip=["j1"]))
    assert unbudgeted is not None and unbudgeted.job.id == "j2"
    assert (unbudgeted.budget_read, unbudgeted.budget) == (True, None)
    await asyncio.sleep(0.05)  # j1's lease expires: a second run reads its journal instead
    again = await store.claim("w2", 30.0, ALL)
    assert again is not None and again.job.id == "j1" and not again.job.first_run
    assert (again.budget_read, again.budget) == (False, None)


async def test_a_claimed_job_is_not_claimed_again(store: Store) -> None:
    await store.create_job(new_job("j1"))
    assert await store.claim("w1", 30.0, ALL) is not None
    assert await store.claim("w2", 30.0, ALL) is None


async def test_concurrent_claims_never_share_a_job(store: Store) -> None:
    for i in range(20):
        await store.create_job(new_job(f"j{i:02d}"))
    claims = await asyncio.gather(*(store.claim(f"w{i}", 30.0, ALL) for i in range(30)))
    ids = [c.job.id for c in claims if c is not None]
    assert sorted(ids) == [f"j{i:02d}" for i in range(20)]


async def test_claim_filters_agents_and_queues(store: Store) -> None:
    await store.create_job(new_job("j1", agent="other"))
    await store.create_job(new_job("j2", queue="slow"))
    assert await store.claim("w", 30.0, ClaimFilter(["a"], ["fast"])) is None
    claim = await store.claim("w", 30.0, ClaimFilter(["a"], ["slow"]))
    assert claim is not None and claim.job.id == "j2"
    assert await store.claim("w", 30.0, ClaimFilter(["a"])) is None


async def test_claim_order_is_priority_then_age(store: Store) -> None:
    await store.create_job(new_job("old"))
    await store.create_job(new_job("urgent", priority=5))
    await store.create_job(new_job("newer"))
    order = []
    while (claim := await store.claim("w", 30.0, ALL)) is not None:
        order.append(claim.job.id)
    assert order == ["urgent", "old", "newer"]


async def test_future_run_at_is_not_claimable_yet(store: Store) -> None:
    import time

    await store.create_job(new_job("later", run_at=time.time() + 60))
    assert await store.claim("w", 30.0, ALL) is None


async def test_expired_lease_is_reclaimed_and_the_old_holder_fenced(store: Store) -> None:
    await store.create_job(new_job("j1"))
    first = await store.claim("w1", 0.01, ALL)
    assert first is not None
    await asyncio.sleep(0.05)
    second = await store.claim("w2", 30.0, ALL)
    assert second is not None
    assert second.lease.epoch == first.lease.epoch + 1
    assert second.recovered_from == "w1"
    assert second.job.attempts == 2
    with pytest.raises(LeaseLost):
        await store.commit(first.lease, Commit([op(0)]))
    assert (await store.heartbeat([first.lease], 30.0)).lost == {"j1"}
    await store.commit(second.lease, Commit([op(0)]))


async def test_heartbeat_keeps_the_lease(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 0.2, ALL)
    assert claim is not None
    for _ in range(4):
        await asyncio.sleep(0.08)
        assert (await store.heartbeat([claim.lease], 0.2)).lost == set()
    assert await store.claim("w2", 30.0, ALL) is None


async def test_commit_appends_a_chain_and_changes_status_together(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    sealed = await store.commit(claim.lease, Commit([op(0), op(1, result={"x": [1, 2]})]))
    assert [e.seq for e in sealed] == [2, 3]
    done = StatusWrite(JobStatus.SUCCEEDED, result={"ok": True})
    await store.commit(claim.lease, Commit([EventDraft(EventType.JOB_SUCCEEDED, {})], status=done))
    job = await store.get_job("j1")
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED and job.result == {"ok": True}
    assert job.lease_owner is None
    events = await store.events("j1")
    assert [e.seq for e in events] == list(range(5))
    report = verify_chain("j1", events)
    assert report.ok, report
    assert report.head == job.head_hash
    assert events[3].data["result"] == {"x": [1, 2]}


async def test_events_are_read_from_a_seq_a_page_at_a_time(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    await store.commit(claim.lease, Commit([op(i) for i in range(4)]))  # seq 2..5
    whole = await store.events("j1")
    assert [e.seq for e in await store.events("j1", after=-1)] == [e.seq for e in whole]
    assert [e.seq for e in await store.events("j1", after=2)] == [3, 4, 5]
    assert [e.seq for e in await store.events("j1", after=1, limit=2)] == [2, 3]
    assert await store.events("j1", after=5) == []
    assert await store.events("nope", after=0) == []
    assert (await store.events("j1", after=3))[0] == whole[4]


async def test_the_journal_a_run_reads_is_its_events_without_their_hashes(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    results = [1, {"x": [1, 2.5, None]}, -(2**63) - 1, "caf\u00e9"]
    await store.commit(claim.lease, Commit([op(i, result=r) for i, r in enumerate(results)]))
    events = await store.events("j1")
    journal = await store.journal("j1")
    said = [(e.seq, e.type, e.position, e.at, e.data, e.body) for e in events]
    assert [(r.seq, r.type, r.position, r.at, r.data, r.body) for r in journal] == said
    assert [r.data["result"] for r in journal if r.type is EventType.OP] == results
    assert await store.journal("nope") == []


async def test_commit_after_the_job_left_running_is_fenced(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    park = StatusWrite(JobStatus.PARKED, park_reason=ParkReason.EFFECT_IN_DOUBT, park_detail={})
    await store.commit(claim.lease, Commit(status=park))
    with pytest.raises(LeaseLost):
        await store.commit(claim.lease, Commit([op(0)]))


async def test_effect_intent_then_outcome(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    await store.commit(claim.lease, Commit(effects=[intent(0)]))
    with pytest.raises(Conflict, match="already exists"):
        await store.commit(claim.lease, Commit(effects=[intent(0)]))
    outcome = intent(0, EffectState.COMMITTED, result={"id": "ch_1"}, expect=EffectState.INTENT)
    await store.commit(claim.lease, Commit([op(0)], effects=[outcome]))
    [row] = await store.effects(job_id="j1")
    assert row.state is EffectState.COMMITTED and row.result == {"id": "ch_1"}
    assert row.idempotency_key == "k0" and row.args_hash == "h" and row.tool == "pay"
    with pytest.raises(Conflict, match="is committed, expected intent"):
        await store.commit(claim.lease, Commit(effects=[outcome]))


async def test_a_failed_commit_writes_nothing(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    before = await store.get_job("j1")
    bad = intent(0, EffectState.COMMITTED, expect=EffectState.INTENT)
    done = StatusWrite(JobStatus.SUCCEEDED)
    with pytest.raises(Conflict):
        await store.commit(claim.lease, Commit([op(0)], effects=[bad], status=done))
    after = await store.get_job("j1")
    assert after is not None and before is not None
    assert after.status is JobStatus.RUNNING
    assert after.event_count == before.event_count
    assert len(await store.events("j1")) == before.event_count
    assert await store.effects(job_id="j1") == []


async def test_apply_checks_status_and_fences_the_holder(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    guard = Guard(frozenset({JobStatus.PARKED}), frozenset({ParkReason.EFFECT_IN_DOUBT}))
    resume = Commit([EventDraft(EventType.JOB_RESUMED, {})], status=StatusWrite(JobStatus.PENDING))
    with pytest.raises(Conflict, match="is running"):
        await store.apply("j1", resume, guard)
    await store.commit(claim.lease, Commit(effects=[intent(0)]))
    park = StatusWrite(JobStatus.PARKED, park_reason=ParkReason.EFFECT_IN_DOUBT, park_detail={})
    await store.commit(
        claim.lease,
        Commit(effects=[intent(0, EffectState.IN_DOUBT, expect=EffectState.INTENT)], status=park),
    )
    wrong_state = Commit(effects=[intent(0, EffectState.COMMITTED, expect=EffectState.INTENT)])
    with pytest.raises(Conflict):
        await store.apply("j1", wrong_state, guard)
    resolved = intent(0, EffectState.NOT_EXECUTED, expect=EffectState.IN_DOUBT)
    job = await store.apply("j1", Commit(resume.events, [resolved], resume.status), guard)
    assert job.status is JobStatus.PENDING
    assert job.lease_epoch == claim.lease.epoch + 1
    with pytest.raises(LeaseLost):
        await store.commit(claim.lease, Commit([op(0)]))
    with pytest.raises(JobNotFound):
        await store.apply("nope", resume, guard)
    assert verify_chain("j1", await store.events("j1")).ok


async def test_effects_filter_by_state(store: Store) -> None:
    for job_id in ("j1", "j2"):
        await store.create_job(new_job(job_id))
        claim = await store.claim("w", 30.0, ALL)
        assert claim is not None
        await store.commit(claim.lease, Commit(effects=[intent(0)]))
    claim2 = await store.claim("w", 30.0, ALL)
    assert claim2 is None
    doubt = await store.effects(states=[EffectState.IN_DOUBT])
    assert doubt == []
    assert len(await store.effects(states=[EffectState.INTENT])) == 2
    assert [e.job_id for e in await store.effects(job_id="j2")] == ["j2"]


async def test_list_jobs_newest_first_and_by_status(store: Store) -> None:
    for i in range(3):
        await store.create_job(new_job(f"j{i}"))
        await asyncio.sleep(0.002)
    await store.claim("w", 30.0, ALL)
    assert [j.id for j in await store.list_jobs()] == ["j2", "j1", "j0"]
    running = await store.list_jobs(status=JobStatus.RUNNING)
    assert [j.id for j in running] == ["j0"]
    assert len(await store.list_jobs(limit=2)) == 2


async def test_list_jobs_by_agent_and_creation_time(store: Store) -> None:
    await store.create_job(new_job("x1", agent="x"))
    await asyncio.sleep(0.01)
    second, _ = await store.create_job(new_job("y1", agent="y"))
    assert [j.id for j in await store.list_jobs(agent="x")] == ["x1"]
    assert [j.id for j in await store.list_jobs(since=second.created_at)] == ["y1"]
    assert await store.list_jobs(agent="x", since=second.created_at) == []


async def test_find_jobs_by_the_start_of_their_id(store: Store) -> None:
    for job_id in ("abc-1", "abc-2", "abd-1", "x%_"):
        await store.create_job(new_job(job_id))
    assert await store.find_jobs("abc") == ["abc-1", "abc-2"]
    assert await store.find_jobs("ab", limit=2) == ["abc-1", "abc-2"]
    assert await store.find_jobs("abd-1") == ["abd-1"]
    assert await store.find_jobs("x%") == ["x%_"]  # no pattern characters
    assert await store.find_jobs("a_c") == []


async def test_summary_counts_jobs_by_status_and_effects_in_doubt(store: Store) -> None:
    empty = await store.summary()
    assert (dict(empty.jobs), empty.oldest_pending_at, empty.in_doubt) == ({}, None, 0)
    await store.create_job(new_job("j0"))
    await store.create_job(new_job("j1"))
    claim = await store.claim("w", 30.0, ALL)
    assert claim is not None
    head = Head(claim.job.event_count, claim.job.head_hash)
    await store.commit(claim.lease, Commit(effects=[intent(0), intent(1)], head=head))
    await store.apply(
        claim.job.id,
        Commit(effects=[intent(0, EffectState.IN_DOUBT, expect=EffectState.INTENT)]),
        Guard(frozenset({JobStatus.RUNNING})),
    )
    summary = await store.summary()
    assert dict(summary.jobs) == {JobStatus.RUNNING: 1, JobStatus.PENDING: 1}
    pending = await store.get_job("j1")
    assert pending is not None and summary.oldest_pending_at == pending.created_at
    assert summary.in_doubt == 1
    assert dict(summary.effects) == {EffectState.IN_DOUBT: 1, EffectState.INTENT: 1}


async def test_summary_counts_each_tenants_jobs_by_status(store: Store) -> None:
    await store.create_job(new_job("a1", tenant="acme"))
    await store.create_job(new_job("a2", tenant="acme"))
    await store.create_job(new_job("g1", tenant="globex"))
    claim = await store.claim("w", 30.0, ALL)
    assert claim is not None
    summary = await store.summary()
    by_tenant = {tenant: dict(counts) for tenant, counts in summary.by_tenant.items()}
    running = claim.job.tenant
    expected: dict[str, dict[JobStatus, int]] = {
        "acme": {JobStatus.PENDING: 2},
        "globex": {JobStatus.PENDING: 1},
    }
    expected[running][JobStatus.PENDING] -= 1
    expected[running][JobStatus.RUNNING] = 1
    expected = {t: {s: n for s, n in c.items() if n} for t, c in expected.items()}
    assert by_tenant == expected
    assert dict(summary.jobs) == {JobStatus.PENDING: 2, JobStatus.RUNNING: 1}
    assert summary.effects == {}


async def test_agent_registry(store: Store) -> None:
    schema = {"type": "object", "required": ["x"], "properties": {"x": {"type": "string"}}}
    await store.register_agents({"b": None, "a": {"type": "object"}})
    await store.register_agents({"a": schema})
    assert await store.agents() == ["a", "b"]
    assert await store.agent_input_schema("a") == schema  # the last registration wins
    assert await store.agent_input_schema("b") is None
    assert await store.agent_input_schema("nobody") is None


async def test_schema_is_current_after_open(store: Store) -> None:
    state = await store.schema()
    assert state.up_to_date and state.current >= 1


async def test_commit_checks_the_head_it_extends(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    head = Head(claim.job.event_count, claim.job.head_hash)
    sealed = await store.commit(claim.lease, Commit([op(0)], head=head))
    with pytest.raises(Conflict, match="expected 2"):
        await store.commit(claim.lease, Commit([op(1)], head=head))
    after = Head(sealed[-1].seq + 1, sealed[-1].hash)
    await store.commit(claim.lease, Commit([op(1)], head=after))
    assert len(await store.events("j1")) == 4


async def test_concurrent_commits_of_many_jobs_land_or_fail_alone(store: Store) -> None:
    """Group commit may put several jobs' commits in one transaction: each stands alone."""
    for i in range(12):
        await store.create_job(new_job(f"j{i:02d}"))
    claims = [c for c in [await store.claim("w", 30.0, ALL) for _ in range(12)] if c]
    stale = claims[5]  # not the first: the first commit of a burst may run alone
    fresh_epoch = await store.apply(stale.job.id, Commit(), Guard(frozenset({JobStatus.RUNNING})))
    assert fresh_epoch.lease_epoch == stale.lease.epoch + 1

    async def step(claim: object) -> object:
        assert isinstance(claim, type(stale))
        head = Head(claim.job.event_count, claim.job.head_hash)
        return await store.commit(claim.lease, Commit([op(0), op(1)], head=head))

    results = await asyncio.gather(*(step(c) for c in claims), return_exceptions=True)
    assert isinstance(results[5], LeaseLost)
    landed = [r for i, r in enumerate(results) if i != 5]
    assert all(isinstance(r, list) and len(r) == 2 for r in landed), results
    for claim in claims[:5] + claims[6:]:
        events = await store.events(claim.job.id)
        assert [e.type for e in events][-2:] == [EventType.OP, EventType.OP]
        assert verify_chain(claim.job.id, events).ok
    assert [e.type for e in await store.events(stale.job.id)][-1] is not EventType.OP


async def test_blobs_travel_with_their_commit_and_are_kept_once(store: Store) -> None:
    await store.create_job(new_job("j1"))
    claim = await store.claim("w1", 30.0, ALL)
    assert claim is not None
    job = await store.get_job("j1")
    assert job is not None
    first = [("a" * 64, b"one"), ("b" * 64, b"\x00two")]
    head = Head(job.event_count, job.head_hash)
    await store.commit(claim.lease, Commit([op(0)], head=head, blobs=first))
    again = [("b" * 64, b"\x00two"), ("c" * 64, b"three")]
    await store.commit(claim.lease, Commit([op(1)], blobs=again))  # head not given: read
    assert await store.blobs("j1") == {"a" * 64: b"one", "b" * 64: b"\x00two", "c" * 64: b"three"}
    assert await store.blobs("j1", ["c" * 64, "d" * 64]) == {"c" * 64: b"three"}
    assert await store.blobs("other") == {}
    # A refused commit writes none of its blobs.
    bad = intent(2, EffectState.COMMITTED, expect=EffectState.INTENT)
    with pytest.raises(Conflict):
        await store.commit(claim.lease, Commit([op(2)], effects=[bad], blobs=[("e" * 64, b"x")]))
    park = StatusWrite(JobStatus.PARKED, park_reason=ParkReason.EFFECT_IN_DOUBT, park_detail={})
    await store.commit(claim.lease, Commit(status=park))
    with pytest.raises(LeaseLost):
        await store.commit(claim.lease, Commit([op(3)], blobs=[("f" * 64, b"y")]))
    assert set(await store.blobs("j1")) == {"a" * 64, "b" * 64, "c" * 64}


async def test_the_key_value_space_orders_keys_by_code_point_and_scans_prefixes(
    store: Store,
) -> None:
    keys = ["t/a/2", "t/a/10", "t/a/1", "t/ab/1", "t/b/1", "t/a/é", "t/a/Z", "u/a/1"]
    await store.kv_put("s", {k: k.encode() for k in keys})
    await store.kv_put("other", {"t/a/1": b"elsewhere"})
    in_a = ["t/a/1", "t/a/10", "t/a/2", "t/a/Z", "t/a/é"]  # code point order, not a locale's
    assert [k for k, _ in await store.kv_scan("s", "t/a/")] == in_a
    assert [k for k, _ in await store.kv_scan("s", "t/a/", descending=True)] == in_a[::-1]
    assert await store.kv_scan("s", "t/a/", descending=True, limit=2) == [
        ("t/a/é", "t/a/é".encode()),
        ("t/a/Z", b"t/a/Z"),
    ]
    assert [k for k, _ in await store.kv_scan("s", "t/a/", below="t/a/2")] == in_a[:2]
    assert len(await store.kv_scan("s")) == len(keys)
    assert await store.kv_get("s", ["t/b/1", "nope"]) == {"t/b/1": b"t/b/1"}
    assert await store.kv_get("other", ["t/a/1"]) == {"t/a/1": b"elsewhere"}
    # replace=False keeps what is there; the default replaces.
    await store.kv_put("s", {"t/b/1": b"new", "t/c/1": b"\x00c"}, replace=False)
    assert await store.kv_get("s", ["t/b/1", "t/c/1"]) == {"t/b/1": b"t/b/1", "t/c/1": b"\x00c"}
    await store.kv_put("s", {"t/b/1": b"new"})
    assert await store.kv_get("s", ["t/b/1"]) == {"t/b/1": b"new"}
    await store.kv_delete("s", ["t/b/1"], prefix="t/a/")
    assert [k for k, _ in await store.kv_scan("s")] == ["t/ab/1", "t/c/1", "u/a/1"]
    assert await store.kv_get("other", ["t/a/1"]) == {"t/a/1": b"elsewhere"}
    await store.kv_delete("s", ["missing"])
    await store.kv_delete("s", prefix="nothing/")
