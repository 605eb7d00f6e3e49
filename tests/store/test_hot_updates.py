"""A running job's updates on PostgreSQL are heap-only (HOT): they write no index entry.

PostgreSQL updates a row without touching its indexes only when no column of any index (key,
included column, expression or partial predicate) changes and the new version fits on the
row's page. A worker heartbeats each job it holds every few seconds and commits every step;
were those updates to write into every index of jobs, each would cost an insert per index (a
level deeper as history grows), and the dead entries of past lease times would pile up in
front of the claim. So: no index of jobs has a column that a step commit, a fence or a
heartbeat changes, jobs leaves room on its pages (fillfactor), and ``pg_stat_user_tables``
counts nearly every update of a claimed job as HOT. The same run with the indexes from
before migration 0014 back (on ``lease_expires_at`` and ``updated_at``) counts almost none,
so the check can tell.
"""

from __future__ import annotations

import asyncio
import re
import time

import psycopg

from aetheris.store import create_store
from aetheris.store.port import ClaimFilter, Commit, Head, NewJob, Store
from tests.store.test_conformance import op

# What a step commit (``commit``), a ``fence`` or a ``heartbeat`` changes in a row of jobs.
HOT_COLUMNS = (
    "updated_at", "event_count", "head_hash", "lease_expires_at", "code_version", "recoveries",
)  # fmt: skip
HEARTBEATS, STEPS = 60, 6
# The indexes before migration 0014 that kept these updates from being HOT.
OLD_INDEXES = [
    "CREATE INDEX old_running ON jobs (lease_expires_at) WHERE status = 'running'",
    "CREATE INDEX old_ended ON jobs (updated_at, id)"
    " WHERE status IN ('succeeded', 'failed', 'cancelled', 'compensated')",
]


def test_no_index_of_jobs_reads_a_column_a_running_job_changes(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'jobs'::regclass"
        ).fetchall()
        (options,) = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'jobs'::regclass")
    definitions = [row[0] for row in found]
    assert len(definitions) >= 9, definitions
    offending = [
        (d, c)
        for d in definitions
        for c in HOT_COLUMNS
        if re.search(rf"\b{c}\b", d.split(" ON ")[1])
    ]
    assert offending == []
    assert "fillfactor=70" in (options[0] or []), options


async def _stats(url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")
        cur = await conn.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'jobs'"
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def _run_a_job(store: Store, job_id: str) -> int:
    """Claim a job, heartbeat it and commit steps; the updates of jobs made (at least)."""
    await store.create_job(NewJob(id=job_id, agent="hot", input={}, tenant="acme"))
    claim = await store.claim("w1", 30.0, ClaimFilter(["hot"]))
    assert claim is not None and claim.job.id == job_id
    for i in range(HEARTBEATS):
        await store.heartbeat([claim.lease], 30.0)
        if i % (HEARTBEATS // STEPS) == 0:
            job = await store.get_job(job_id)
            assert job is not None
            head = Head(job.event_count, job.head_hash)
            await store.commit(claim.lease, Commit([op(i)], head=head))
    return 1 + HEARTBEATS + STEPS  # the claim (its status changes: never HOT), then the rest


async def _updates_of_a_job(url: str, job_id: str) -> tuple[int, int]:
    """(updates, HOT updates) of jobs while a store runs a job; the store is closed after, so
    its backends report their counts on exit (polled until they are all in)."""
    before = await _stats(url)
    store = create_store(url)
    await store.open()
    try:
        made = await _run_a_job(store, job_id)
    finally:
        await store.close()
    deadline = time.monotonic() + 15
    while True:
        after = await _stats(url)
        updates, hot = after[0] - before[0], after[1] - before[1]
        if updates >= made or time.monotonic() > deadline:
            return updates, hot
        await asyncio.sleep(0.1)


async def test_a_running_jobs_heartbeats_and_steps_are_hot_updates(pg_url: str) -> None:
    updates, hot = await _updates_of_a_job(pg_url, "hot-1")
    assert updates >= 1 + HEARTBEATS + STEPS, (updates, hot)
    assert hot >= updates - 2, f"{hot} of {updates} updates of jobs were HOT"
    # The check can fail: with the old indexes back, the same run is (almost) never HOT.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for statement in OLD_INDEXES:
            conn.execute(statement)
    updates, hot = await _updates_of_a_job(pg_url, "hot-2")
    assert updates >= 1 + HEARTBEATS + STEPS and hot < updates // 4, (updates, hot)
