"""The PostgreSQL floors of ``python -m bench.floor`` commit what they claim to commit."""

from __future__ import annotations

import psycopg

from bench import floor
from bench.peers.common import fresh_postgres_db
from tests.conftest import require_postgres


def test_each_commit_loop_writes_one_fenced_event_per_statement() -> None:
    require_postgres()
    with fresh_postgres_db("floortest") as url:
        floors = floor.measure(url, commits=5, rounds=2)
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT event_count FROM jobs WHERE id = 'floor'").fetchone()
            events = conn.execute("SELECT count(*), max(seq) FROM events").fetchone()
    assert set(floors) == {
        "round trip",
        "statement, no flush",
        "commit, sync loop",
        "commit, asyncio loop",
    }
    assert all(us > 0 for us in floors.values())
    # Three commit loops of five statements in each of two rounds, every one past its fence,
    # after the job_created event.
    assert count == (31,)
    assert events == (31, 30)
