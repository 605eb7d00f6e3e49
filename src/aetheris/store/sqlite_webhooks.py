"""Outgoing webhooks on the SQLite store: subscriptions, claims and the delivery log.

A mixin of :class:`~aetheris.store.sqlite.SQLiteStore`, kept apart so that the store's module
stays about running jobs. The outbox itself is written where the store inserts events
(``sqlite._insert_events``). Claims need no row locks: the group-commit writer is the one
writer, so a claim's UPDATE and the read of what it took are one transaction that no other
claim interleaves with.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import TypeVar

from aetheris.errors import Conflict
from aetheris.store import sql
from aetheris.store.memory_webhooks import DISABLED
from aetheris.store.port import (
    AttemptOutcome,
    DeliveryClaim,
    DeliveryState,
    Webhook,
    WebhookDelivery,
)
from aetheris.store.sql.rows import (
    SQLITE,
    attempt_params,
    claim_from,
    deliveries_params,
    delivery_from,
    webhook_from,
    webhook_params,
)

T = TypeVar("T")
Q = sql.queries("sqlite")


class SQLiteWebhooks:
    """The webhook methods of the port on a SQLite file; the store provides ``_read``,
    ``_write`` and ``_clock``."""

    _clock: Callable[[], float]

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def create_webhook(self, webhook: Webhook) -> None:
        params = webhook_params(webhook, SQLITE)
        row = await self._write(lambda conn: conn.execute(Q["insert_webhook"], params).fetchone())
        if row is None:
            raise Conflict(f"webhook {webhook.id!r} already exists")

    async def webhook(self, webhook_id: str) -> Webhook | None:
        query = Q["get_webhook"]
        row = self._read(lambda conn: conn.execute(query, {"id": webhook_id}).fetchone())
        return webhook_from(row) if row is not None else None

    async def webhooks(self, *, tenant: str | None = None, disabled: bool = False) -> list[Webhook]:
        params = {"tenant": tenant, "disabled": int(disabled)}
        rows = self._read(lambda conn: conn.execute(Q["list_webhooks"], params).fetchall())
        return [webhook_from(r) for r in rows]

    async def disable_webhook(self, webhook_id: str) -> Webhook | None:
        def disable(conn: sqlite3.Connection) -> Webhook | None:
            params = {"id": webhook_id, "now": self._clock()}
            row = conn.execute(Q["disable_webhook"], params).fetchone()
            if row is None:
                return None
            conn.execute(Q["drop_deliveries"], {"id": webhook_id, "error": DISABLED})
            return webhook_from(row)

        return await self._write(disable)

    async def claim_deliveries(
        self, *, limit: int = 10, lease: float = 60.0
    ) -> list[DeliveryClaim]:
        due = {"now": self._clock()}
        if self._read(lambda conn: conn.execute(Q["due_delivery"], due).fetchone()) is None:
            return []
        token = uuid.uuid4().hex

        def claim(conn: sqlite3.Connection) -> list[DeliveryClaim]:
            params = {"now": self._clock(), "lease": lease, "token": token, "limit": limit}
            conn.execute(Q["claim_deliveries"], params)
            rows = conn.execute(Q["claimed_deliveries"], {"token": token}).fetchall()
            return [claim_from(r, SQLITE) for r in rows]

        return await self._write(claim)

    async def record_attempt(
        self, delivery_id: int, token: str, outcome: AttemptOutcome
    ) -> WebhookDelivery | None:
        params = attempt_params(delivery_id, token, outcome)

        def record(conn: sqlite3.Connection) -> WebhookDelivery | None:
            row = conn.execute(Q["record_attempt"], {**params, "now": self._clock()}).fetchone()
            return delivery_from(row, SQLITE) if row is not None else None

        return await self._write(record)

    async def deliveries(
        self,
        *,
        tenant: str | None = None,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        params = deliveries_params(tenant, webhook_id, state, limit)
        rows = self._read(lambda conn: conn.execute(Q["list_deliveries"], params).fetchall())
        return [delivery_from(r, SQLITE) for r in rows]
