"""Retention on the PostgreSQL store (see :mod:`aetheris.store.pruning`).

A mixin of :class:`~aetheris.store.postgres.PostgresStore`. A batch is one short transaction:
it locks the jobs it chose with ``FOR UPDATE SKIP LOCKED`` (a job some other transaction
holds is left for a later batch, so a prune never waits on a running system, nor makes it
wait for more than one batch), deletes their rows and writes their tombstones. A dry run
only reads, and locks nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import psycopg

from aetheris.errors import StoreError
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

Q = sql.queries("postgresql")
# The batch's pick: prune_candidates locked for the batch's transaction; rows another
# transaction holds are passed over (a prune never waits on a job, nor makes one wait long).
PICK = Q["prune_candidates"] + "\nFOR UPDATE SKIP LOCKED"
Row = dict[str, Any]
# The statements that delete a batch's rows, dependents first, the jobs' rows last.
_DELETES = [(t, f"prune_{t}") for t in TABLES[1:] if t != "kv"] + [("jobs", "prune_jobs")]


class PostgresPruning:
    """``prune_ended`` and ``tombstones`` on PostgreSQL; the store provides ``_conn``,
    ``_tx`` and ``signer``."""

    signer: Any

    def _conn(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        raise NotImplementedError

    def _tx(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
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
        params = {"before": ended_before, "agent": agent, "skip": list(skip_agents), "limit": limit}
        if dry_run:
            async with self._conn() as conn:
                return await _count(conn, params)
        async with self._tx() as conn:
            chosen = await _candidates(conn, PICK, params)
            if not chosen:
                return Pruned.of([], {})
            ids = {"ids": [c.id for c in chosen]}
            counts = {"kv": await _kv(conn, chosen, "prune_kv")}
            for table, query in _DELETES:
                counts[table] = (await conn.execute(Q[query], ids)).rowcount
            async with conn.cursor() as cur:
                await cur.executemany(Q["prune_tombstone"], tombstone_rows(chosen, self.signer, 0))
            return Pruned.of(chosen, counts)

    async def tombstones(self, job_ids: Sequence[str]) -> dict[str, Tombstone]:
        async with self._conn() as conn:
            cur = await conn.execute(Q["tombstones"], {"ids": list(job_ids)})
            return {r["job_id"]: tombstone_of(r) for r in await cur.fetchall()}


async def _candidates(
    conn: psycopg.AsyncConnection[Row], statement: str, params: dict[str, Any]
) -> list[Candidate]:
    rows = await (await conn.execute(statement, params)).fetchall()
    return [
        Candidate(r["id"], r["tenant"], r["agent"], r["status"], int(r["events"]), r["head"],
                  float(r["ended_at"]))
        for r in rows
    ]  # fmt: skip


async def _kv(conn: psycopg.AsyncConnection[Row], chosen: Sequence[Candidate], query: str) -> int:
    ranges = kv_ranges(c.id for c in chosen)
    count = 0
    for space in sorted({r[0] for r in ranges}):
        mine = [r for r in ranges if r[0] == space]
        params = {"space": space, "lows": [r[1] for r in mine], "highs": [r[2] for r in mine]}
        cur = await conn.execute(Q[query], params)
        if query == "prune_kv":
            count += cur.rowcount
        else:
            count += int((await _one(cur))["n"])
    return count


async def _count(conn: psycopg.AsyncConnection[Row], params: dict[str, Any]) -> Pruned:
    chosen = await _candidates(conn, Q["prune_candidates"], params)
    ids = {"ids": [c.id for c in chosen]}
    row = await _one(await conn.execute(Q["prune_count"], ids))
    counts = {t: int(row[t]) for t in TABLES[1:-1]}
    counts["kv"] = await _kv(conn, chosen, "prune_count_kv")
    return Pruned.of(chosen, counts)


async def _one(cur: psycopg.AsyncCursor[Row]) -> Row:
    row = await cur.fetchone()
    if row is None:
        raise StoreError("PostgreSQL returned no row where one was expected")
    return row
