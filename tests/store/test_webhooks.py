"""Outgoing webhooks in the store port: subscriptions, the outbox written with the event that
causes it, claims and the delivery log. Every test runs against every store."""

from __future__ import annotations

import asyncio

import pytest

from aetheris.errors import Conflict, LeaseLost
from aetheris.journal import EventDraft, EventType
from aetheris.store.port import (
    AttemptOutcome,
    ClaimFilter,
    Commit,
    Control,
    DeliveryState,
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
    Webhook,
    WebhookEvent,
)

ENDS = (WebhookEvent.JOB_COMPLETED, WebhookEvent.JOB_FAILED, WebhookEvent.JOB_CANCELLED)
EVERYTHING = tuple(WebhookEvent)


def hook(hook_id: str, tenant: str = "acme", events: tuple[WebhookEvent, ...] = ENDS) -> Webhook:
    return Webhook(hook_id, tenant, f"http://127.0.0.1:1/{hook_id}", f"s-{hook_id}", events, 1.0)


async def running(store: Store, job_id: str, tenant: str = "acme") -> Lease:
    """A job of ``tenant``, claimed: the lease that writes it."""
    await store.create_job(NewJob(id=job_id, agent="a", input={}, tenant=tenant))
    claim = await store.claim("w1", 30.0, ClaimFilter(["a"]))
    assert claim is not None and claim.job.id == job_id
    return claim.lease


async def succeed(store: Store, lease: Lease) -> int:
    """End the job as succeeded (the lease holder's commit, head known); its event's seq."""
    job = await store.get_job(lease.job_id)
    assert job is not None
    done = StatusWrite(JobStatus.SUCCEEDED, result={"ok": True})
    end = EventDraft(EventType.JOB_SUCCEEDED, {"result": {"ok": True}})
    head = Head(job.event_count, job.head_hash)
    sealed = await store.commit(lease, Commit(events=[end], status=done, head=head))
    return sealed[-1].seq


async def test_subscriptions_are_kept_per_tenant_and_disabled(store: Store) -> None:
    await store.create_webhook(hook("w1"))
    await store.create_webhook(hook("w2", tenant="beta", events=EVERYTHING))
    with pytest.raises(Conflict, match="already exists"):
        await store.create_webhook(hook("w1", tenant="beta"))
    assert await store.webhook("w1") == hook("w1")
    assert await store.webhook("nope") is None
    assert [h.id for h in await store.webhooks()] == ["w1", "w2"]
    assert [h.id for h in await store.webhooks(tenant="beta")] == ["w2"]
    assert (await store.webhook("w2")).events == EVERYTHING  # type: ignore[union-attr]
    gone = await store.disable_webhook("w1")
    assert gone is not None and not gone.active
    assert await store.disable_webhook("nope") is None
    again = await store.disable_webhook("w1")
    assert again is not None and again.disabled_at == gone.disabled_at
    assert [h.id for h in await store.webhooks()] == ["w2"]
    assert [h.id for h in await store.webhooks(disabled=True)] == ["w1", "w2"]


async def test_an_end_puts_one_delivery_per_matching_subscription(store: Store) -> None:
    await store.create_webhook(hook("ends"))
    await store.create_webhook(hook("all", events=EVERYTHING))
    await store.create_webhook(hook("failures", events=(WebhookEvent.JOB_FAILED,)))
    await store.create_webhook(hook("theirs", tenant="beta", events=EVERYTHING))
    await store.create_webhook(hook("deleted", events=EVERYTHING))
    await store.disable_webhook("deleted")
    seq = await succeed(store, await running(store, "j1"))
    found = await store.deliveries()
    assert sorted(d.webhook_id for d in found) == ["all", "ends"]
    for delivery in found:
        assert delivery.event_id == f"j1:{seq}"
        assert delivery.event_type is WebhookEvent.JOB_COMPLETED
        assert (delivery.job_id, delivery.agent, delivery.tenant) == ("j1", "a", "acme")
        assert delivery.job_status is JobStatus.SUCCEEDED
        assert delivery.state is DeliveryState.PENDING and delivery.attempts == 0
        assert delivery.payload["summary"] == "job j1 succeeded"
    assert await store.deliveries(tenant="beta") == []


