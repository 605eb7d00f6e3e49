"""``python -m bench.workers`` on a small queue: its figures add up, and a job claimed twice in
the journal is counted."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import psycopg

from aetheris.store import create_store
from aetheris.store.port import ClaimFilter
from bench import workers
from bench.harness import fresh_database
from bench.peers import common
from tests.conftest import require_postgres


def settings(tmp_path: Path, **changes: object) -> argparse.Namespace:
    base = {
        "jobs": 40,
        "workers": "2",
        "concurrency": 4,
        "steps": 1,
        "rate": None,
        "duration": 2.0,
        "pool_max": 3,
        "pg_url": common.PG_ADMIN_URL,
        "dir": tmp_path,
    }
    return argparse.Namespace(**(base | changes))


async def test_two_workers_drain_a_held_queue_each_job_claimed_once(tmp_path: Path) -> None:
    require_postgres()
    run = await workers.one_run(settings(tmp_path), 2)
    assert run["jobs"] == run["claims"] == 40
    assert run["claimed_twice"] == 0
    assert sum(run["claims_per_worker"]) == 40
    assert len(run["claims_per_worker"]) <= 2
    waits = run["pending_to_claimed_ms"]
    assert 0 <= waits["p50"] <= waits["p99"] <= waits["max"]
    assert run["jobs_per_s"] > 0
    assert run["server"]["samples"] > 0
    assert run["transactions"]["xact_commit"] > 0
    assert "2 workers: 40 jobs" in workers.line(run)


async def test_jobs_arriving_at_a_rate_are_timed_from_their_creation(tmp_path: Path) -> None:
    require_postgres()
    run = await workers.one_run(settings(tmp_path, rate=10.0, duration=1.0), 1)
    assert run["jobs"] == run["claims"] == 10
    assert run["pending_to_claimed_ms"]["p50"] >= 0


def test_a_second_claim_in_the_journal_is_counted(tmp_path: Path) -> None:
    require_postgres()
    with fresh_database("postgres", None, tmp_path, admin_url=common.PG_ADMIN_URL) as db:

        async def one_job() -> None:
            store = create_store(db.url)
            await store.open()
            await store.create_job(workers.new_job(1, None))
            claim = await store.claim("w", 30, ClaimFilter(agents=(workers.AGENT,)))
            assert claim is not None
            await store.close()

        asyncio.run(one_job())
        assert workers.journal(db.url, 0.0)["claimed_twice"] == 0
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO events SELECT job_id, seq + 100, type, position, body, prev_hash,"
                " hash, anchor_key, anchor_sig FROM events WHERE type = 'job_claimed'"
            )
        found = workers.journal(db.url, 0.0)
    assert found["claims"] == 2
    assert found["claimed_twice"] == 1
