"""The key-value space of the SQLite store (see :meth:`aetheris.store.port.Store.kv_put`).

A mixin of :class:`~aetheris.store.sqlite.SQLiteStore`, kept apart so that the store's module
stays about jobs: reads run inline, writes go through the store's group commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from aetheris.store import sql
from aetheris.store._shared import key_range

T = TypeVar("T")
Q = sql.queries("sqlite")


class SQLiteKeyValue:
    """``kv_*`` on a SQLite file; the store provides ``_read`` and ``_write``."""

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def kv_put(self, space: str, items: Mapping[str, bytes], *, replace: bool = True) -> None:
        query = Q["kv_put" if replace else "kv_put_new"]
        rows = [{"space": space, "key": k, "value": bytes(v)} for k, v in items.items()]
        await self._write(lambda conn: conn.executemany(query, rows))

    async def kv_get(self, space: str, keys: Sequence[str]) -> dict[str, bytes]:
        params = {"space": space, "keys": json.dumps(list(keys))}
        rows = self._read(lambda conn: conn.execute(Q["kv_get"], params).fetchall())
        return {r[0]: bytes(r[1]) for r in rows}

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
        params = {"space": space, "low": low, "high": high, "limit": -1 if limit is None else limit}
        rows = self._read(lambda conn: conn.execute(query, params).fetchall())
        return [(r[0], bytes(r[1])) for r in rows]

    async def kv_delete(
        self, space: str, keys: Sequence[str] = (), *, prefix: str | None = None
    ) -> None:
        listed = {"space": space, "keys": json.dumps(list(keys))}
        ranged = None
        if prefix is not None:
            low, high = key_range(prefix)
            ranged = {"space": space, "low": low, "high": high}

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute(Q["kv_delete"], listed)
            if ranged is not None:
                conn.execute(Q["kv_delete_range"], ranged)

        await self._write(delete)
