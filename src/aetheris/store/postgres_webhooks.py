"""Outgoing webhooks on the PostgreSQL store: subscriptions, claims and the delivery log.

A mixin of :class:`~aetheris.store.postgres.PostgresStore`, kept apart so that the store's
module stays about running jobs. The outbox itself is written with the events: by the commit
statement, and by ``_append`` through :meth:`PostgresWebhooks._outbox`. Claims take rows with
``FOR UPDATE SKIP LOCKED``, so concurrent deliverers (API servers on many machines) never wait
on, nor share, a delivery; times are the database's clock.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from aetheris.errors import Conflict
from aetheris.journal import Event
from aetheris.store import sql
from aetheris.store.memory_webhooks import DISABLED
from aetheris.store.outbox import notices
from aetheris.store.port import (
    AttemptOutcome,
    DeliveryClaim,
    DeliveryState,
    Webhook,
    WebhookDelivery,
)
from aetheris.store.sql.rows import (
    POSTGRESQL,
    attempt_params,
    claim_from,
    deliveries_params,
    delivery_from,
    notice_columns,
    webhook_from,
    webhook_params,
)

Row = dict[str, Any]
Q = sql.queries("postgresql")


class PostgresWebhooks:
    """The webhook methods of the port on PostgreSQL; the store provides ``_one``, ``_all``
    and ``_tx``."""

    async def _one(self, query: str, params: Mapping[str, Any] | None = None) -> Row | None:
        raise NotImplementedError

    async def _all(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        raise NotImplementedError

    def _tx(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        raise NotImplementedError

    async def _outbox(self, conn: psycopg.AsyncConnection[Row], sealed: Sequence[Event]) -> None:
        """The deliveries of the notable events among ``sealed`` (all of one job), in the
        transaction of ``conn`` that inserts them, after the job's row."""
        found = notices(sealed)
        if found:
            params = {"job_id": found[0].job_id, **notice_columns(found)}
            await conn.execute(Q["insert_deliveries"], params)

    async def create_webhook(self, webhook: Webhook) -> None:
        if await self._one("insert_webhook", webhook_params(webhook, POSTGRESQL)) is None:
            raise Conflict(f"webhook {webhook.id!r} already exists")

    async def webhook(self, webhook_id: str) -> Webhook | None:
        row = await self._one("get_webhook", {"id": webhook_id})
        return webhook_from(row) if row is not None else None

    async def webhooks(self, *, tenant: str | None = None, disabled: bool = False) -> list[Webhook]:
        rows = await self._all("list_webhooks", {"tenant": tenant, "disabled": disabled})
        return [webhook_from(r) for r in rows]

    async def disable_webhook(self, webhook_id: str) -> Webhook | None:
        async with self._tx() as conn:
            cur = await conn.execute(Q["disable_webhook"], {"id": webhook_id})
            row = await cur.fetchone()
            if row is None:
                return None
            await conn.execute(Q["drop_deliveries"], {"id": webhook_id, "error": DISABLED})
            return webhook_from(row)

    async def claim_deliveries(
        self, *, limit: int = 10, lease: float = 60.0
    ) -> list[DeliveryClaim]:
        params = {"limit": limit, "lease": lease, "token": uuid.uuid4().hex}
        return [claim_from(r, POSTGRESQL) for r in await self._all("claim_deliveries", params)]

    async def record_attempt(
        self, delivery_id: int, token: str, outcome: AttemptOutcome
    ) -> WebhookDelivery | None:
        row = await self._one("record_attempt", attempt_params(delivery_id, token, outcome))
        return delivery_from(row, POSTGRESQL) if row is not None else None

    async def deliveries(
        self,
        *,
        tenant: str | None = None,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        params = deliveries_params(tenant, webhook_id, state, limit)
        return [delivery_from(r, POSTGRESQL) for r in await self._all("list_deliveries", params)]
