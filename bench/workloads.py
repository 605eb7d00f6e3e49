"""The Aetheris workloads, each a function run on a fresh database the caller provides.

``python -m bench.core`` (the durable core: W1, W2, W5, W3-lite) and ``bench.peers.aetheris``
(the Aetheris entry of ``python -m bench``: the peer workloads W1-W5 of ``bench.peers.common``)
run these same functions, with their own sizes, and turn the records they return into their own
tables and rows. The agents are in ``bench.app``. What each figure means: bench/README.md and
the section Aetheris of bench/peers/README.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aetheris import App, Job, JobStatus
from aetheris.journal import Event, EventType
from aetheris.testing import running_worker
from bench import app as agents
from bench.harness import (
    KILL_ENV,
    LINES_ENV,
    Database,
    Detail,
    Process,
    Record,
    claims,
    exists,
    expect,
    last_of,
    read,
    serving,
    spawn_worker,
    stop_workers,
    stored_bytes,
    until,
)
from bench.peers import common

JOB_TIMEOUT = 900.0
W2_POLL = 0.1
W3_TIMEOUT = 120.0
W3_STEPS_BEFORE_KILL = 10
W3_VARIANTS = {  # the peer W3's variants: (agent mode, kill point)
    "step": ("step", f"inside:{common.W3_KILL_AT}"),
    "between": ("step", f"before:{common.W3_KILL_AT + 1}"),
    "at_most_once": ("at_most_once", f"inside:{common.W3_KILL_AT}"),
    "at_most_once+reconcile": ("reconcile", f"inside:{common.W3_KILL_AT}"),
}
W5_WINDOWS = ((1, 10), (991, 1_010), (9_991, 10_000))  # steps, 1-based, inclusive
W5_BUCKET = 1_000


def _owner(event: Event) -> str:
    return str(event.data.get("owner"))


# -- W1: step overhead --------------------------------------------------------------------------


async def w1_baseline(n: int, body: str) -> Record:
    """The agent's loop with the runtime taken out: call the body directly."""
    value = 0
    began = time.perf_counter()
    if body == "sync":
        for i in range(n):
            value = agents.inc(i)
    else:
        for i in range(n):
            value = await agents.ainc(i)
    span = time.perf_counter() - began
    expect(value == n, f"baseline returned {value}")
    return {"us_per_step": span / n * 1e6, "span_s": span}


async def w1_job(url: str, agent: str, data: dict[str, Any]) -> Record:
    """One job of ``data["n"]`` sequential steps (or tool calls), one worker in this process."""
    n = data["n"]
    app = agents.build_app(url)
    agents.MARKS.clear()
    async with app, running_worker(app, concurrency=1):
        handle = await app.start(agent, data)
        value = await handle.result(timeout=JOB_TIMEOUT)
        job = await handle.job()
    expect(value == n, f"job {job.id} returned {value!r}, expected {n}")
    expect(len(agents.MARKS) == 1, f"expected one timing mark, got {agents.MARKS}")
    span = agents.MARKS[0]
    return {
        "us_per_step": span / n * 1e6,
        "span_s": span,
        "job_wall_s": job.updated_at - job.created_at,
        "events": job.event_count,
    }


async def w1_process(url: str, workdir: Path, n: int) -> Record:
    """The W1 job run by a separate worker process (concurrency 1), timed inside the agent."""
    out = workdir / "w1-process.mark"
    async with agents.build_app(url) as app:
        handle = await app.start("w1_steps", {"n": n, "out": str(out)})
        proc = await spawn_worker(url, workdir, "w1-worker", 1)
        try:
            value = await handle.result(JOB_TIMEOUT)
        finally:
            await stop_workers([proc])
    expect(value == n, f"job returned {value!r}, expected {n}")
    span = float(read(out))
    return {"us_per_step": span / n * 1e6, "span_s": span}


# -- W2: throughput -----------------------------------------------------------------------------


