"""Keyed signals on the PostgreSQL store (see
:meth:`aetheris.store.port.Store.deliver_keyed`): deliveries, who holds a key, and the locks a
commit takes before its job's row.

A mixin of :class:`~aetheris.store.postgres.PostgresStore`, kept apart so that the store's
module stays about running jobs.

Race-freedom: a delivery and a commit that takes the same key both lock the key's
``correlations`` row (an upsert locks the row it finds or inserts, and waits for a concurrent
insert of the same key to commit). So a delivery that found no holder has committed its
mailbox row before the commit taking the key collects the mailbox, or it waits for that commit
and then finds the holder. Lock order: key rows, then job rows. A delivery locks the holder's
row after the key's; a commit that takes keys locks them (:meth:`PostgresKeyed._lock_first`)
before its own job's row, which its first statement locks: otherwise a holder taking its key
again while a signal arrives would deadlock with the delivery.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from aetheris.journal import Event
from aetheris.store import sql
from aetheris.store.port import Commit, Delivery
from aetheris.store.sql import steps
from aetheris.store.sql.rows import POSTGRESQL, job_from

Q = sql.queries("postgresql")
Row = dict[str, Any]


class PostgresKeyed:
    """``deliver_keyed``, ``key_holder`` and ``_lock_first`` on PostgreSQL; the store provides
    ``_tx``, ``_one`` and ``_run``."""

    def _tx(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        raise NotImplementedError

    async def _one(self, query: str, params: Mapping[str, Any] | None = None) -> Row | None:
        raise NotImplementedError

    async def _run(
        self, conn: psycopg.AsyncConnection[Row], plan: Sequence[steps.Step]
    ) -> list[Event]:
        raise NotImplementedError

    async def key_holder(self, tenant: str, name: str, key: str) -> str | None:
        row = await self._one("key_holder", {"tenant": tenant, "name": name, "key": key})
        return row["job_id"] if row is not None else None

    async def deliver_keyed(
        self, tenant: str, name: str, key: str, payload: Any, signal_id: str, sender: str | None
    ) -> Delivery:
        body = POSTGRESQL.encode(payload)
        params = steps.keyed_params(tenant, name, key, signal_id, body, sender, 0.0)
        async with self._tx() as conn:
            locked = await _fetch_one(conn, Q["lock_key"], params)
            holder = locked["job_id"] if locked is not None else None
            known = await _fetch_one(conn, Q["keyed_signal_by_id"], params)
            if known is not None:
                return Delivery(signal_id, known["job_id"], False)
            if holder is not None:
                row = await _fetch_one(conn, Q["lock_job"], {"id": holder})
                if row is None or job_from(row, POSTGRESQL).status.terminal:
                    holder = None  # the key is free again: the signal waits for the next job
            await self._run(conn, steps.delivery(params, holder))
            return Delivery(signal_id, holder, True)

    async def _lock_first(
        self, conn: psycopg.AsyncConnection[Row], job_id: str, commit: Commit
    ) -> None:
        """Before a commit locks its job's row: the rows of the keys it takes, then the jobs it
        wakes (a waiter before the job that wakes it, in id order: no deadlock)."""
        if commit.correlate:
            pairs = sorted(set(commit.correlate))
            names, keys = [name for name, _ in pairs], [key for _, key in pairs]
            await conn.execute(Q["lock_keys"], {"id": job_id, "names": names, "keys": keys})
        waiters = sorted({other for other, _ in commit.wake})
        if waiters:
            await conn.execute(Q["lock_jobs"], {"ids": waiters})


async def _fetch_one(
    conn: psycopg.AsyncConnection[Row], query: str, params: Mapping[str, Any]
) -> Row | None:
    return await (await conn.execute(query, params)).fetchone()