async def test_a_refused_commit_writes_no_delivery(store: Store) -> None:
    await store.create_webhook(hook("ends"))
    lease = await running(store, "j1")
    stale = Lease("j1", lease.epoch - 1, "w0")
    end = EventDraft(EventType.JOB_FAILED, {"error": {"type": "E", "message": "m"}})
    failed = StatusWrite(JobStatus.FAILED, error={"type": "E", "message": "m"})
    with pytest.raises(LeaseLost):
        await store.commit(stale, Commit(events=[end], status=failed))
    job = await store.get_job("j1")
    assert job is not None
    wrong_head = Head(job.event_count + 5, job.head_hash)
    with pytest.raises(Conflict):
        await store.commit(lease, Commit(events=[end], status=failed, head=wrong_head))
    taken = EffectWrite(1, "pay", EffectClass.AT_MOST_ONCE, "h", "k", EffectState.IN_DOUBT)
    await store.commit(lease, Commit(effects=[taken]))
    with pytest.raises(Conflict):  # the ledger row exists: the whole commit is refused
        await store.commit(lease, Commit(events=[end], status=failed, effects=[taken]))
    assert await store.deliveries() == []
    assert (await store.get_job("j1")).status is JobStatus.RUNNING  # type: ignore[union-attr]


async def test_approval_in_doubt_and_failure_each_tell_their_subscribers(store: Store) -> None:
    await store.create_webhook(hook("all", events=EVERYTHING))
    lease = await running(store, "j1")
    detail = {"position": 4, "name": "pay", "payload": {"amount": 5}, "args_hash": "h",
              "request_id": "j1:4", "message": "run `aetheris approve j1`"}  # fmt: skip
    parked = StatusWrite(
        JobStatus.PARKED, park_reason=ParkReason.APPROVAL, park_detail=detail, wake_on="x"
    )
    park = EventDraft(EventType.JOB_PARKED, {"reason": "approval", "detail": detail})
    await store.commit(lease, Commit(events=[park], status=parked))
    # A park for another reason tells nobody.
    lease = await running(store, "s1")
    waits = StatusWrite(JobStatus.PARKED, park_reason=ParkReason.SIGNAL, wake_on="signal:go")
    park = EventDraft(EventType.JOB_PARKED, {"reason": "signal", "detail": {}})
    await store.commit(lease, Commit(events=[park], status=waits))
    lease = await running(store, "j2")
    doubt = EffectWrite(3, "pay", EffectClass.AT_MOST_ONCE, "h", "k3", EffectState.INTENT)
    await store.commit(lease, Commit(effects=[doubt]))
    data = {"name": "pay", "idempotency_key": "k3", "attempt": 1}
    in_doubt = EventDraft(EventType.EFFECT_IN_DOUBT, data, 3)
    moved = EffectWrite(3, "pay", EffectClass.AT_MOST_ONCE, "h", "k3", EffectState.IN_DOUBT,
                        expect=EffectState.INTENT)  # fmt: skip
    error = {"type": "ValueError", "message": "x" * 2000, "traceback": "secret"}
    end = EventDraft(EventType.JOB_FAILED, {"error": error})
    failed = StatusWrite(JobStatus.FAILED, error=error)
    await store.commit(lease, Commit(events=[in_doubt, end], effects=[moved], status=failed))
    found = {d.event_type: d for d in await store.deliveries()}
    assert set(found) == {
        WebhookEvent.APPROVAL_REQUESTED,
        WebhookEvent.EFFECT_IN_DOUBT,
        WebhookEvent.JOB_FAILED,
    }
    approval = found[WebhookEvent.APPROVAL_REQUESTED].payload
    assert approval["position"] == 4
    assert approval["approval"]["name"] == "pay"
    assert approval["approval"]["payload"] == {"amount": 5}
    assert "aetheris approve" not in str(approval)
    doubtful = found[WebhookEvent.EFFECT_IN_DOUBT]
    assert doubtful.payload["position"] == 3 and doubtful.payload["tool"] == "pay"
    assert found[WebhookEvent.JOB_FAILED].payload["error"]["type"] == "ValueError"
    assert len(found[WebhookEvent.JOB_FAILED].payload["error"]["message"]) == 500
    assert "secret" not in str(found[WebhookEvent.JOB_FAILED].payload)
    assert doubtful.event_id != found[WebhookEvent.JOB_FAILED].event_id


async def test_control_and_apply_write_the_outbox_too(store: Store) -> None:
    await store.create_webhook(hook("ends"))
    await store.create_job(NewJob(id="c1", agent="a", input={}, tenant="acme"))
    await store.control("c1", Control.CANCEL, by="key:k (admin)")
    await store.create_job(NewJob(id="c2", agent="a", input={}, tenant="acme"))
    error = {"type": "Failed", "message": "by an operator"}
    end = Commit(
        events=[EventDraft(EventType.JOB_FAILED, {"error": error})],
        status=StatusWrite(JobStatus.FAILED, error=error),
    )
    await store.apply("c2", end, Guard(frozenset({JobStatus.PENDING})))
    with pytest.raises(Conflict):  # refused by its guard: nothing sent
        await store.apply("c2", end, Guard(frozenset({JobStatus.PENDING})))
    found = sorted((d.job_id, d.event_type.value) for d in await store.deliveries())
    assert found == [("c1", "job.cancelled"), ("c2", "job.failed")]


