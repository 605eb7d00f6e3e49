"""``python -m bench.prune``: what pruning ended jobs costs a running system on PostgreSQL.

A fresh database is seeded with ``--ended`` jobs that ended 40 days ago (each with
``--events`` journal events of ~200 bytes and one ledger row, written with set-based SQL),
then a worker (in this process, ``--concurrency``) runs jobs of three durable steps from a
backlog kept topped up, flat out. Its throughput (jobs ended per second) is measured three
times: before, while ``aetheris db prune --older-than 30d`` (a separate process, ``--batch``
jobs per transaction, ``--pause`` seconds between batches) deletes every seeded job, and
after. The figure is the throughput during the prune over the mean of before and after.
``--json`` prints the record; it is also written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from aetheris import App, Context
from aetheris.testing import running_worker
from bench import harness

SEED = """
INSERT INTO jobs (id, agent, input, status, queue, priority, run_at, event_count, head_hash,
                  created_at, updated_at, tenant)
SELECT 'old-' || i, 'bench_old', '{}'::jsonb, 'succeeded', 'default', 0, t, %(events)s, 'h',
       t, t, 'default'
FROM generate_series(1, %(n)s) AS i, (SELECT aetheris_now() - 40 * 86400 AS t) AS c;
INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash)
SELECT 'old-' || i, s, 'op', s, convert_to(repeat('x', 200), 'UTF8'), 'p', 'h'
FROM generate_series(1, %(n)s) AS i, generate_series(1, %(events)s) AS s;
INSERT INTO effects (job_id, position, tool, effect, args_hash, idempotency_key, state,
                     attempt, created_at, updated_at)
SELECT 'old-' || i, 1, 'pay', 'at_most_once', 'h', 'k' || i, 'committed', 1, 0, 0
FROM generate_series(1, %(n)s) AS i;
"""


def build(url: str) -> tuple[App, list[int]]:
    app = App(url, poll_interval=0.005)
    done = [0]

    @app.agent(name="bench_prune_load")
    async def load(ctx: Context, n: int) -> int:
        for i in range(3):
            await ctx.step("s", lambda i=i: {"i": i, "n": n})
        done[0] += 1
        return n

    return app, done


async def feed(app: App, done: list[int], stop: asyncio.Event, backlog: int) -> None:
    """Keep about ``backlog`` jobs waiting, so the worker never idles."""
    started = 0
    while not stop.is_set():
        while started - done[0] < backlog:
            await app.start("bench_prune_load", {"n": started})
            started += 1
        await asyncio.sleep(0.01)


async def rate(done: list[int], seconds: float) -> float:
    first, began = done[0], time.perf_counter()
    await asyncio.sleep(seconds)
    return (done[0] - first) / (time.perf_counter() - began)


async def rate_while(done: list[int], proc: asyncio.subprocess.Process) -> tuple[float, float]:
    first, began = done[0], time.perf_counter()
    await proc.wait()
    took = time.perf_counter() - began
    return (done[0] - first) / took, took


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    app, done = build(url)
    stop = asyncio.Event()
    env = {**os.environ, "AETHERIS_DATABASE_URL": url, "NO_COLOR": "1"}
    command = [
        sys.executable, "-m", "aetheris", "db", "prune", "--older-than", "30d",
        "--batch", str(args.batch), "--pause", str(args.pause), "--json",
    ]  # fmt: skip
    async with running_worker(app, concurrency=args.concurrency):
        feeder = asyncio.create_task(feed(app, done, stop, args.concurrency * 4))
        await rate(done, args.warmup)
        before = await rate(done, args.seconds)
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        during, took = await rate_while(done, proc)
        out = json.loads((await proc.stdout.read()).decode()) if proc.stdout else {}
        after = await rate(done, args.seconds)
        stop.set()
        await feeder
    await app.close()
    baseline = (before + after) / 2
    return {
        "jobs_per_s": {"before": round(before, 1), "during": round(during, 1),
                       "after": round(after, 1)},
        "ratio": round(during / baseline, 3),
        "prune": {"seconds": round(took, 1), "jobs": out.get("jobs"),
                  "jobs_per_s": round((out.get("jobs") or 0) / took, 1), "rows": out.get("rows")},
    }  # fmt: skip


def seed(url: str, n: int, events: int) -> float:
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SEED.split(";"):
            if statement.strip():
                conn.execute(statement, {"n": n, "events": events})  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.prune", description=__doc__)
    parser.add_argument("--ended", type=int, default=100_000, help="ended jobs to prune")
    parser.add_argument("--events", type=int, default=8, help="events per ended job")
    parser.add_argument("--concurrency", type=int, default=10, help="the worker's")
    parser.add_argument("--batch", type=int, default=500, help="jobs per prune transaction")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between batches")
    parser.add_argument("--seconds", type=float, default=20.0, help="each baseline's length")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--pg", default="", help="admin URL of the PostgreSQL server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as folder,
        harness.fresh_database("postgres", None, Path(folder), admin_url=args.pg) as db,
    ):
        asyncio.run(_migrate(db.url))
        seeded = seed(db.url, args.ended, args.events)
        result = asyncio.run(measure(db.url, args))
        settings = db.settings
    record = {
        "benchmark": "prune", "ended": args.ended, "events_per_job": args.events,
        "concurrency": args.concurrency, "batch": args.batch, "pause": args.pause,
        "seed_seconds": round(seeded, 1), "postgres": settings, "load": os.getloadavg(),
        **result, "machine": harness.machine(),
    }  # fmt: skip
    path = harness.write_results("prune", record)
    if args.json:
        print(json.dumps(record, indent=2))
        return
    r = result["jobs_per_s"]
    print(
        f"{args.ended} ended jobs, {args.events} events each; worker concurrency "
        f"{args.concurrency}; prune batch {args.batch}, pause {args.pause} s"
    )
    print(
        f"throughput (jobs/s): before {r['before']}, during prune {r['during']}, "
        f"after {r['after']}: during / baseline = {result['ratio']}"
    )
    print(f"prune: {result['prune']['jobs']} jobs in {result['prune']['seconds']} s "
          f"({result['prune']['jobs_per_s']} jobs/s); results in {path}")  # fmt: skip


async def _migrate(url: str) -> None:
    app = App(url)
    await app.open_store()
    await app.close()


if __name__ == "__main__":
    main()
