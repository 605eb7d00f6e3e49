"""Retention on the SQLite store (see :mod:`aetheris.store.pruning`).

A mixin of :class:`~aetheris.store.sqlite.SQLiteStore`. A batch is one operation of the
store's group commit: chosen and deleted in the same write transaction, which SQLite runs one
at a time, so no job can change between the two. A dry run only reads.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aetheris.store import sql
from aetheris.store.pruning import (
    DEFAULT_BATCH,
    TABLES,
    Candidate,
    Pruned,
    Tombstone,
    check_limit,
    kv_ranges,
    tombstone_of,
    tombstone_rows,
)

T = TypeVar("T")
Q = sql.queries("sqlite")
# The statements that delete a batch's rows, dependents first, the jobs' rows last.
_DELETES = [(t, f"prune_{t}") for t in TABLES[1:] if t != "kv"] + [("jobs", "prune_jobs")]


class SQLitePruning:
    """``prune_ended`` and ``tombstones`` on SQLite; the store provides ``_read``,
    ``_write``, ``_clock`` and ``signer``."""

    signer: Any
    _clock: Callable[[], float]

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def prune_ended(
        self,
        ended_before: float,
        *,
        agent: str | None = None,
        skip_agents: Sequence[str] = (),
        limit: int | None = DEFAULT_BATCH,
        dry_run: bool = False,
    ) -> Pruned:
        check_limit(limit)
        params = {
            "before": ended_before, "agent": agent, "skip": json.dumps(list(skip_agents)),
            "limit": -1 if limit is None else limit,
        }  # fmt: skip
        if dry_run:
            return self._read(lambda conn: _count(conn, params))
        return await self._write(lambda conn: self._prune(conn, params))

    def _prune(self, conn: sqlite3.Connection, params: dict[str, Any]) -> Pruned:
        chosen = _candidates(conn, params)
        if not chosen:
            return Pruned.of([], {})
        ids = {"ids": json.dumps([c.id for c in chosen])}
        counts = {"kv": _kv(conn, chosen, "prune_kv")}
        for table, query in _DELETES:
            counts[table] = conn.execute(Q[query], ids).rowcount
        stones = tombstone_rows(chosen, self.signer, self._clock())
        conn.executemany(Q["prune_tombstone"], [{**s, "now": s["pruned_at"]} for s in stones])
        return Pruned.of(chosen, counts)

    async def tombstones(self, job_ids: Sequence[str]) -> dict[str, Tombstone]:
        params = {"ids": json.dumps(list(job_ids))}
        rows = self._read(lambda conn: conn.execute(Q["tombstones"], params).fetchall())
        return {r["job_id"]: tombstone_of(r) for r in rows}


def _candidates(conn: sqlite3.Connection, params: dict[str, Any]) -> list[Candidate]:
    """The batch: in its write transaction when it deletes (SQLite has one writer at a time)."""
    rows = conn.execute(Q["prune_candidates"], params).fetchall()
    return [
        Candidate(r["id"], r["tenant"], r["agent"], r["status"], int(r["events"]), r["head"],
                  float(r["ended_at"]))
        for r in rows
    ]  # fmt: skip


def _kv(conn: sqlite3.Connection, chosen: Sequence[Candidate], query: str) -> int:
    count = 0
    for space, low, high in kv_ranges(c.id for c in chosen):
        cur = conn.execute(Q[query], {"space": space, "low": low, "high": high})
        count += cur.rowcount if query == "prune_kv" else int(cur.fetchone()[0])
    return count


def _count(conn: sqlite3.Connection, params: dict[str, Any]) -> Pruned:
    chosen = _candidates(conn, params)
    row = conn.execute(Q["prune_count"], {"ids": json.dumps([c.id for c in chosen])}).fetchone()
    counts = {t: int(row[t]) for t in TABLES[1:-1]} | {"kv": _kv(conn, chosen, "prune_count_kv")}
    return Pruned.of(chosen, counts)
