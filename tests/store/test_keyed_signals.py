"""Keyed signals (incoming webhooks), on every store: the mailbox before a job takes a key, the
wake-up of the job parked for it, one signal per id, tenants apart, one holder per key."""

from __future__ import annotations

import asyncio

import pytest

from aetheris.errors import Conflict
from aetheris.journal import EventDraft, EventType
from aetheris.store.port import (
    Claim,
    ClaimFilter,
    Commit,
    Delivery,
    Head,
    JobStatus,
    NewJob,
    ParkReason,
    StatusWrite,
    Store,
    keyed_signal,
    signal_wake,
)

ALL = ClaimFilter(["a"])
PAID = keyed_signal("paid", "o-1")


async def running(store: Store, job_id: str, tenant: str = "acme") -> Claim:
    await store.create_job(NewJob(id=job_id, agent="a", input={}, tenant=tenant))
    claim = await store.claim("w", 30.0, ALL)
    assert claim is not None and claim.job.id == job_id
    return claim


async def head(store: Store, job_id: str) -> Head:
    job = await store.get_job(job_id)
    assert job is not None
    return Head(job.event_count, job.head_hash)


async def take(store: Store, claim: Claim, *keys: tuple[str, str], park: bool = False) -> None:
    """The job takes ``keys`` (and parks for the first, if asked), in one commit."""
    status = None
    if park:
        wake_on = signal_wake(keyed_signal(*keys[0]))
        status = StatusWrite(JobStatus.PARKED, park_reason=ParkReason.SIGNAL, wake_on=wake_on)
    events = [EventDraft(EventType.JOB_PARKED, {})] if park else []
    commit = Commit(events, status=status, head=await head(store, claim.job.id), correlate=keys)
    await store.commit(claim.lease, commit)


async def status(store: Store, job_id: str) -> JobStatus:
    job = await store.get_job(job_id)
    assert job is not None
    return job.status


async def test_a_signal_before_any_job_waits_in_the_mailbox_then_reaches_the_job(
    store: Store,
) -> None:
    claim = await running(store, "j1")
    first = await store.deliver_keyed("acme", "paid", "o-1", {"n": 1}, "e1", "hook:paid")
    second = await store.deliver_keyed("acme", "paid", "o-1", {"n": 2}, "e2", None)
    assert first == Delivery("e1", None, True) and second == Delivery("e2", None, True)
    assert await store.signals("j1") == []
    assert await store.key_holder("acme", "paid", "o-1") is None
    await take(store, claim, ("paid", "o-1"))
    inbox = await store.signals("j1")
    assert [(s.name, s.signal_id, s.payload, s.sender) for s in inbox] == [
        (PAID, f"{PAID}:e1", {"n": 1}, "hook:paid"),
        (PAID, f"{PAID}:e2", {"n": 2}, None),
    ]
    assert inbox[0].seq < inbox[1].seq
    assert await store.key_holder("acme", "paid", "o-1") == "j1"
    # The mailbox is empty now: taking the key again moves nothing twice.
    await take(store, claim, ("paid", "o-1"))
    assert len(await store.signals("j1")) == 2


async def test_a_signal_wakes_the_job_parked_for_its_key_and_only_for_its_key(
    store: Store,
) -> None:
    claim = await running(store, "j1")
    await take(store, claim, ("paid", "o-1"), park=True)
    assert await status(store, "j1") is JobStatus.PARKED
    other = await store.deliver_keyed("acme", "paid", "o-2", {"n": 0}, "e0", None)
    assert other == Delivery("e0", None, True)
    assert await status(store, "j1") is JobStatus.PARKED and await store.signals("j1") == []
    got = await store.deliver_keyed("acme", "paid", "o-1", {"n": 1}, "e1", "hook:paid")
    assert got == Delivery("e1", "j1", True)
    job = await store.get_job("j1")
    assert job is not None and job.status is JobStatus.PENDING and job.wake_on is None
    [signal] = await store.signals("j1")
    assert (signal.name, signal.payload, signal.sender) == (PAID, {"n": 1}, "hook:paid")


async def test_the_same_signal_id_is_one_signal(store: Store) -> None:
    first = await store.deliver_keyed("acme", "paid", "o-1", {"n": 1}, "e1", None)
    again = await store.deliver_keyed("acme", "paid", "o-1", {"n": 99}, "e1", None)
    assert first.created and again == Delivery("e1", None, False)
    claim = await running(store, "j1")
    await take(store, claim, ("paid", "o-1"))
    retried = await store.deliver_keyed("acme", "paid", "o-1", {"n": 99}, "e1", None)
    assert retried == Delivery("e1", "j1", False)  # the first delivery, where it went
    assert [s.payload for s in await store.signals("j1", pending=False)] == [{"n": 1}]
    # The same id for another key, or another name, is another signal.
    assert (await store.deliver_keyed("acme", "paid", "o-2", 1, "e1", None)).created
    assert (await store.deliver_keyed("acme", "shipped", "o-1", 1, "e1", None)).created


