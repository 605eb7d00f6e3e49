"""W5: journal growth. Per-step cost as one job's journal grows, and resuming a long journal.

One job of ``n`` sequential ``ctx.step`` calls (async body) runs under one worker in this
process; the agent times each step into ``core_app.STEP_TIMES``. After step ``n`` it notes the
time (``core_app.PASSED``) and blocks inside a final step. The worker is then stopped with grace
0, which hands the job back (pending); a fresh App and worker in this process claim it and
replay the ``n`` recorded steps. **resume s** is from that claim (the ``job_claimed`` event's
``at``, this process's clock) to the moment the replaying agent passes step ``n`` again.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence

from aetheris import JobStatus
from aetheris.testing import running_worker
from bench import core_app
from bench.common import Case, Detail, Record, claims, expect
from bench.databases import Database

W5_STEPS = 10_000
W5_TIMEOUT = 600.0
W5_WINDOWS = ((1, 10), (991, 1010), (9991, 10_000))
W5_BUCKET = 1000


def window_median_us(times: Sequence[float], first: int, last: int) -> float:
    """Median µs/step over steps ``first``..``last`` (1-based, inclusive)."""
    return statistics.median(times[first - 1 : last]) * 1e6


async def wait_passed(count: int, detail: Detail, n: int) -> None:
    """Wait until the agent has passed its last counted step ``count`` times in all."""
    deadline = time.monotonic() + W5_TIMEOUT
    while len(core_app.PASSED) < count:
        detail(len(core_app.STEP_TIMES) - (count - 1) * n, n)
        expect(time.monotonic() < deadline, f"the agent did not pass step {n} in {W5_TIMEOUT}s")
        await asyncio.sleep(0.05)


async def w5_run(case: Case, db: Database, detail: Detail) -> Record:
    n = case.params["steps"]
    for marks in (core_app.STEP_TIMES, core_app.ENTERED, core_app.PASSED):
        marks.clear()
    async with core_app.build_app(db.url) as app:
        async with running_worker(app, concurrency=1, grace=0.0):
            handle = await app.start("w5_growth", {"n": n})
            await wait_passed(1, detail, n)
        job = await handle.job()
    expect(job.status is JobStatus.PENDING, f"stopped job {job.id} is {job.status}")
    expect(job.event_count == n + 3, f"{job.event_count} events, expected {n} steps + 3")
    # A fresh App and worker, as a new process would have: nothing cached.
    async with core_app.build_app(db.url) as fresh:
        async with running_worker(fresh, concurrency=1, grace=0.0):
            await wait_passed(2, detail, n)
        events = await (await fresh.open_store()).events(job.id)
    expect(len(events) == n + 5, f"{len(events)} events after the resume, expected {n + 5}")
    return _record(n, claims(events)[1].at)


def _record(n: int, claim_at: float) -> Record:
    live, replayed = core_app.STEP_TIMES[:n], core_app.STEP_TIMES[n:]
    expect(len(live) == n and len(replayed) == n, f"{len(core_app.STEP_TIMES)} step times")
    expect(len(core_app.ENTERED) == 2, f"the agent was entered {len(core_app.ENTERED)} times")
    windows = {f"{a}-{b}": window_median_us(live, a, b) for a, b in W5_WINDOWS}
    first, last = windows[_key(W5_WINDOWS[0])], windows[_key(W5_WINDOWS[-1])]
    buckets = [statistics.median(live[i : i + W5_BUCKET]) * 1e6 for i in range(0, n, W5_BUCKET)]
    resumed_at, passed_at = core_app.ENTERED[1], core_app.PASSED[1]
    return {
        "windows_us": windows,
        "first_us": first,
        "around_1k_us": windows[_key(W5_WINDOWS[1])],
        "last_us": last,
        "last_over_first": last / first,
        "bucket_median_us": buckets,
        "first_bucket_us": buckets[0],
        "last_bucket_us": buckets[-1],
        "last_over_first_bucket": buckets[-1] / buckets[0],
        "live_mean_us": statistics.fmean(live) * 1e6,
        "live_total_s": sum(live),
        "replay_median_us": statistics.median(replayed) * 1e6,
        "resume_s": passed_at - claim_at,
        "resume_load_s": resumed_at - claim_at,
        "resume_replay_s": passed_at - resumed_at,
    }


def _key(window: tuple[int, int]) -> str:
    return f"{window[0]}-{window[1]}"