async def w2_run(
    db: Database,
    workdir: Path,
    jobs: int,
    steps: int,
    workers: int,
    concurrency: int,
    detail: Detail | None = None,
) -> Record:
    """Start all jobs, then spawn the worker processes and wait until every job has succeeded.
    The window is from the first ``job_claimed`` to the last ``job_succeeded`` (journal times)."""
    async with agents.build_app(db.url) as app:
        began = time.perf_counter()
        for _ in range(jobs):
            await app.start("w2_job", {"steps": steps})
        enqueue_s = time.perf_counter() - began
        spawned = time.time()
        procs = [
            await spawn_worker(db.url, workdir, f"w2-{workers}-{i}", concurrency)
            for i in range(workers)
        ]
        seen = 0.0

        async def all_succeeded() -> bool:
            nonlocal seen
            counts = Counter(job.status for job in await app.list_jobs(limit=jobs + 1))
            if detail:
                detail(counts[JobStatus.SUCCEEDED], jobs)
            bad = {s: c for s, c in counts.items() if s.terminal or s is JobStatus.PARKED}
            bad.pop(JobStatus.SUCCEEDED, None)
            expect(not bad, f"jobs ended badly: {bad}")
            seen = time.time()
            return counts[JobStatus.SUCCEEDED] == jobs

        try:
            await until("all jobs succeeded", all_succeeded, procs, JOB_TIMEOUT, W2_POLL)
        finally:
            exit_codes = await stop_workers(procs)
        timing = await _w2_timing(app, jobs, steps)
    window = timing["window_s"]
    return {
        "jobs_per_s": jobs / window,
        "steps_per_s": jobs * steps / window,
        **timing,
        "startup_s": timing["first_claim_at"] - spawned,
        "all_registered_s": db.last_registration() - spawned,
        "observed_wall_s": seen - spawned,
        "enqueue_s": enqueue_s,
        "worker_exit_codes": exit_codes,
    }


async def _w2_timing(app: App, jobs: int, steps: int) -> Record:
    store = await app.open_store()
    found: list[Event] = []
    done: list[float] = []
    for job in await app.list_jobs(limit=jobs + 1):
        expect(job.status is JobStatus.SUCCEEDED, f"job {job.id} is {job.status}")
        expect(job.result == steps, f"job {job.id} returned {job.result!r}, expected {steps}")
        events = await store.events(job.id)
        found += claims(events)
        done.append(last_of(events, EventType.JOB_SUCCEEDED).at)
    expect(len(done) == jobs, f"{len(done)} succeeded jobs, expected {jobs}")
    first_by_owner: dict[str, float] = {}
    for claim in found:
        first_by_owner[_owner(claim)] = min(claim.at, first_by_owner.get(_owner(claim), claim.at))
    first = min(first_by_owner.values())
    return {
        "window_s": max(done) - first,
        "first_claim_at": first,
        "start_skew_s": max(first_by_owner.values()) - first,
        "claims": len(found),
        "jobs_per_worker": sorted(Counter(map(_owner, found)).values(), reverse=True),
    }


# -- W3: recovery after SIGKILL -----------------------------------------------------------------


async def w3_lite(db: Database, workdir: Path, steps: int, seconds: float) -> Record:
    """Worker A runs a job of ``steps`` naps; once it has recorded some, worker B is started and
    left idle; then A gets SIGKILL. Recovery: from the kill to B's ``job_claimed``."""
    async with agents.build_app(db.url) as app:
        handle = await app.start("w3_naps", {"steps": steps, "seconds": seconds})
        doomed = await spawn_worker(db.url, workdir, "worker-killed", 1)
        procs = [doomed]
        found: list[Event] = []
        try:

            async def recorded() -> bool:
                job = await app.get_job(handle.job_id)
                return job.event_count >= 2 + W3_STEPS_BEFORE_KILL

            await until(f"{W3_STEPS_BEFORE_KILL} steps", recorded, procs, W3_TIMEOUT)
            fresh = await spawn_worker(db.url, workdir, "worker-fresh", 1, "--grace", "0")
            procs.append(fresh)
            await serving(workdir, "worker-fresh", fresh)
            before = await app.get_job(handle.job_id)
            killed_at = time.time()
            os.kill(doomed.pid, signal.SIGKILL)
            await doomed.wait()
            store = await app.open_store()

            async def reclaimed() -> bool:
                found[:] = claims(await store.events(handle.job_id))
                return len(found) >= 2

            await until("the fresh worker's claim", reclaimed, [fresh], W3_TIMEOUT)
        finally:
            exit_codes = await stop_workers(procs)
    expect(len(found) == 2, f"{len(found)} claims of job {handle.job_id}")
    first, second = found
    expect(f":{doomed.pid}:" in _owner(first), f"first claim by {_owner(first)}")
    expect(f":{fresh.pid}:" in _owner(second), f"second claim by {_owner(second)}")
    expect(second.data["recovered_from"] == _owner(first), "not a recovery of A's job")
    expect(before.lease_expires_at is not None, "the job had no lease when A was killed")
    return {
        "recovery_s": second.at - killed_at,
        "lease_left_at_kill_s": float(before.lease_expires_at or 0.0) - killed_at,
        "steps_before_kill": before.event_count - 2,
        "worker_exit_codes": exit_codes,
    }


