"""What one durable step costs on PostgreSQL before any runtime runs: the floors under W1 and W4.

``python -m bench.floor [--commits 3000] [--rounds 3]`` creates a fresh database with the store's
schema and one running job, then times, in alternating rounds:

* **round trip**: ``SELECT 1`` (prepared) from a synchronous psycopg loop: the client library,
  the loopback socket and the server's protocol handling, nothing written;
* **statement, no flush**: the store's own ``commit_step`` statement (the fenced job-row UPDATE
  and one event INSERT, prepared) with ``synchronous_commit=off``, so the commit does not wait for
  the WAL flush;
* **commit, sync loop**: the same statement with the server's ``synchronous_commit`` (on: it waits
  for the flush), from a plain synchronous psycopg loop;
* **commit, asyncio loop**: the same from ``psycopg.AsyncConnection`` on an asyncio loop, as any
  asyncio runtime (Aetheris among them) must send it;
* the fsync probe's p50 (4 KiB write + fsync in a temporary directory).

It prints the median of the rounds for each and what a W1 step and a W4 turn (two such commits)
leave to everything else at a given budget: ``--budget-step`` (µs) names one, for example half of a
peer's figure from the same run of ``python -m bench``. No runtime code runs here.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from aetheris.store import create_store, sql
from aetheris.store.port import NewJob
from bench.peers.common import fresh_postgres_db, fsync_p50_us

BODY = b'{"kind":"step","name":"s#1","args_hash":"' + b"0" * 64 + b'","result":1}'
STATEMENT = sql.queries("postgresql")["commit_step"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--commits", type=int, default=3_000, help="statements per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating")
    parser.add_argument(
        "--budget-step", type=float, default=None, help="µs a step may take in all (optional)"
    )
    return parser.parse_args(argv)


async def floor_db(url: str) -> None:
    """The store's schema and one job, ``floor``, to commit steps to."""
    store = create_store(url)
    await store.open()
    await store.create_job(NewJob(id="floor", agent="a", input={}))
    await store.close()


def step_params(seq: int) -> dict[str, Any]:
    """``commit_step``'s parameters for the step that takes the journal from ``seq`` entries."""
    return {"id": "floor", "epoch": 1, "expect": seq, "count": seq + 1,
            "hash": f"{seq + 1:064x}", "code": None, "recovery": 0, "seq": seq,
            "type": "op", "position": seq, "body": BODY, "prev": f"{seq:064x}",
            "b_hashes": None, "b_bodies": None}  # fmt: skip


# The floor job running at epoch 1; returns the journal's length, where the next step goes.
_RUNNING = (
    "UPDATE jobs SET status = 'running', lease_epoch = 1 WHERE id = 'floor' RETURNING event_count"
)


def _timed(commits: int, one: Callable[[int], object], first: int = 0) -> float:
    began = time.perf_counter()
    for seq in range(first, first + commits):
        one(seq)
    return (time.perf_counter() - began) / commits * 1e6


def round_trip(url: str, commits: int) -> float:
    """µs per prepared ``SELECT 1`` from a synchronous loop."""
    with psycopg.connect(url, autocommit=True) as conn:
        return _timed(commits, lambda _: conn.execute("SELECT 1", prepare=True))


def sync_commits(url: str, commits: int, *, flush: bool = True) -> float:
    """µs per ``commit_step`` from a synchronous loop; ``flush=False``: synchronous_commit=off."""
    with psycopg.connect(url, autocommit=True) as conn:
        if not flush:
            conn.execute("SET synchronous_commit = off")
        row = conn.execute(_RUNNING).fetchone()
        first = int(row[0]) if row else 0

        def one(seq: int) -> object:
            return conn.execute(STATEMENT, step_params(seq), prepare=True)

        return _timed(commits, one, first)


async def async_commits(url: str, commits: int) -> float:
    """µs per ``commit_step`` from ``psycopg.AsyncConnection`` on an asyncio loop."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute(_RUNNING)).fetchone()
        first = int(row[0]) if row else 0
        began = time.perf_counter()
        for seq in range(first, first + commits):
            await (await conn.execute(STATEMENT, step_params(seq), prepare=True)).fetchone()
        return (time.perf_counter() - began) / commits * 1e6


def measure(url: str, commits: int, rounds: int) -> dict[str, float]:
    """The median over ``rounds`` of each floor, in µs, on the database at ``url``."""
    asyncio.run(floor_db(url))
    runs: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, value in (
            ("round trip", round_trip(url, commits)),
            ("statement, no flush", sync_commits(url, commits, flush=False)),
            ("commit, sync loop", sync_commits(url, commits)),
            ("commit, asyncio loop", asyncio.run(async_commits(url, commits))),
        ):
            runs.setdefault(name, []).append(value)
    return {name: statistics.median(values) for name, values in runs.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with fresh_postgres_db("floor") as url:
        floors = measure(url, args.commits, args.rounds)
    with tempfile.TemporaryDirectory(prefix="aetheris-floor-") as tmp:
        fsync = fsync_p50_us(Path(tmp))
    print(f"PostgreSQL floors, median of {args.rounds} rounds of {args.commits} statements:")
    for name, us in floors.items():
        print(f"  {us:7.1f} µs  {name}")
    print(f"  {fsync:7.1f} µs  fsync probe p50 (4 KiB write + fsync)")
    if args.budget_step is not None:
        left = args.budget_step - floors["commit, asyncio loop"]
        print(
            f"a budget of {args.budget_step:.0f} µs per step leaves {left:.0f} µs over the asyncio "
            f"commit for the runtime (a W4 turn of two commits: {2 * left:.0f} µs)"
        )


if __name__ == "__main__":
    main()
