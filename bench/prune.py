"""``python -m bench.prune``: what pruning ended jobs costs a running system on PostgreSQL.

A fresh database is seeded with ``--ended`` jobs that ended 40 days ago (each with
``--events`` journal events of ~200 bytes and one ledger row, written with set-based SQL),
then a worker (in this process, ``--concurrency``) runs jobs of three durable steps from a
backlog kept topped up, flat out. Its throughput (jobs ended per second) is measured in
windows of ``--seconds``, alternately without and with a prune running beside it in the same
process, as a worker's own pruning runs (``prune_ended`` on a store of its own, ``--batch``
jobs per transaction, ``--pause`` seconds between batches, deleting jobs that ended more than
30 days ago), until every seeded job is pruned. The figure is the mean throughput of the
windows with the prune over that of the windows without.
``--json`` prints the record; it is also written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from aetheris import App, Context
from aetheris.store.pruning import Pruned
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
        while started - done[0] < backlog and not stop.is_set():
            await app.start("bench_prune_load", {"n": started})
            started += 1
        await asyncio.sleep(0.01)


async def window(done: list[int], seconds: float) -> float:
    """Jobs ended per second over the next ``seconds``."""
    first, began = done[0], time.perf_counter()
    await asyncio.sleep(seconds)
    return (done[0] - first) / (time.perf_counter() - began)


class Pruning:
    """``aetheris db prune``'s loop in this process (as a worker prunes itself), on a store of
    its own, that runs only while :attr:`gate` is set: batch, pause, batch..."""

    def __init__(self, url: str, batch: int, pause: float) -> None:
        self.app, self.batch, self.pause = App(url), batch, pause
        self.gate, self.total, self.busy = asyncio.Event(), Pruned(), 0.0

    async def run(self) -> None:
        store = await self.app.open_store()
        cutoff = time.time() - 30 * 86400
        while True:
            await self.gate.wait()
            began = time.perf_counter()
            done = await store.prune_ended(cutoff, limit=self.batch)
            self.busy += time.perf_counter() - began
            self.total += done
            if done.jobs < self.batch:
                return
            await asyncio.sleep(self.pause)


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Windows of ``--seconds`` without and with the prune, alternately (ABBA...), until the
    prune is done or ``--rounds`` rounds ran: drift in the machine's load falls on both."""
    app, done = build(url)
    stop = asyncio.Event()
    pruning = Pruning(url, args.batch, args.pause)
    without: list[float] = []
    during: list[float] = []
    async with running_worker(app, concurrency=args.concurrency):
        feeder = asyncio.create_task(feed(app, done, stop, args.concurrency * 4))
        pruner = asyncio.create_task(pruning.run())
        await window(done, args.warmup)
        began = time.perf_counter()
        for round_ in range(args.rounds):
            for prune_now in (False, True) if round_ % 2 == 0 else (True, False):
                if prune_now and pruner.done():
                    continue
                (pruning.gate.set if prune_now else pruning.gate.clear)()
                (during if prune_now else without).append(await window(done, args.seconds))
                print(
                    f"{time.perf_counter() - began:6.1f} s: {'with' if prune_now else 'without'}"
                    f" prune {(during if prune_now else without)[-1]:.1f} jobs/s, pruned "
                    f"{pruning.total.jobs}",
                    file=sys.stderr,
                    flush=True,
                )
            if pruner.done() and len(without) >= 2:
                break
        pruning.gate.clear()
        took = time.perf_counter() - began
        stop.set()
        await feeder
        pruner.cancel()
        await asyncio.gather(pruner, return_exceptions=True)
    await app.close()
    await pruning.app.close()
    base, busy = statistics.mean(without), statistics.mean(during)
    return {
        "jobs_per_s": {"without": round(base, 1), "during": round(busy, 1),
                       "windows_without": [round(x, 1) for x in without],
                       "windows_during": [round(x, 1) for x in during]},
        "ratio": round(busy / base, 3),
        "prune": {"jobs": pruning.total.jobs, "rows": dict(pruning.total.rows),
                  "seconds_in_batches": round(pruning.busy, 1), "finished": pruner.done(),
                  "jobs_per_s_of_prune_time": round(
                      pruning.total.jobs / max(1e-9, len(during) * args.seconds), 1)},
        "seconds": round(took, 1),
    }  # fmt: skip


def seed(url: str, n: int, events: int) -> float:
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SEED.split(";"):
            if statement.strip():
                conn.execute(statement, {"n": n, "events": events})
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.prune", description=__doc__)
    parser.add_argument("--ended", type=int, default=100_000, help="ended jobs to prune")
    parser.add_argument("--events", type=int, default=8, help="events per ended job")
    parser.add_argument("--concurrency", type=int, default=10, help="the worker's")
    parser.add_argument("--batch", type=int, default=500, help="jobs per prune transaction")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between batches")
    parser.add_argument("--seconds", type=float, default=10.0, help="each window's length")
    parser.add_argument("--rounds", type=int, default=20, help="at most, each two windows")
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
        f"throughput (jobs/s, mean of {len(r['windows_without'])} and "
        f"{len(r['windows_during'])} windows of {args.seconds} s): without prune {r['without']}, "
        f"during prune {r['during']}: ratio {result['ratio']}"
    )
    p = result["prune"]
    print(f"prune: {p['jobs']} jobs ({p['jobs_per_s_of_prune_time']} jobs/s of prune windows), "
          f"finished: {p['finished']}; load {os.getloadavg()}; results in {path}")  # fmt: skip


async def _migrate(url: str) -> None:
    app = App(url)
    await app.open_store()
    await app.close()


if __name__ == "__main__":
    main()
