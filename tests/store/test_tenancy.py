"""Tenants and API keys in the store port: every test runs against every store."""

from __future__ import annotations

import asyncio

import pytest

from aetheris.errors import Conflict, IdempotencyConflict
from aetheris.journal import EventType
from aetheris.store.port import (
    ApiKey,
    ClaimFilter,
    Commit,
    Control,
    EffectClass,
    EffectState,
    EffectWrite,
    Guard,
    JobStatus,
    NewJob,
    ParkReason,
    Role,
    Store,
)


def new_job(job_id: str, tenant: str = "default", **kw: object) -> NewJob:
    return NewJob(id=job_id, agent="a", input={"n": 1}, tenant=tenant, **kw)  # type: ignore[arg-type]


async def test_a_job_belongs_to_the_default_tenant_unless_told(store: Store) -> None:
    plain, _ = await store.create_job(NewJob(id="j1", agent="a", input={}))
    other, _ = await store.create_job(new_job("j2", tenant="acme"))
    assert plain.tenant == "default"
    assert other.tenant == "acme"
    assert (await store.get_job("j2")).tenant == "acme"  # type: ignore[union-attr]


async def test_idempotency_keys_are_scoped_per_tenant(store: Store) -> None:
    a, created_a = await store.create_job(new_job("j1", tenant="acme", idempotency_key="k"))
    b, created_b = await store.create_job(new_job("j2", tenant="beta", idempotency_key="k"))
    again, created_again = await store.create_job(new_job("j3", tenant="acme", idempotency_key="k"))
    assert created_a and created_b and not created_again
    assert (a.id, b.id, again.id) == ("j1", "j2", "j1")
    with pytest.raises(IdempotencyConflict):
        await store.create_job(
            NewJob(id="j4", agent="a", input={"n": 2}, tenant="beta", idempotency_key="k")
        )


async def test_list_jobs_filters_by_tenant_reason_and_time(store: Store) -> None:
    for i in range(3):
        await store.create_job(new_job(f"a{i}", tenant="acme"))
    await store.create_job(new_job("b0", tenant="beta"))
    await store.control("a1", Control.PAUSE)
    acme = await store.list_jobs(tenant="acme")
    assert sorted(j.id for j in acme) == ["a0", "a1", "a2"]
    paused = await store.list_jobs(tenant="acme", park_reason=ParkReason.PAUSED)
    assert [j.id for j in paused] == ["a1"]
    assert await store.list_jobs(tenant="beta", park_reason=ParkReason.PAUSED) == []
    everything = await store.list_jobs()
    newest = max(j.created_at for j in everything)
    assert await store.list_jobs(until=min(j.created_at for j in everything)) == []
    assert len(await store.list_jobs(until=newest + 1)) == 4


async def test_list_jobs_finds_a_job_by_its_idempotency_key_in_its_tenant(store: Store) -> None:
    await store.create_job(new_job("a1", tenant="acme", idempotency_key="order-7"))
    await store.create_job(new_job("a2", tenant="acme", idempotency_key="order-8"))
    await store.create_job(new_job("b1", tenant="beta", idempotency_key="order-7"))
    await store.create_job(new_job("a3", tenant="acme"))
    found = await store.list_jobs(tenant="acme", idempotency_key="order-7")
    assert [j.id for j in found] == ["a1"]
    both = await store.list_jobs(idempotency_key="order-7")
    assert sorted(j.id for j in both) == ["a1", "b1"]
    assert await store.list_jobs(tenant="acme", idempotency_key="order-") == []  # no prefixes
    assert len(await store.list_jobs(tenant="acme")) == 3


async def test_summary_counts_one_tenants_jobs_and_effects(store: Store) -> None:
    from aetheris.store.port import Commit

    for job_id, tenant in (("a1", "acme"), ("a2", "acme"), ("b1", "beta")):
        await store.create_job(new_job(job_id, tenant=tenant))
    await store.control("a2", Control.PAUSE)
    write = EffectWrite(1, "pay", EffectClass.AT_MOST_ONCE, "h", "kb", EffectState.IN_DOUBT)
    await store.apply("b1", Commit(effects=[write]), Guard(frozenset({JobStatus.PENDING})))
    acme = await store.summary(tenant="acme")
    assert dict(acme.jobs) == {JobStatus.PENDING: 1, JobStatus.PARKED: 1}
    assert acme.oldest_pending_at == (await store.get_job("a1")).created_at  # type: ignore[union-attr]
    assert acme.in_doubt == 0
    beta = await store.summary(tenant="beta")
    assert (dict(beta.jobs), beta.in_doubt) == ({JobStatus.PENDING: 1}, 1)
    nobody = await store.summary(tenant="nobody")
    assert (dict(nobody.jobs), nobody.oldest_pending_at, nobody.in_doubt) == ({}, None, 0)
    everyone = await store.summary()
    assert (dict(everyone.jobs), everyone.in_doubt) == (
        {JobStatus.PENDING: 2, JobStatus.PARKED: 1}, 1,
    )  # fmt: skip


