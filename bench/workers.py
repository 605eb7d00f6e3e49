"""``python -m bench.workers``: how many worker processes one PostgreSQL server carries.

Batch mode (default): for each count in ``--workers 1,2,4,8``, on a fresh database, enqueue
``--jobs`` jobs of ``--steps`` durable steps held back (``run_at`` far ahead), ``ANALYZE``,
start the worker processes, wait until they all serve, then release every job at once
(``run_at = now``) and time the queue's drain. Reported: throughput (jobs/s from release to the
last job's end), the time from ``pending`` to claimed (p50, p99: the journal's ``job_claimed``
time minus the release, so queueing behind the backlog included), claims per worker, jobs
claimed twice (from the journal: must be 0), the server's wait events and ungranted locks
(sampled every 50 ms), rolled-back transactions and deadlocks, and the CPU the machine, the
server and the workers used.

Rate mode (``--rate R``): the workers serve an empty queue and jobs arrive at ``R`` per second
for ``--duration`` seconds; the time from creation to claim is the wake-up latency (LISTEN /
NOTIFY, else polling).

Results go to ``bench/results/workers-<time>.json``; progress to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from aetheris.agents import new_job_id
from aetheris.models import NewJob
from aetheris.store import create_store
from aetheris.store.port import Store
from aetheris.store.sql.rows import event_from
from bench.harness import (
    Process,
    fresh_database,
    machine,
    percentile,
    serving,
    spawn_worker,
    stop_workers,
    write_results,
)
from bench.peers import common
from bench.workers_probe import CpuClock, Sampler, counter_deltas, database_counters, load_average

HOLD_S = 10**7  # held jobs wait this far ahead until released
AGENT = "w2_job"
EVENT_COLUMNS = ("seq", "body", "prev_hash", "hash", "anchor_key", "anchor_sig")  # event_from()
CLAIMS = """
SELECT e.job_id, e.seq, e.body, e.prev_hash, e.hash, e.anchor_key, e.anchor_sig, j.created_at
FROM events e JOIN jobs j ON j.id = e.job_id WHERE e.type = 'job_claimed'
"""


def main() -> None:
    args = parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    runs = []
    print(f"load average before: {load_average()}", flush=True)
    for n in counts:
        run = asyncio.run(one_run(args, n))
        runs.append(run)
        print(line(run), flush=True)
    document = {
        "settings": vars(args),
        "machine": machine(),
        "runs": runs,
        "load_average_after": load_average(),
    }
    print(f"load average after: {load_average()}")
    print(f"results: {write_results('workers', document)}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per run (batch mode)")
    parser.add_argument("--workers", default="1,2,4,8", help="worker process counts, one run each")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per worker")
    parser.add_argument("--steps", type=int, default=1, help="durable steps per job")
    parser.add_argument("--rate", type=float, help="jobs per second arriving (rate mode)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of arrivals")
    parser.add_argument("--pool-max", type=int, help="each worker's --pool-max")
    parser.add_argument("--pg-url", default=common.PG_ADMIN_URL, help="creates the databases")
    parser.add_argument("--dir", type=Path, help="where worker logs go (default: a temp dir)")
    return parser.parse_args()


async def one_run(args: argparse.Namespace, n: int) -> dict[str, Any]:
    with (
        common.workdir(args.dir) as workdir,
        fresh_database("postgres", None, workdir, admin_url=args.pg_url) as db,
    ):
        store = create_store(db.url)
        await store.open()
        try:
            if args.rate is None:
                await enqueue(store, args.jobs, args.steps, time.time() + HOLD_S)
                analyze(db.url)
            extra = ["--pool-max", str(args.pool_max)] if args.pool_max else []
            procs = await start_workers(db.url, workdir, n, args.concurrency, extra)
            try:
                drained = await drain(args, db.url, store, procs)
            finally:
                await stop_workers(procs)
            return {"workers": n, **drained, **journal(db.url, drained["released"])}
        finally:
            await store.close()


async def enqueue(store: Store, jobs: int, steps: int, run_at: float | None) -> None:
    """``jobs`` jobs of ``AGENT``, 50 at a time; progress every 2,000."""
    began = time.perf_counter()
    for start in range(0, jobs, 50):
        batch = range(start, min(start + 50, jobs))
        await asyncio.gather(*(store.create_job(new_job(steps, run_at)) for _ in batch))
        if (start + 50) % 2000 == 0:
            print(f"  enqueued {start + 50:,}/{jobs:,}", flush=True)
    print(f"  enqueued {jobs:,} in {time.perf_counter() - began:.1f} s", flush=True)


def new_job(steps: int, run_at: float | None) -> NewJob:
    return NewJob(id=new_job_id(), agent=AGENT, input={"steps": steps}, run_at=run_at)


def analyze(url: str) -> None:
    """Fresh statistics after the bulk load, as an operator would run them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


