"""The key-value space of the PostgreSQL store (see :meth:`aetheris.store.port.Store.kv_put`).

A mixin of :class:`~aetheris.store.postgres.PostgresStore`, kept apart so that the store's
module stays about jobs. Keys are ``COLLATE "C"``: code point order, as on the other stores.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from aetheris.store import sql
from aetheris.store._shared import key_range

Q = sql.queries("postgresql")
Row = dict[str, Any]


class PostgresKeyValue:
    """``kv_*`` on PostgreSQL; the store provides ``_conn`` and ``_tx``."""

    def _conn(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        raise NotImplementedError

    def _tx(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        raise NotImplementedError

    async def kv_put(self, space: str, items: Mapping[str, bytes], *, replace: bool = True) -> None:
        params = {"space": space, "keys": list(items), "values": [bytes(v) for v in items.values()]}
        async with self._conn() as conn:
            await conn.execute(Q["kv_put" if replace else "kv_put_new"], params)

    async def kv_get(self, space: str, keys: Sequence[str]) -> dict[str, bytes]:
        async with self._conn() as conn:
            cur = await conn.execute(Q["kv_get"], {"space": space, "keys": list(keys)})
            return {r["key"]: bytes(r["value"]) for r in await cur.fetchall()}

    async def kv_scan(
        self,
        space: str,
        prefix: str = "",
        *,
        below: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[tuple[str, bytes]]:
        low, high = key_range(prefix, below)
        query = Q["kv_scan_descending" if descending else "kv_scan"]
        params = {"space": space, "low": low, "high": high, "limit": limit}
        async with self._conn() as conn:
            cur = await conn.execute(query, params)
            return [(r["key"], bytes(r["value"])) for r in await cur.fetchall()]

    async def kv_delete(
        self, space: str, keys: Sequence[str] = (), *, prefix: str | None = None
    ) -> None:
        async with self._tx() as conn:
            await conn.execute(Q["kv_delete"], {"space": space, "keys": list(keys)})
            if prefix is not None:
                low, high = key_range(prefix)
                params = {"space": space, "low": low, "high": high}
                await conn.execute(Q["kv_delete_range"], params)

    async def take_token(self, name: str, rate: float, burst: float) -> float:
        # One statement: the row lock orders the workers, the database's clock is everyone's.
        params = {"key": name, "rate": float(rate), "burst": float(burst)}
        async with self._conn() as conn:
            cur = await conn.execute(Q["take_token"], params)
            row = await cur.fetchone()
            return float(row["wait"]) if row else 0.0