async def test_keys_belong_to_a_tenant(store: Store) -> None:
    acme = await running(store, "j1", tenant="acme")
    await take(store, acme, ("paid", "o-1"), park=True)
    elsewhere = await store.deliver_keyed("beta", "paid", "o-1", {"t": "beta"}, "e1", None)
    assert elsewhere == Delivery("e1", None, True)
    assert await status(store, "j1") is JobStatus.PARKED and await store.signals("j1") == []
    assert await store.key_holder("beta", "paid", "o-1") is None
    beta = await running(store, "j2", tenant="beta")
    await take(store, beta, ("paid", "o-1"))  # not taken in beta: j1 holds acme's key only
    assert [s.payload for s in await store.signals("j2")] == [{"t": "beta"}]
    assert await store.key_holder("acme", "paid", "o-1") == "j1"
    assert await store.key_holder("beta", "paid", "o-1") == "j2"


async def test_a_key_is_held_by_the_first_job_until_it_ends(store: Store) -> None:
    first = await running(store, "j1")
    await take(store, first, ("paid", "o-1"))
    second = await running(store, "j2")
    events = len(await store.events("j2"))
    with pytest.raises(Conflict, match="j1 holds it"):
        await take(store, second, ("paid", "o-1"), park=True)
    assert len(await store.events("j2")) == events, "a refused commit writes nothing"
    assert await status(store, "j2") is JobStatus.RUNNING
    assert await store.key_holder("acme", "paid", "o-1") == "j1"
    done = Commit(status=StatusWrite(JobStatus.SUCCEEDED), head=await head(store, "j1"))
    await store.commit(first.lease, done)
    assert await store.key_holder("acme", "paid", "o-1") is None
    late = await store.deliver_keyed("acme", "paid", "o-1", {"n": 2}, "e2", None)
    assert late == Delivery("e2", None, True), "a job that ended takes no more signals"
    await take(store, second, ("paid", "o-1"))
    assert await store.key_holder("acme", "paid", "o-1") == "j2"
    assert [s.payload for s in await store.signals("j2")] == [{"n": 2}]
    assert await store.signals("j1") == []


async def test_parking_on_a_key_whose_signal_waits_in_the_mailbox_does_not_sleep(
    store: Store,
) -> None:
    await store.deliver_keyed("acme", "paid", "o-1", {"n": 1}, "e1", None)
    claim = await running(store, "j1")
    await take(store, claim, ("paid", "o-1"), park=True)
    assert await status(store, "j1") is JobStatus.PENDING


async def test_no_signal_is_lost_between_deliveries_and_the_job_taking_the_key(
    store: Store,
) -> None:
    """Deliveries racing the commit that takes the key: each lands in the inbox, either
    directly or through the mailbox, whatever the order the store serializes them in."""
    claim = await running(store, "j1")
    deliveries = [
        store.deliver_keyed("acme", "paid", "o-1", {"n": n}, f"e{n}", None) for n in range(12)
    ]
    taking = take(store, claim, ("paid", "o-1"), park=True)
    done = await asyncio.gather(*deliveries[:6], taking, *deliveries[6:])
    assert {d.job_id for d in done if isinstance(d, Delivery)} <= {None, "j1"}
    inbox = await store.signals("j1")
    assert sorted(s.payload["n"] for s in inbox) == list(range(12))
    assert len({s.seq for s in inbox}) == 12
    assert await status(store, "j1") is JobStatus.PENDING


async def test_deliveries_racing_the_holder_taking_its_key_again_neither_lose_nor_deadlock(
    store: Store,
) -> None:
    """A delivery locks the key, then its holder; a commit of the holder that takes the key
    again must lock in the same order, or each would wait for the other."""
    claim = await running(store, "j1")
    await take(store, claim, ("paid", "o-1"))
    for round_ in range(4):
        deliveries = [
            store.deliver_keyed("acme", "paid", "o-1", n, f"e{round_}.{n}", None) for n in range(6)
        ]
        done = await asyncio.gather(
            *deliveries[:3], take(store, claim, ("paid", "o-1")), *deliveries[3:]
        )
        assert {d.job_id for d in done if isinstance(d, Delivery)} == {"j1"}
    assert len(await store.signals("j1")) == 24
