"""``python -m bench.history``'s pieces: the bulk fill (on SQLite, small), its options, and one
tiny run through the store's API, so the harness itself is known to work."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench import history
from bench.history_fill import fill


def _migrated(tmp_path: Path) -> str:
    import asyncio

    from aetheris.store import create_store

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"

    async def migrate() -> None:
        store = create_store(url)
        await store.open()
        await store.close()

    asyncio.run(migrate())
    return url


def test_the_fill_writes_ended_and_parked_jobs_with_five_events_each(tmp_path: Path) -> None:
    url = _migrated(tmp_path)
    fill(url, 250, 40, lambda _: None)
    with sqlite3.connect(tmp_path / "db.sqlite") as conn:
        counts = dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
        events = conn.execute("SELECT count(*), count(DISTINCT job_id) FROM events").fetchone()
        waits = conn.execute(
            "SELECT count(*), count(wake_at) FROM jobs WHERE wake_on = 'signal:approve'"
        ).fetchone()
        ids = [r[0] for r in conn.execute("SELECT id FROM jobs ORDER BY created_at")]
    assert counts == {"succeeded": 230, "failed": 14, "cancelled": 6, "parked": 40}
    assert events == (290 * 5, 290)
    assert waits == (40, 20)  # half of the parked jobs have a timeout
    assert ids == sorted(ids)  # time-ordered ids, as the store makes them


def test_the_options_are_checked() -> None:
    assert history.parse(["--sizes", "0,1_000"]).sizes == [0, 1000]
    for bad in (["--sizes", "0,ten"], ["--parked", "-1"], ["--samples", "2", "--rounds", "3"]):
        with pytest.raises(SystemExit):
            history.parse(bad)


def test_a_small_run_measures_every_operation(tmp_path: Path) -> None:
    args = history.parse(["--backend", "sqlite", "--sizes", "0,30", "--parked", "40"])
    args.samples, args.rounds, args.leases = 6, 2, 2
    import asyncio

    runs = asyncio.run(history.one_backend("sqlite", args, tmp_path))
    assert [r["size"] for r in runs] == [0, 30]
    for run in runs:
        assert {op: len(s) for op, s in run["samples"].items()} == dict.fromkeys(history.OPS, 6)
    assert len(history.table(runs)) == 2 + 2 * len(history.OPS)
