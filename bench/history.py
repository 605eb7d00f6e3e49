"""Do the store's hot operations stay flat as history grows?

    python -m bench.history [--backend postgres|sqlite|all] [--sizes 0,10000,100000,1000000]
                            [--parked 100000] [--samples 200] [--rounds 3] [--leases 20]
                            [--dir DIR] [--pg-url URL]

For each size, a fresh database (PostgreSQL: ``CREATE DATABASE bench_aetheris_<random>``,
dropped afterwards; SQLite: a new file) is migrated by the store, filled in bulk SQL with that
many ended jobs plus ``--parked`` parked ones, five events each (``bench.history_fill``), and
ANALYZEd. Then, through the store's own API (``aetheris.store.create_store``), in this order:

* **start**: ``create_job`` of a new job (a pending job and its ``job_created`` event);
* **claim**: ``claim`` right after each start, which takes that fresh pending job (having
  looked for expired leases and due timers first, as every claim does);
* **heartbeat**: ``heartbeat`` of a worker holding ``--leases`` of those claimed jobs;
* **park**: ``commit`` of each other claimed job parking to wait for a signal (which also
  checks that what it waits for is not already there);
* **list first** / **list later**: ``list_jobs(limit=50)``, the first page of ``jobs list``,
  and the page after a cursor halfway down the whole listing (keyset paging);
* **list parked**: the first page of ``list_jobs(status="parked", limit=50)``;
* **signal**: ``send_signal`` to a parked job that waits for it, which wakes it (checked after:
  every one is pending).

Every database is filled first; then each is measured in turn, ``--rounds`` times round the
sizes, every other round from the largest (so that whatever else loads the machine weighs
alike on every size). Each operation
is timed ``--samples`` times in all (after 10 untimed runs per round) with
``time.perf_counter()`` around the awaited call. The table gives median and p99 per size in
µs and the ratio of each median to the first size's (0: the empty history; the target is at
most 1.5x). Everything goes to ``bench/results/history-<UTC date time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import psycopg

from aetheris.agents import new_job_id
from aetheris.journal import EventDraft, EventType
from aetheris.models import Job, JobStatus, NewJob, ParkReason
from aetheris.store import create_store
from aetheris.store.port import ClaimFilter, Commit, Head, Lease, StatusWrite, Store
from bench.harness import Record, fresh_database, machine, percentile, version, write_results
from bench.history_fill import PARKED_WAIT, fill
from bench.peers import common

AGENT = "bench_history"
WHERE = ClaimFilter(agents=[AGENT])
OWNER = "bench-history-worker"
LEASE_S = 7_200.0  # the claimed jobs stay running, unexpired, until the run ends
WARMUP = 10
PAGE = 50
OPS = ("start", "claim", "heartbeat", "park", "list first", "list later", "list parked", "signal")
TARGET = 1.5


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


async def timed(samples: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    """``call(i)`` for i in 0..WARMUP+samples-1; the seconds of the last ``samples`` calls."""
    out: list[float] = []
    for i in range(WARMUP + samples):
        begin = time.perf_counter()
        await call(i)
        if i >= WARMUP:
            out.append(time.perf_counter() - begin)
    return out


async def measure(store: Store, url: str, samples: int, leases: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    held: list[Lease] = []
    claimed: list[Job] = []
    claim_s: list[float] = []

    async def start(i: int) -> None:
        await store.create_job(NewJob(new_job_id(), AGENT, {"n": i}))
        begin = time.perf_counter()
        claim = await store.claim(OWNER, LEASE_S, WHERE)
        if i >= WARMUP:
            claim_s.append(time.perf_counter() - begin)
        if claim is None or claim.job.agent != AGENT:
            raise SystemExit(f"claim {i} took {claim and claim.job.id}, not the fresh job")
        held.append(claim.lease)
        claimed.append(claim.job)

    say("phase: start + claim")
    total = await timed(samples + leases, start)
    found["start"] = [s - c for s, c in zip(total, claim_s, strict=True)][-samples:]
    found["claim"] = claim_s[-samples:]  # the first ones gave the heartbeat its leases
    say("phase: heartbeat")
    mine = held[:leases]

    async def beat(_: int) -> None:
        lost = (await store.heartbeat(mine, LEASE_S)).lost
        if lost:
            raise SystemExit(f"heartbeat lost leases {sorted(lost)}")

    found["heartbeat"] = await timed(samples, beat)
    say("phase: park")
    parking = held[leases:]

    async def park(i: int) -> None:
        job = claimed[leases + i]
        wait = StatusWrite(JobStatus.PARKED, park_reason=ParkReason.SIGNAL, wake_on=PARKED_WAIT)
        event = EventDraft(EventType.JOB_PARKED, {"reason": "signal"})
        head = Head(job.event_count, job.head_hash)
        await store.commit(parking[i], Commit([event], status=wait, head=head))

    found["park"] = await timed(len(parking) - WARMUP, park)
    say("phase: jobs list")
    cursor = middle_cursor(url)
    found["list first"] = await timed(samples, lambda _: store.list_jobs(limit=PAGE))
    found["list later"] = await timed(samples, lambda _: store.list_jobs(limit=PAGE, after=cursor))
    parked = JobStatus.PARKED
    found["list parked"] = await timed(
        samples, lambda _: store.list_jobs(status=parked, limit=PAGE)
    )
    say("phase: signal")
    targets = parked_jobs(url, WARMUP + samples)

    async def signal(i: int) -> None:
        await store.send_signal(targets[i], "approve", {"ok": True}, uuid.uuid4().hex, "bench")

    found["signal"] = await timed(samples, signal)
    for job_id in targets:
        job = await store.get_job(job_id)
        if job is None or job.status is not JobStatus.PENDING:
            raise SystemExit(f"the signal did not wake {job_id}: {job and job.status}")
    return found


def _query(url: str, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    if url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite://").split("?", 1)[0])
        try:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()
    with psycopg.connect(url.split("?", 1)[0]) as pg:
        return list(pg.execute(sql, params).fetchall())


def middle_cursor(url: str) -> tuple[float, str]:
    """The ``(created_at, id)`` halfway down the listing, newest first (not timed)."""
    (total,) = _query(url, "SELECT count(*) FROM jobs", ())[0]
    sql = "SELECT created_at, id FROM jobs ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET %s"
    at, job_id = _query(url, sql, (total // 2,))[0]
    return float(at), str(job_id)


def parked_jobs(url: str, n: int) -> list[str]:
    """``n`` parked jobs spread over the history (not timed)."""
    sql = (
        "SELECT id FROM jobs WHERE status = 'parked' AND wake_on = %s AND agent LIKE 'history_a%%'"
        " ORDER BY id"
    )
    ids = [row[0] for row in _query(url, sql, (PARKED_WAIT,))]
    if len(ids) < n:
        raise SystemExit(f"--parked must be at least {n} (--samples + {WARMUP}): got {len(ids)}")
    stride = len(ids) / n
    return [ids[int(i * stride)] for i in range(n)]


async def one_backend(backend: str, args: argparse.Namespace, workdir: Path) -> list[Record]:
    """Fill a database per size, then measure them round-robin (``--rounds``; every other
    round backwards), so that what else runs on the machine weighs alike on every size."""
    runs: list[Record] = []
    with contextlib.ExitStack() as stack:
        urls = []
        for size in args.sizes:
            say(f"{backend}: {size:,} ended + {args.parked:,} parked jobs")
            db = stack.enter_context(
                fresh_database(backend, None, workdir, f"history{size}", args.pg_url)
            )
            store = create_store(db.url)
            await store.open()  # migrates
            await store.close()
            progress = partial(lambda s, line: say(f"{backend} {s:,}: {line}"), size)
            seconds = fill(db.url, size, args.parked, progress)
            say(f"{backend} {size:,}: filled in {seconds:.0f} s")
            urls.append(db.url)
            runs.append({"backend": backend, "size": size, "fill_s": seconds, "load": []})
            runs[-1]["samples"] = {op: [] for op in OPS}
        stores = [create_store(url) for url in urls]
        for store in stores:
            await store.open()
        try:
            for turn in range(args.rounds):
                order = list(zip(runs, stores, urls, strict=True))
                for run, store, url in order if turn % 2 == 0 else reversed(order):
                    say(f"{backend} {run['size']:,}: round {turn + 1} of {args.rounds}")
                    found = await measure(store, url, args.samples // args.rounds, args.leases)
                    for op, samples in found.items():
                        run["samples"][op].extend(samples)
                    run["load"].append(os.getloadavg())
        finally:
            for store in stores:
                await store.close()
    return runs


def stats(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples) * 1e6, percentile(samples, 99) * 1e6


def table(runs: list[Record]) -> list[str]:
    lines = ["| backend | operation | ended jobs | median µs | p99 µs | median / empty |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for backend in dict.fromkeys(r["backend"] for r in runs):
        mine = [r for r in runs if r["backend"] == backend]
        for op in OPS:
            base = stats(mine[0]["samples"][op])[0]
            for run in mine:
                median, p99 = stats(run["samples"][op])
                ratio = median / base
                flag = "" if ratio <= TARGET else " over"
                lines.append(
                    f"| {backend} | {op} | {run['size']:,} | {median:,.0f} | {p99:,.0f} "
                    f"| {ratio:.2f}{flag} |"
                )
    return lines


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--backend", choices=("postgres", "sqlite", "all"), default="postgres")
    parser.add_argument("--sizes", default="0,10000,100000,1000000")
    parser.add_argument("--parked", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--leases", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--pg-url", default=os.environ.get("AETHERIS_TEST_POSTGRES_URL", ""))
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated job counts, got {args.sizes!r}")
    if any(s < 0 for s in args.sizes) or args.parked < 0:
        parser.error("--sizes and --parked must not be negative")
    if args.rounds < 1 or args.samples < args.rounds:
        parser.error("--rounds must be at least 1 and --samples at least --rounds")
    if not 1 <= args.leases <= WARMUP + args.samples // args.rounds:
        parser.error("--leases must be between 1 and --samples / --rounds + 10")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    backends = ["postgres", "sqlite"] if args.backend == "all" else [args.backend]
    runs: list[Record] = []
    started = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-history-", dir=args.dir) as tmp:
        for backend in backends:
            runs += asyncio.run(one_backend(backend, args, Path(tmp)))
        info = machine(Path(tmp))
    lines = table(runs)
    print("\n".join(lines))
    document = {
        "version": version(),
        "machine": info,
        "argv": sys.argv[1:],
        "load_at_start": started,
        "load_at_end": os.getloadavg(),
        "postgres": common.postgres_settings() if "postgres" in backends else None,
        "runs": runs,
        "table": lines,
    }
    say(f"results: {write_results('history', document)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
