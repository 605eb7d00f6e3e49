"""A prune batch on PostgreSQL reads the ended-jobs index, never the whole jobs table: its pick
walks ``jobs_ended`` (by creation time) in order and looks each candidate's parent up by its
key. Without that index, the same check fails."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from aetheris.store import create_store
from aetheris.store.postgres_pruning import PICK

SEED = """
INSERT INTO jobs (id, agent, input, status, queue, priority, run_at, head_hash, created_at,
                  updated_at, tenant, parent_id)
SELECT 'j' || i, CASE WHEN i % 3 = 0 THEN 'a' ELSE 'b' END, '{}',
       CASE WHEN i % 2 = 0 THEN 'parked' ELSE 'succeeded' END, 'default', 0, 0, 'h',
       extract(epoch FROM now()) - 86400 * 40 + i - 30, extract(epoch FROM now()) - 86400 * 40 + i,
       'default',
       CASE WHEN i % 10 = 1 THEN 'j' || (i + 1) END
FROM generate_series(1, 50000) AS i
"""


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


@pytest.mark.parametrize("agent", [None, "a"])
async def test_a_prune_batch_reads_the_ended_jobs_index(pg_url: str, agent: str | None) -> None:
    store = create_store(pg_url)
    await store.open()
    await store.close()
    params = {"before": time.time() - 30 * 86400, "agent": agent, "skip": ["c"], "limit": 500}
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        await conn.execute(SEED)
        await conn.execute("ANALYZE jobs")
        assert await problems(conn, params) == []
        async with conn.transaction(force_rollback=True):
            await conn.execute("DROP INDEX jobs_ended")
            assert await problems(conn, params), "the plan did not change without jobs_ended"


async def problems(conn: psycopg.AsyncConnection[Any], params: dict[str, Any]) -> list[str]:
    """What is wrong with the pick's plan: no ordered read of jobs_ended, a scan of a table,
    a sort (the index gives the order)."""
    cur = await conn.execute("EXPLAIN (FORMAT JSON) " + PICK, params)  # type: ignore[arg-type]
    row = await cur.fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    found = list(nodes(document[0]["Plan"]))
    scans = [(n["Node Type"], n.get("Relation Name"), n.get("Index Name")) for n in found]
    wrong = [] if ("Index Scan", "jobs", "jobs_ended") in scans else [f"no jobs_ended: {scans}"]
    wrong += [f"{s[0]} on {s[1]}" for s in scans if s[0] == "Seq Scan"]
    return wrong + [n["Node Type"] for n in found if n["Node Type"] == "Sort"]
