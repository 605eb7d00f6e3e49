"""Keyed signals on the SQLite store (see
:meth:`aetheris.store.port.Store.deliver_keyed`): deliveries and who holds a key.

A mixin of :class:`~aetheris.store.sqlite.SQLiteStore`, kept apart so that the store's module
stays about running jobs. The keys a commit takes are steps of the commit
(:func:`aetheris.store.sql.steps.key_steps`); a delivery is one write of the store's group
commit. SQLite runs one writer at a time, so the two never interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aetheris.journal import Event, canonical
from aetheris.store import sql
from aetheris.store.port import Delivery
from aetheris.store.sql import steps
from aetheris.store.sql.rows import SQLITE, job_from

T = TypeVar("T")
Q = sql.queries("sqlite")


class SQLiteKeyed:
    """``deliver_keyed`` and ``key_holder`` on a SQLite file; the store provides ``_read``,
    ``_write``, ``_run`` and ``_clock``."""

    _clock: Callable[[], float]

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    def _run(self, conn: sqlite3.Connection, plan: Sequence[steps.Step]) -> list[Event]:
        raise NotImplementedError

    async def key_holder(self, tenant: str, name: str, key: str) -> str | None:
        params = {"tenant": tenant, "name": name, "key": key}
        row = self._read(lambda conn: conn.execute(Q["key_holder"], params).fetchone())
        return row[0] if row is not None else None

    async def deliver_keyed(
        self, tenant: str, name: str, key: str, payload: Any, signal_id: str, sender: str | None
    ) -> Delivery:
        body = canonical(payload)
        return await self._write(
            lambda conn: self._deliver(
                conn, steps.keyed_params(tenant, name, key, signal_id, body, sender, self._clock())
            )
        )

    def _deliver(self, conn: sqlite3.Connection, params: dict[str, Any]) -> Delivery:
        holder = conn.execute(Q["lock_key"], params).fetchone()[0]
        known = conn.execute(Q["keyed_signal_by_id"], params).fetchone()
        if known is not None:
            return Delivery(params["signal_id"], known[0], False)
        if holder is not None:
            row = conn.execute(Q["get_job"], {"id": holder}).fetchone()
            if row is None or job_from(row, SQLITE).status.terminal:
                holder = None  # the key is free again: the signal waits for the next job
        self._run(conn, steps.delivery(params, holder))
        return Delivery(params["signal_id"], holder, True)
