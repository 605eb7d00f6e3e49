"""Outgoing webhooks on the in-memory store: subscriptions and the outbox, as plain dicts.

A mixin of :class:`~aetheris.store.memory.MemoryStore` (the reference semantics of the port's
webhook methods), kept apart so that the store's module stays about running jobs. The outbox
is written by :meth:`MemoryWebhooks._outbox`, which the store calls where it appends events,
under its one lock.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Callable, Sequence

from aetheris.errors import Conflict
from aetheris.journal import Event, to_jsonable
from aetheris.store.outbox import notices
from aetheris.store.port import (
    AttemptOutcome,
    DeliveryAttempt,
    DeliveryClaim,
    DeliveryState,
    Job,
    Webhook,
    WebhookDelivery,
)

DISABLED = "the subscription was deleted"


class MemoryWebhooks:
    """The webhook methods of the port; the store provides ``_lock``, ``_clock``, ``_jobs``
    and calls :meth:`_init_webhooks` when it is made."""

    _lock: threading.Lock
    _clock: Callable[[], float]
    _jobs: dict[str, Job]

    def _init_webhooks(self) -> None:
        self._hooks: dict[str, Webhook] = {}
        self._deliveries: dict[int, WebhookDelivery] = {}
        self._by_event: set[tuple[str, str]] = set()  # (webhook id, event id): one delivery
        self._claims: dict[int, str] = {}  # delivery id: the token of its current claim
        self._delivery_ids = 0  # the last delivery's id: never reused, even once pruned

    def _outbox(self, sealed: Sequence[Event]) -> None:
        """One delivery per active subscription of the job's tenant to each notable event
        of ``sealed`` (called under the lock, with the events, after the job's row)."""
        for notice in notices(sealed):
            job = self._jobs[notice.job_id]
            for hook in self._hooks.values():
                key = (hook.id, notice.event_id)
                if not hook.active or hook.tenant != job.tenant or notice.type not in hook.events:
                    continue
                if key in self._by_event:
                    continue
                self._by_event.add(key)
                self._delivery_ids += 1
                number = self._delivery_ids
                self._deliveries[number] = WebhookDelivery(
                    id=number,
                    webhook_id=hook.id,
                    tenant=job.tenant,
                    job_id=job.id,
                    agent=job.agent,
                    job_status=job.status,
                    event_id=notice.event_id,
                    event_type=notice.type,
                    payload=to_jsonable(notice.payload),
                    created_at=notice.at,
                    state=DeliveryState.PENDING,
                    attempts=0,
                    next_at=notice.at,
                )

    async def create_webhook(self, webhook: Webhook) -> None:
        with self._lock:
            if webhook.id in self._hooks:
                raise Conflict(f"webhook {webhook.id!r} already exists")
            self._hooks[webhook.id] = webhook

    async def webhook(self, webhook_id: str) -> Webhook | None:
        return self._hooks.get(webhook_id)

    async def webhooks(self, *, tenant: str | None = None, disabled: bool = False) -> list[Webhook]:
        with self._lock:
            found = [
                h
                for h in self._hooks.values()
                if (tenant is None or h.tenant == tenant) and (disabled or h.active)
            ]
        return sorted(found, key=lambda h: (h.created_at, h.id))

    async def disable_webhook(self, webhook_id: str) -> Webhook | None:
        with self._lock:
            hook = self._hooks.get(webhook_id)
            if hook is None:
                return None
            if hook.active:
                hook = self._hooks[webhook_id] = dataclasses.replace(
                    hook, disabled_at=self._clock()
                )
            for number, row in self._deliveries.items():
                if row.webhook_id == webhook_id and row.state is DeliveryState.PENDING:
                    self._deliveries[number] = dataclasses.replace(
                        row, state=DeliveryState.DEAD, last_error=DISABLED
                    )
                    self._claims.pop(number, None)
            return hook

    async def claim_deliveries(
        self, *, limit: int = 10, lease: float = 60.0
    ) -> list[DeliveryClaim]:
        with self._lock:
            now = self._clock()
            due = sorted(
                (
                    row
                    for row in self._deliveries.values()
                    if row.state is DeliveryState.PENDING
                    and row.next_at <= now
                    and self._hooks[row.webhook_id].active
                ),
                key=lambda row: (row.next_at, row.id),
            )[:limit]
            token = uuid.uuid4().hex
            claims = []
            for row in due:
                row = self._deliveries[row.id] = dataclasses.replace(row, next_at=now + lease)
                self._claims[row.id] = token
                hook = self._hooks[row.webhook_id]
                claims.append(DeliveryClaim(row, hook.url, hook.secret, token))
            return claims

    async def record_attempt(
        self, delivery_id: int, token: str, outcome: AttemptOutcome
    ) -> WebhookDelivery | None:
        with self._lock:
            row = self._deliveries.get(delivery_id)
            if row is None or self._claims.get(delivery_id) != token:
                return None
            del self._claims[delivery_id]
            now = self._clock()
            retry_in = None if outcome.delivered else outcome.retry_in
            tried = DeliveryAttempt(now, outcome.status, outcome.error, outcome.duration, retry_in)
            if outcome.delivered:
                state = DeliveryState.DELIVERED
            else:
                state = DeliveryState.PENDING if retry_in is not None else DeliveryState.DEAD
            row = self._deliveries[delivery_id] = dataclasses.replace(
                row,
                state=state,
                attempts=row.attempts + 1,
                next_at=now + retry_in if retry_in is not None else row.next_at,
                last_status=outcome.status,
                last_error=outcome.error,
                delivered_at=now if outcome.delivered else None,
                log=(*row.log, tried),
            )
            return row

    async def deliveries(
        self,
        *,
        tenant: str | None = None,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        with self._lock:
            found = [
                row
                for row in self._deliveries.values()
                if (tenant is None or row.tenant == tenant)
                and (webhook_id is None or row.webhook_id == webhook_id)
                and (state is None or row.state is state)
            ]
        return sorted(found, key=lambda row: row.id, reverse=True)[:limit]
