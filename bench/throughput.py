"""W2: throughput. All jobs started first, then real worker processes run them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from aetheris import App, Job, JobStatus
from aetheris.journal import EventType
from bench import core_app
from bench.common import Case, Detail, Process, Record, expect, spawn_worker, stop_workers
from bench.databases import Database

W2_JOBS = 200
W2_STEPS = 10
W2_CONCURRENCY = 16
W2_TIMEOUT = 600.0
W2_POLL = 0.1


async def w2_run(case: Case, db: Database, workdir: Path, detail: Detail) -> Record:
    """Start all jobs, then spawn the workers and wait until every job has succeeded."""
    jobs, steps = case.params["jobs"], case.params["steps"]
    async with core_app.build_app(db.url) as app:
        enqueue_s = await enqueue(app, jobs, steps)
        spawned = time.time()
        procs = [
            await spawn_worker(db.url, workdir, f"worker-{i}", case.params["concurrency"])
            for i in range(case.params["workers"])
        ]
        try:
            seen = await wait_all_succeeded(app, jobs, procs, detail)
        finally:
            exit_codes = await stop_workers(procs)
        timing = await journal_timing(app, jobs, steps)
    window = timing["window_s"]
    return {
        "jobs_per_s": jobs / window,
        "steps_per_s": jobs * steps / window,
        **timing,
        "startup_s": timing["first_claim_at"] - spawned,
        "all_registered_s": await db.last_registration() - spawned,
        "observed_wall_s": seen - spawned,
        "enqueue_s": enqueue_s,
        "worker_exit_codes": exit_codes,
    }


async def enqueue(app: App, jobs: int, steps: int) -> float:
    began = time.perf_counter()
    for _ in range(jobs):
        await app.start("w2_job", {"steps": steps})
    return time.perf_counter() - began


async def wait_all_succeeded(
    app: App, jobs: int, procs: Sequence[Process], detail: Detail
) -> float:
    """Poll the store until all ``jobs`` succeeded; return the wall-clock time it was seen."""
    deadline = time.monotonic() + W2_TIMEOUT
    while True:
        counts = Counter(job.status for job in await app.list_jobs(limit=jobs + 1))
        detail(counts[JobStatus.SUCCEEDED], jobs)
        if counts[JobStatus.SUCCEEDED] == jobs:
            return time.time()
        stuck = {s: c for s, c in counts.items() if s.terminal or s is JobStatus.PARKED}
        stuck.pop(JobStatus.SUCCEEDED, None)
        expect(not stuck, f"jobs ended badly: {stuck}")
        dead = [p.returncode for p in procs if p.returncode is not None]
        expect(not dead, f"a worker exited early with code {dead}; see worker-*.log")
        expect(time.monotonic() < deadline, f"not done after {W2_TIMEOUT}s: {dict(counts)}")
        await asyncio.sleep(W2_POLL)


async def journal_timing(app: App, jobs: int, steps: int) -> Record:
    """The processing window from the journal: first ``job_claimed`` to last ``job_succeeded``."""
    store = await app.open_store()
    listed = await app.list_jobs(limit=jobs + 1)
    claims: list[tuple[float, str]] = []
    done: list[float] = []
    for job in listed:
        _check_w2_job(job, steps)
        events = await store.events(job.id)
        claims += [(e.at, e.data["owner"]) for e in events if e.type is EventType.JOB_CLAIMED]
        done += [e.at for e in events if e.type is EventType.JOB_SUCCEEDED]
    expect(len(done) == jobs, f"{len(done)} job_succeeded events for {jobs} jobs")
    first_by_owner = _first_claim_by_owner(claims)
    first = min(at for at, _ in claims)
    return {
        "window_s": max(done) - first,
        "first_claim_at": first,
        "start_skew_s": max(first_by_owner.values()) - first,
        "claims": len(claims),
        "jobs_per_worker": sorted(Counter(owner for _, owner in claims).values(), reverse=True),
    }


def _check_w2_job(job: Job, steps: int) -> None:
    expect(job.status is JobStatus.SUCCEEDED, f"job {job.id} is {job.status}")
    expect(job.result == steps, f"job {job.id} returned {job.result!r}, expected {steps}")


def _first_claim_by_owner(claims: Sequence[tuple[float, str]]) -> dict[str, float]:
    first: dict[str, float] = {}
    for at, owner in claims:
        first[owner] = min(at, first.get(owner, at))
    return first
