"""W1: step overhead. One job of n sequential durable operations, one worker in this process."""

from __future__ import annotations

import time

from aetheris.testing import running_worker
from bench import core_app
from bench.common import Case, Record, expect
from bench.databases import Database

W1_STEPS = 1000
W1_TIMEOUT = 600.0


async def w1_baseline(case: Case) -> Record:
    """The agent's loop with the runtime taken out: call the body directly."""
    n = case.params["n"]
    value = 0
    began = time.perf_counter()
    if case.params["body"] == "sync":
        for i in range(n):
            value = core_app.inc(i)
    else:
        for i in range(n):
            value = await core_app.ainc(i)
    span = time.perf_counter() - began
    expect(value == n, f"baseline returned {value}")
    return {"us_per_step": span / n * 1e6, "span_s": span}


async def w1_job(case: Case, db: Database) -> Record:
    """One job of n sequential steps (or tool calls), one in-process worker, a fresh database."""
    n = case.params["input"]["n"]
    app = core_app.build_app(db.url)
    core_app.MARKS.clear()
    async with app, running_worker(app, concurrency=1):
        handle = await app.start(case.params["agent"], case.params["input"])
        value = await handle.result(timeout=W1_TIMEOUT)
        job = await handle.job()
    expect(value == n, f"job {job.id} returned {value!r}, expected {n}")
    expect(len(core_app.MARKS) == 1, f"expected one timing mark, got {core_app.MARKS}")
    span = core_app.MARKS[0]
    return {
        "us_per_step": span / n * 1e6,
        "span_s": span,
        "job_wall_s": job.updated_at - job.created_at,
        "events": job.event_count,
        "commits_per_step": case.params["commits_per_step"],
    }