async def w3_lines(url: str, workdir: Path, variant: str) -> Record:
    """The peer W3: worker A holds the job until worker B serves (and idles), then runs it and
    SIGKILLs itself at the variant's kill point; B takes the job over."""
    mode, kill = W3_VARIANTS[variant]
    lines, gate = workdir / f"w3-{variant}.lines", workdir / f"w3-{variant}.go"
    env = {LINES_ENV: str(lines)}
    spec = {"lines": str(lines), "gate": str(gate), "mode": mode, "steps": common.W3_STEPS}
    async with agents.build_app(url) as app:
        handle = await app.start("w3_lines", spec)
        doomed = await spawn_worker(url, workdir, f"w3-{variant}-a", 1, env={**env, KILL_ENV: kill})
        procs = [doomed]
        try:

            async def claimed() -> bool:
                return (await handle.status()) is JobStatus.RUNNING

            await until("the first claim", claimed, procs, 60)
            fresh = await spawn_worker(url, workdir, f"w3-{variant}-b", 1, "--grace", "0", env=env)
            procs.append(fresh)
            await serving(workdir, f"w3-{variant}-b", fresh)
            gate.touch()  # the job runs; worker A kills itself at its kill point
            code = await asyncio.wait_for(doomed.wait(), W3_TIMEOUT)
            expect(code == -signal.SIGKILL, f"worker A exited with {code}, not SIGKILL")
            killed = float(read(Path(f"{lines}.killed")))
            want = JobStatus.PARKED if mode == "at_most_once" else JobStatus.SUCCEEDED

            async def settled() -> bool:
                status = await handle.status()
                expect(status in (want, JobStatus.RUNNING, JobStatus.PENDING), str(status))
                return status is want

            await until(f"job {want}", settled, procs[1:], W3_TIMEOUT)
            job = await handle.job()
            events = await (await app.open_store()).events(handle.job_id)
            numbers = [int(line.split()[0]) for line in read(lines).splitlines()]
            record = _w3_record(events, killed, numbers, doomed, fresh)
            if mode == "at_most_once":
                record |= await _w3_resolve(app, job, lines, procs[1:])
        finally:
            exit_codes = await stop_workers(procs)
    kind = EventType.JOB_PARKED if mode == "at_most_once" else EventType.JOB_SUCCEEDED
    recovery = last_of(events, kind).at - killed
    return {
        "recovery_s": recovery,
        "lines": len(numbers),
        **record,
        "worker_exit_codes": exit_codes,
    }


def _w3_record(
    events: Sequence[Event], killed: float, numbers: list[int], a: Process, b: Process
) -> Record:
    found = claims(events)
    expect(len(found) == 2, f"{len(found)} claims, expected 2 (A's, then B's)")
    first, second = found
    expect(f":{a.pid}:" in _owner(first), "the first claim is not worker A's")
    expect(f":{b.pid}:" in _owner(second), "the second claim is not worker B's")
    counts = Counter(numbers)
    return {
        "kill_to_claim_s": second.at - killed,
        "recovered_from_a": second.data.get("recovered_from") == _owner(first),
        "steps_run_twice": sorted(n for n, c in counts.items() if c > 1),
        "steps_missing": [n for n in range(1, common.W3_STEPS + 1) if n not in counts],
    }


async def _w3_resolve(app: App, job: Job, lines: Path, procs: Sequence[Process]) -> Record:
    """The parked job: an operator says the line was written; the job then completes."""
    reason = job.park_reason.value if job.park_reason else None
    expect(reason == "effect_in_doubt", f"parked for {reason}")
    position = int((job.park_detail or {})["position"])
    result = common.step(common.W3_KILL_AT)
    await app.resolve_effect(job.id, position, committed=True, result=result, by="bench")

    async def succeeded() -> bool:
        return (await app.get_job(job.id)).status is JobStatus.SUCCEEDED

    await until("the resolved job's success", succeeded, procs, W3_TIMEOUT)
    return {
        "parked": "effect_in_doubt",
        "in_doubt_position": position,
        "lines_after_resolve": len(read(lines).splitlines()),
    }


# -- W4: agent-shaped turns ---------------------------------------------------------------------


async def w4_turns(url: str, turns: int) -> float:
    """µs per turn of one job of ``turns`` (llm, tool) turns, one worker in this process."""
    app = agents.build_app(url)
    agents.MARKS.clear()
    async with app, running_worker(app, concurrency=1):
        handle = await app.start("w4_agent", {"turns": turns})
        value = await handle.result(timeout=JOB_TIMEOUT)
    expect(value == 2 * turns, f"W4 job returned {value!r}, expected {2 * turns}")
    return agents.MARKS[-1] / turns * 1e6


async def w4_run(url: str, turns: int) -> Record:
    """:func:`w4_turns` on a fresh database, and the bytes stored before (migrated) and after."""
    async with agents.build_app(url) as app:
        await app.open_store()
    baseline = stored_bytes(url)
    us_per_turn = await w4_turns(url, turns)
    return {"us_per_turn": us_per_turn, "baseline": baseline, "after": stored_bytes(url)}


# -- W5: journal growth and resume --------------------------------------------------------------