async def test_list_jobs_pages_with_a_cursor(store: Store) -> None:
    for i in range(7):
        await store.create_job(new_job(f"j{i}", tenant="acme"))
    await store.create_job(new_job("x", tenant="beta"))
    seen: list[str] = []
    after = None
    while True:
        page = await store.list_jobs(tenant="acme", limit=3, after=after)
        seen += [j.id for j in page]
        if len(page) < 3:
            break
        after = (page[-1].created_at, page[-1].id)
    assert sorted(seen) == [f"j{i}" for i in range(7)]
    assert len(seen) == len(set(seen))
    whole = [j.id for j in await store.list_jobs(tenant="acme")]
    assert seen == whole


async def test_children_inherit_through_create_with_their_tenant(store: Store) -> None:
    parent, _ = await store.create_job(new_job("p", tenant="acme"))
    child = NewJob(id="p.1", agent="a", input={}, parent_id="p", tenant=parent.tenant)
    from aetheris.store.port import Commit

    await store.apply("p", Commit(create=[child]), Guard(frozenset({JobStatus.PENDING})))
    assert (await store.get_job("p.1")).tenant == "acme"  # type: ignore[union-attr]


async def test_effects_filter_by_tenant(store: Store) -> None:
    from aetheris.store.port import Commit

    for job_id, tenant in (("a", "acme"), ("b", "beta")):
        await store.create_job(new_job(job_id, tenant=tenant))
        write = EffectWrite(
            1, "pay", EffectClass.AT_MOST_ONCE, "h", f"k{job_id}", EffectState.IN_DOUBT
        )
        await store.apply(job_id, Commit(effects=[write]), Guard(frozenset({JobStatus.PENDING})))
    acme = await store.effects(states=[EffectState.IN_DOUBT], tenant="acme")
    assert [e.job_id for e in acme] == ["a"]
    assert len(await store.effects(states=[EffectState.IN_DOUBT])) == 2


async def test_control_records_who_asked(store: Store) -> None:
    await store.create_job(new_job("j1"))
    await store.control("j1", Control.PAUSE, by="key:k1 (operator)")
    await store.control("j1", Control.RESUME, by="key:k2 (admin)")
    await store.create_job(new_job("j2"))
    await store.control("j2", Control.CANCEL, by="key:k1 (operator)")
    parked, resumed = (await store.events("j1"))[-2:]
    assert parked.type is EventType.JOB_PARKED and parked.data["by"] == "key:k1 (operator)"
    assert resumed.type is EventType.JOB_RESUMED and resumed.data["by"] == "key:k2 (admin)"
    cancelled = (await store.events("j2"))[-1]
    assert cancelled.type is EventType.JOB_CANCELLED
    assert cancelled.data["by"] == "key:k1 (operator)"


def key(key_id: str, created_at: float, role: Role = Role.VIEWER) -> ApiKey:
    return ApiKey(key_id, "acme", role, "f" * 64, f"name {key_id}", created_at)


async def test_api_keys_are_stored_listed_and_revoked(store: Store) -> None:
    await store.create_api_key(key("k1", 100.0, Role.ADMIN))
    await store.create_api_key(key("k2", 200.0))
    with pytest.raises(Conflict):
        await store.create_api_key(key("k1", 300.0))
    found = await store.api_key("k1")
    assert found == key("k1", 100.0, Role.ADMIN)
    assert found is not None and found.active
    assert [k.id for k in await store.api_keys()] == ["k1", "k2"]
    assert await store.api_key("nope") is None
    assert await store.revoke_api_key("nope") is None
    revoked = await store.revoke_api_key("k2")
    assert revoked is not None and revoked.revoked_at is not None and not revoked.active
    await asyncio.sleep(0.01)
    again = await store.revoke_api_key("k2")
    assert again is not None and again.revoked_at == revoked.revoked_at
    stored = await store.api_key("k2")
    assert stored is not None and not stored.active


async def test_the_start_of_an_id_finds_only_the_tenants_jobs(store: Store) -> None:
    await store.create_job(new_job("abc1", tenant="acme"))
    await store.create_job(new_job("abc2", tenant="beta"))
    assert await store.find_jobs("abc") == ["abc1", "abc2"]
    assert await store.find_jobs("abc", tenant="beta") == ["abc2"]
    assert await store.find_jobs("abc", tenant="gamma") == []


async def test_a_summary_counts_one_tenants_jobs_and_effects_when_asked(store: Store) -> None:
    await store.create_job(new_job("a1", tenant="acme"))
    await store.create_job(new_job("b1", tenant="beta"))
    await store.create_job(new_job("b2", tenant="beta"))
    claim = await store.claim("w", 30.0, ClaimFilter(["a"]))
    assert claim is not None
    doubt = EffectWrite(0, "pay", EffectClass.AT_MOST_ONCE, "h", "k", EffectState.IN_DOUBT)
    await store.commit(claim.lease, Commit(effects=[doubt]))
    everyone = await store.summary()
    assert sum(everyone.jobs.values()) == 3 and everyone.in_doubt == 1
    held = claim.job.tenant
    mine = await store.summary(tenant=held)
    assert mine.in_doubt == 1 and mine.jobs.get(JobStatus.RUNNING) == 1
    other = await store.summary(tenant="beta" if held == "acme" else "acme")
    assert other.in_doubt == 0 and JobStatus.RUNNING not in other.jobs
    assert (await store.summary(tenant="nobody")).jobs == {}
    assert (await store.summary(tenant="nobody")).oldest_pending_at is None
