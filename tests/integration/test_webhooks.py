"""The webhook deliverer against a real HTTP receiver on 127.0.0.1, on every store: signed
requests, retries with a growing delay, a receiver that is down or hangs, and deliverers
side by side."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from aetheris.store.port import DeliveryState, Store, WebhookDelivery, WebhookEvent
from aetheris.webhooks import Deliverer, RetryPolicy, create_webhook, verify_signature
from tests.webhooks_kit import HANG, closed_port_url, end_job, receiver

QUICK = RetryPolicy(max_attempts=4, delays=(0.05, 0.1, 0.2), jitter=0.0)


class Watched:
    """A deliverer running in the background, and every delivery it records, awaitable."""

    def __init__(self, store: Store, **options: object) -> None:
        self.recorded: asyncio.Queue[WebhookDelivery] = asyncio.Queue()
        self.deliverer = Deliverer(
            store,
            poll_interval=0.02,
            on_attempt=self.recorded.put_nowait,
            **options,  # type: ignore[arg-type]
        )

    async def until(self, state: DeliveryState, timeout: float = 15.0) -> WebhookDelivery:
        """The first recorded delivery in ``state``."""
        while True:
            row = await asyncio.wait_for(self.recorded.get(), timeout)
            if row.state is state:
                return row


@pytest.fixture
async def watched(store: Store) -> AsyncIterator[Watched]:
    """A deliverer of ``store`` with quick retries, running until the test ends."""
    watch = Watched(store, policy=QUICK, timeout=0.5)
    task = asyncio.create_task(watch.deliverer.run())
    yield watch
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await watch.deliverer.close()


async def test_a_delivery_is_signed_and_verifies(store: Store) -> None:
    async with receiver() as site:
        hook = await create_webhook(store, "acme", f"{site.url}/hook", ["job.completed"])
        seq = await end_job(store, "j1")
        async with Deliverer(store, policy=QUICK) as deliverer:
            assert await deliverer.deliver_due() == 1
            assert await deliverer.deliver_due() == 0
        got = await site.next()
    h = got.headers
    assert got.path == "/hook"
    assert h["content-type"] == "application/json"
    assert h["aetheris-event-id"] == f"j1:{seq}"
    assert h["aetheris-event-type"] == "job.completed"
    assert h["aetheris-signature"].startswith("v1=")
    assert verify_signature(hook.secret, h["aetheris-timestamp"], got.body, h["aetheris-signature"])
    doc = json.loads(got.body)
    assert doc["id"] == f"j1:{seq}" and doc["type"] == "job.completed"
    assert doc["tenant"] == "acme"
    assert doc["job"] == {"id": "j1", "agent": "a", "status": "succeeded"}
    assert doc["data"]["summary"] == "job j1 succeeded"
    # What a receiver must refuse: another secret, another body, an old request.
    stamp, signature = h["aetheris-timestamp"], h["aetheris-signature"]
    assert not verify_signature("whsec_other", stamp, got.body, signature)
    assert not verify_signature(hook.secret, stamp, got.body + b" ", signature)
    assert not verify_signature(hook.secret, int(stamp) - 1, got.body, signature)
    assert not verify_signature(hook.secret, stamp, got.body, signature, now=int(stamp) + 301)
    [row] = await store.deliveries(webhook_id=hook.id)
    assert row.state is DeliveryState.DELIVERED and row.attempts == 1
    assert [(a.status, a.error) for a in row.log] == [(200, None)]


async def test_a_refusal_is_retried_with_the_same_event_id(store: Store, watched: Watched) -> None:
    async with receiver([500, 200]) as site:
        hook = await create_webhook(store, "acme", site.url, [WebhookEvent.JOB_COMPLETED])
        await end_job(store, "j1")
        watched.deliverer.wake()
        first, second = await site.next(), await site.next()
        row = await watched.until(DeliveryState.DELIVERED)
    assert first.status == 500 and second.status == 200
    assert first.body == second.body
    assert first.headers["aetheris-event-id"] == second.headers["aetheris-event-id"]
    for got in (first, second):
        h = got.headers
        assert verify_signature(
            hook.secret, h["aetheris-timestamp"], got.body, h["aetheris-signature"]
        )
    assert row.attempts == 2 and row.delivered_at is not None
    assert [(a.status, a.error, a.retry_in) for a in row.log] == [
        (500, "HTTP 500: not today", 0.05),
        (200, None, None),
    ]


async def test_a_receiver_that_is_down_ends_dead_after_growing_delays(
    store: Store, watched: Watched
) -> None:
    hook = await create_webhook(store, "acme", closed_port_url(), ["job.completed"])
    await end_job(store, "j1")
    watched.deliverer.wake()
    row = await watched.until(DeliveryState.DEAD)
    assert row.attempts == 4 == len(row.log)
    assert all(a.status is None and "ConnectError" in (a.error or "") for a in row.log)
    delays = [a.retry_in for a in row.log]
    assert delays == [0.05, 0.1, 0.2, None]
    gaps = [later.at - earlier.at for earlier, later in zip(row.log, row.log[1:], strict=False)]
    for gap, delay in zip(gaps, delays, strict=False):
        assert delay is not None and gap >= delay - 0.005
    assert row.last_error == row.log[-1].error
    [stored] = await store.deliveries(webhook_id=hook.id, state=DeliveryState.DEAD)
    assert stored.log == row.log


async def test_a_receiver_that_hangs_times_out_and_is_retried(store: Store) -> None:
    watch = Watched(store, policy=QUICK, timeout=0.2)
    async with receiver([HANG, 200]) as site, watch.deliverer:
        await create_webhook(store, "acme", site.url, ["job.completed"])
        await end_job(store, "j1")
        task = asyncio.create_task(watch.deliverer.run())
        try:
            row = await watch.until(DeliveryState.DELIVERED)
        finally:
            task.cancel()
        assert [r.status for r in (await site.next(), await site.next())] == [HANG, 200]
    assert row.log[0].status is None and "Timeout" in (row.log[0].error or "")
    assert row.log[1].status == 200


async def test_deliverers_side_by_side_send_each_event_once(store: Store) -> None:
    async with receiver() as site:
        await create_webhook(store, "acme", site.url, ["job.completed"])
        for i in range(12):
            await end_job(store, f"j{i}")
        ones = [Deliverer(store, batch=3) for _ in range(3)]
        sent = 0
        while True:
            tried = await asyncio.gather(*(d.deliver_due() for d in ones))
            if not any(tried):
                break
            sent += sum(tried)
        for one in ones:
            await one.close()
        ids = [(await site.next()).headers["aetheris-event-id"] for _ in range(12)]
    assert sent == 12
    assert len(set(ids)) == 12
    assert site.requests.empty()