def window_median_us(times: Sequence[float], first: int, last: int) -> float | None:
    """Median µs/step over steps ``first``..``last`` (1-based, inclusive); None if the run did
    not have that many steps."""
    if last > len(times):
        return None
    return statistics.median(times[first - 1 : last]) * 1e6


def growth_record(live: Sequence[float], replay: Record, claim_at: float) -> Record:
    """The per-step cost as the journal grew (``live``: seconds per step), and the resume: from
    the claim (``claim_at``) to the replaying agent (``replay``, its ``GROWTH`` record) passing
    the last step again."""
    windows = {f"{a}-{b}": window_median_us(live, a, b) for a, b in W5_WINDOWS}
    first, around, last = windows.values()
    size = W5_BUCKET
    buckets = [statistics.median(live[i : i + size]) * 1e6 for i in range(0, len(live), size)]
    return {
        "windows_us": windows,
        "first_us": first,
        "around_1k_us": around,
        "last_us": last,
        "last_over_first": last / first if last and first else None,
        "bucket_median_us": buckets,
        "first_bucket_us": buckets[0],
        "last_bucket_us": buckets[-1],
        "last_over_first_bucket": buckets[-1] / buckets[0],
        "live_mean_us": statistics.fmean(live) * 1e6,
        "live_total_s": sum(live),
        "replay_median_us": statistics.median(replay["times"]) * 1e6,
        "resume_s": replay["passed"] - claim_at,
        "resume_load_s": replay["entered"] - claim_at,
        "resume_replay_s": replay["passed"] - replay["entered"],
    }


async def w5_in_process(url: str, n: int, detail: Detail) -> Record:
    """One job of ``n`` steps under a worker in this process; after step ``n`` the agent blocks
    and the worker is stopped with grace 0 (the job is handed back); a fresh App and worker in
    this process claim it and replay the ``n`` steps."""
    agents.GROWTH.clear()

    async def passed(count: int) -> None:
        async def check() -> bool:
            detail(len(agents.GROWTH[-1]["times"]) if agents.GROWTH else 0, n)
            return sum("passed" in record for record in agents.GROWTH) >= count

        await until(f"the agent passing step {n}", check, [], JOB_TIMEOUT, poll=0.05)

    async with agents.build_app(url) as app:
        async with running_worker(app, concurrency=1, grace=0.0):
            handle = await app.start("w5_journal", {"n": n})
            await passed(1)
        job = await handle.job()
    expect(job.status is JobStatus.PENDING, f"stopped job {job.id} is {job.status}")
    expect(job.event_count == n + 3, f"{job.event_count} events, expected {n} steps + 3")
    # A fresh App and worker, as a new process would have: nothing cached.
    async with agents.build_app(url) as fresh:
        async with running_worker(fresh, concurrency=1, grace=0.0):
            await passed(2)
        events = await (await fresh.open_store()).events(job.id)
    expect(len(events) == n + 5, f"{len(events)} events after the resume, expected {n + 5}")
    expect(len(agents.GROWTH) == 2, f"the agent was entered {len(agents.GROWTH)} times")
    live, replay = agents.GROWTH
    return growth_record(live["times"], replay, claims(events)[1].at)


async def w5_process(url: str, workdir: Path, n: int) -> Record:
    """One job of ``n`` steps run by worker process A; after step ``n`` the agent blocks; worker
    B is started and left idle, A is SIGKILLed, B takes the job over and replays it."""
    out = workdir / "w5"
    async with agents.build_app(url) as app:
        handle = await app.start("w5_journal", {"n": n, "out": str(out)})
        doomed = await spawn_worker(url, workdir, "w5-a", 1)
        procs = [doomed]
        try:
            a_file = Path(f"{out}.{doomed.pid}.json")

            async def a_passed() -> bool:
                return exists(a_file)

            await until("worker A passing the last step", a_passed, procs, JOB_TIMEOUT)
            fresh = await spawn_worker(url, workdir, "w5-b", 1, "--grace", "0")
            procs.append(fresh)
            await serving(workdir, "w5-b", fresh)
            killed = time.time()
            os.kill(doomed.pid, signal.SIGKILL)
            await doomed.wait()
            b_file = Path(f"{out}.{fresh.pid}.json")

            async def b_passed() -> bool:
                return exists(b_file)

            await until("worker B passing the last step", b_passed, procs[1:], JOB_TIMEOUT)
            events = await (await app.open_store()).events(handle.job_id)
        finally:
            await stop_workers(procs)
    found = claims(events)
    expect(len(found) == 2, f"{len(found)} claims, expected 2")
    expect(f":{fresh.pid}:" in _owner(found[1]), "the second claim is not B's")
    live, replay = json.loads(read(a_file)), json.loads(read(b_file))
    record = growth_record(live["times"], replay, found[1].at)
    return record | {
        "kill_to_claim_s": found[1].at - killed,
        "kill_to_passed_s": replay["passed"] - killed,
    }