async def start_workers(
    url: str, workdir: Path, n: int, concurrency: int, extra: list[str]
) -> list[Process]:
    procs = [await spawn_worker(url, workdir, f"w{i}", concurrency, *extra) for i in range(n)]
    await asyncio.gather(*(serving(workdir, f"w{i}", p) for i, p in enumerate(procs)))
    return procs


async def drain(
    args: argparse.Namespace, url: str, store: Store, procs: list[Process]
) -> dict[str, Any]:
    """Release (or feed) the jobs and wait until all have ended, sampling the server."""
    stop = asyncio.Event()
    sampler = Sampler(url)
    sampling = asyncio.create_task(sampler.run(stop))
    counters, cpu = database_counters(url), CpuClock.read([p.pid for p in procs], url)
    released = time.time()
    if args.rate is None:
        total = args.jobs
        release(url, released)
    else:
        total = round(args.rate * args.duration)
        feeding = asyncio.create_task(feed(store, args.rate, total, args.steps))
    ended_at = await watch(url, total, released)
    if args.rate is not None:
        await feeding
    used = CpuClock.read([p.pid for p in procs], url).since(cpu)
    stop.set()
    await sampling
    return {
        "jobs": total,
        "released": released,
        "seconds": round(ended_at - released, 3),
        "jobs_per_s": round(total / max(ended_at - released, 1e-9), 1),
        "server": sampler.summary(),
        "transactions": counter_deltas(counters, database_counters(url)),
        "cpu": used,
        "load_average": load_average(),
    }


def release(url: str, at: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET run_at = %s WHERE status = 'pending'", (at,))


async def feed(store: Store, rate: float, total: int, steps: int) -> None:
    """``total`` jobs at ``rate`` per second, each created on its tick."""
    began = time.monotonic()
    for i in range(total):
        await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
        await store.create_job(new_job(steps, None))


async def watch(url: str, total: int, began: float) -> float:
    """Poll the count of ended jobs, printing progress each second; when the last ended."""
    query = "SELECT count(*), max(updated_at) FROM jobs WHERE status = 'succeeded'"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        shown = time.monotonic()
        while True:
            row = await (await conn.execute(query)).fetchone()
            assert row is not None
            done, last = int(row[0]), row[1]
            if done >= total:
                return float(last)
            if time.monotonic() - shown >= 1.0:
                shown = time.monotonic()
                rate = done / max(time.time() - began, 1e-9)
                print(f"  {done:,}/{total:,} ended, {rate:,.0f} jobs/s", flush=True)
            await asyncio.sleep(0.1)


def journal(url: str, released: float) -> dict[str, Any]:
    """From the journal: claims per job (never two), pending-to-claimed times, per worker."""
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute(CLAIMS).fetchall()
    per_job: Counter[str] = Counter()
    per_owner: Counter[str] = Counter()
    waits = []
    for row in rows:
        event = event_from(row["job_id"], [row[column] for column in EVENT_COLUMNS])
        per_job[event.job_id] += 1
        per_owner[event.data["owner"]] += 1
        waits.append(event.at - max(released, float(row["created_at"])))
    twice = sum(1 for count in per_job.values() if count > 1)
    return {
        "claims": len(rows),
        "claimed_twice": twice,
        "claims_per_worker": sorted(per_owner.values(), reverse=True),
        "pending_to_claimed_ms": {
            "p50": round(percentile(waits, 50) * 1000, 1),
            "p99": round(percentile(waits, 99) * 1000, 1),
            "max": round(max(waits) * 1000, 1),
        },
    }


def line(run: dict[str, Any]) -> str:
    waits = run["pending_to_claimed_ms"]
    server, cpu = run["server"], run["cpu"]
    top = ", ".join(f"{k} {v:.0%}" for k, v in list(server["wait_events"].items())[:4])
    return (
        f"{run['workers']} workers: {run['jobs']:,} jobs in {run['seconds']:.1f} s = "
        f"{run['jobs_per_s']:,.0f} jobs/s; pending->claimed p50 {waits['p50']:,.0f} ms, "
        f"p99 {waits['p99']:,.0f} ms; claimed twice {run['claimed_twice']}; "
        f"commits/job {run['transactions']['xact_commit'] / run['jobs']:.1f}, "
        f"rollbacks {run['transactions']['xact_rollback']}, "
        f"deadlocks {run['transactions']['deadlocks']}; lock-wait samples "
        f"{server['lock_wait_samples']}/{server['samples']}; active sessions "
        f"{server['mean_active_sessions']}; waits: {top}; cores: machine "
        f"{cpu['machine_cores_busy']}, all postgres {cpu['postgres_cores']}, the workers' "
        f"sessions {cpu['worker_sessions_cores']}, workers {cpu['worker_cores']}; "
        f"load {run['load_average']}"
    )


if __name__ == "__main__":
    main()