async def test_claims_are_exclusive_and_leases_run_out(store: Store) -> None:
    await store.create_webhook(hook("ends"))
    for i in range(6):
        await succeed(store, await running(store, f"j{i}"))
    first, second = await asyncio.gather(
        store.claim_deliveries(limit=4, lease=60.0),
        store.claim_deliveries(limit=4, lease=60.0),
    )
    ids = [c.delivery.id for c in first + second]
    assert len(ids) == len(set(ids)) == 6
    assert await store.claim_deliveries(limit=10) == []  # all held
    claim = first[0]
    assert claim.url == "http://127.0.0.1:1/ends" and claim.secret == "s-ends"
    # A deliverer that dies holds its claims only until their lease runs out.
    await store.create_webhook(hook("more", tenant="gamma"))
    await succeed(store, await running(store, "k", tenant="gamma"))
    lost = await store.claim_deliveries(limit=1, lease=0.0)
    retaken = await store.claim_deliveries(limit=1, lease=60.0)
    assert [c.delivery.id for c in retaken] == [lost[0].delivery.id]
    outcome = AttemptOutcome(200, None, 0.01, delivered=True)
    assert await store.record_attempt(lost[0].delivery.id, lost[0].token, outcome) is None
    done = await store.record_attempt(retaken[0].delivery.id, retaken[0].token, outcome)
    assert done is not None and done.state is DeliveryState.DELIVERED and done.attempts == 1


async def test_attempts_are_logged_until_delivered_or_dead(store: Store) -> None:
    await store.create_webhook(hook("ends"))
    await succeed(store, await running(store, "j1"))
    [claim] = await store.claim_deliveries()
    failed = AttemptOutcome(500, "HTTP 500: boom", 0.02, retry_in=0.0)
    row = await store.record_attempt(claim.delivery.id, claim.token, failed)
    assert row is not None and row.state is DeliveryState.PENDING
    assert (row.attempts, row.last_status, row.last_error) == (1, 500, "HTTP 500: boom")
    assert await store.record_attempt(claim.delivery.id, claim.token, failed) is None  # used
    [claim] = await store.claim_deliveries()
    later = AttemptOutcome(None, "connection refused", 0.001, retry_in=3600.0)
    row = await store.record_attempt(claim.delivery.id, claim.token, later)
    assert row is not None and row.next_at > row.log[-1].at + 3000
    assert await store.claim_deliveries() == []  # not due for an hour
    assert [(a.status, a.error, a.retry_in) for a in row.log] == [
        (500, "HTTP 500: boom", 0.0),
        (None, "connection refused", 3600.0),
    ]
    assert row.log[0].duration == pytest.approx(0.02)
    await succeed(store, await running(store, "j2"))
    [claim] = await store.claim_deliveries()
    dead = await store.record_attempt(
        claim.delivery.id, claim.token, AttemptOutcome(410, "gone", 0.1)
    )
    assert dead is not None and dead.state is DeliveryState.DEAD and dead.delivered_at is None
    assert [d.state for d in await store.deliveries(state=DeliveryState.DEAD)] == [dead.state]


async def test_deleting_a_subscription_ends_its_pending_deliveries(store: Store) -> None:
    await store.create_webhook(hook("ends"))
    await store.create_webhook(hook("kept"))
    await succeed(store, await running(store, "j1"))
    await store.disable_webhook("ends")
    [claim] = await store.claim_deliveries()
    assert claim.delivery.webhook_id == "kept"
    [gone] = await store.deliveries(webhook_id="ends")
    assert gone.state is DeliveryState.DEAD and gone.last_error == "the subscription was deleted"
    await succeed(store, await running(store, "j2"))
    assert {d.webhook_id for d in await store.deliveries()} == {"ends", "kept"}
    assert len(await store.deliveries(webhook_id="kept")) == 2


async def test_deliveries_list_newest_first_with_filters(store: Store) -> None:
    await store.create_webhook(hook("a"))
    await store.create_webhook(hook("b", tenant="beta"))
    for i in range(3):
        await succeed(store, await running(store, f"a{i}"))
    await succeed(store, await running(store, "b0", tenant="beta"))
    acme = await store.deliveries(tenant="acme")
    assert [d.job_id for d in acme] == ["a2", "a1", "a0"]
    assert [d.job_id for d in await store.deliveries(tenant="acme", limit=2)] == ["a2", "a1"]
    assert [d.job_id for d in await store.deliveries(webhook_id="b")] == ["b0"]
    assert await store.deliveries(state=DeliveryState.DELIVERED) == []
