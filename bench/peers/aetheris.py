"""Aetheris on the peer workloads W1-W5 (the contract of ``bench.peers.common``).

``python -m bench.peers.aetheris --workload W1 --backend sqlite --durability full --runs 3
--out results.jsonl``, in the main environment. The agents are in ``bench.peers.aetheris_app``,
the plumbing (databases, worker processes) in ``bench.peers.aetheris_support``. Every run (and
every variant, and every W4 size) gets a fresh database: a SQLite file in the run's work
directory, or a new PostgreSQL database (``common.fresh_postgres_db``). Worker processes are
``python -m aetheris worker --app bench.peers.aetheris_app:app`` with ``AETHERIS_DATABASE_URL``.
See bench/peers/README.md (section Aetheris) for what each figure means.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

import aetheris
from aetheris import App, Job, JobStatus
from aetheris.journal import Event, EventType
from aetheris.testing import running_worker
from bench.common import claims, stop_workers
from bench.peers import aetheris_app, common
from bench.peers.aetheris_support import (
    PG_TABLES,
    Figure,
    Invalid,
    Process,
    Run,
    database,
    exists,
    expect,
    last_of,
    read,
    serving,
    spawn_worker,
    stored_bytes,
    until,
    version,
)

SYSTEM = "aetheris"
W2_CONCURRENCY = 32
JOB_TIMEOUT = 900.0
DURABILITY = {
    ("sqlite", "full"): "[SQLite WAL, synchronous=FULL: the store's default]",
    ("sqlite", "process"): "[SQLite WAL, synchronous=NORMAL: URL ?synchronous=normal]",
    ("postgres", "full"): "[PostgreSQL synchronous_commit=on: the server default]",
    ("postgres", "process"): (
        "[PostgreSQL synchronous_commit=off: ALTER DATABASE on the fresh database before the run;"
        " the store has no option of its own for it]"
    ),
}
NO_SERVER = "Aetheris runs in-process on SQLite or PostgreSQL: it has no server of its own"
W3_VARIANTS = {  # variant: (agent mode, kill point)
    "step": ("step", f"inside:{common.W3_KILL_AT}"),
    "between": ("step", f"before:{common.W3_KILL_AT + 1}"),
    "at_most_once": ("at_most_once", f"inside:{common.W3_KILL_AT}"),
    "at_most_once+reconcile": ("reconcile", f"inside:{common.W3_KILL_AT}"),
}
METRICS = {  # what each workload reports: a failed one reports these as null
    "W1": [(v, "us_per_step") for v in ("steps", "at_most_once", "steps-process")],
    "W2": [(v, m) for v in ("1-worker", "2-workers") for m in ("jobs_per_s", "steps_per_s")]
    + [(v, "startup_s") for v in ("1-worker", "2-workers")],
    "W3": [(v, m) for v in W3_VARIANTS for m in ("recovery_s", "lines")],
    "W4": [("agent", "us_per_turn")] + [("agent", f"bytes_stored_{n}") for n in common.W4_TURNS],
    "W5": [("journal", f"us_per_step_at_{n}") for n in common.W5_SIZES]
    + [("journal", "resume_10k_s")],
}


# -- W1: step overhead --------------------------------------------------------------------------


async def w1(run: Run) -> list[Figure]:
    n = 100 if run.quick else common.W1_STEPS
    figures: list[Figure] = []
    for variant, agent in (("steps", "w1_steps"), ("at_most_once", "w1_amo")):
        with database(run, f"w1-{variant}") as url:
            async with aetheris_app.build_app(url) as app, running_worker(app, concurrency=1):
                aetheris_app.MARKS.clear()
                handle = await app.start(agent, {"n": n})
                expect(await handle.result(JOB_TIMEOUT) == n, "wrong result")
                job = await handle.job()
            what = (
                "await ctx.step('s', async fn, i)"
                if variant == "steps"
                else "await tool(i), @app.tool(effect='at_most_once'): intent, dispatch, outcome"
            )
            figures.append(
                Figure(
                    variant,
                    "us_per_step",
                    aetheris_app.MARKS[-1] / n * 1e6,
                    f"{n} x {what} in one job; worker in the harness process (running_worker, "
                    "concurrency 1); timed inside the agent, first step to last",
                    {"steps": n, "job_wall_s": job.updated_at - job.created_at},
                )
            )
    figures.append(await w1_process(run, n))
    return figures


async def w1_process(run: Run, n: int) -> Figure:
    out = run.dir / "w1-process.mark"
    with database(run, "w1-process") as url:
        async with aetheris_app.build_app(url) as app:
            handle = await app.start("w1_steps", {"n": n, "out": str(out)})
            proc = await spawn_worker(url, run.dir, "w1-worker", 1, {})
            try:
                expect(await handle.result(JOB_TIMEOUT) == n, "wrong result")
            finally:
                await stop_workers([proc])
    return Figure(
        "steps-process",
        "us_per_step",
        float(out.read_text()) / n * 1e6,
        f"{n} x await ctx.step('s', async fn, i) in one job, run by a separate worker process "
        "(python -m aetheris worker --concurrency 1); timed inside the agent",
        {"steps": n},
    )


# -- W2: throughput -----------------------------------------------------------------------------


async def w2(run: Run) -> list[Figure]:
    jobs = 20 if run.quick else common.W2_JOBS
    steps = common.W2_STEPS
    figures: list[Figure] = []
    for workers in (1, 2):
        variant = "1-worker" if workers == 1 else "2-workers"
        with database(run, f"w2-{workers}") as url:
            async with aetheris_app.build_app(url) as app:
                began = time.perf_counter()
                ids = [(await app.start("w2_job", {"steps": steps})).job_id for _ in range(jobs)]
                enqueue_s = time.perf_counter() - began
                spawned = time.time()
                procs = [
                    await spawn_worker(url, run.dir, f"w2-{workers}-{i}", W2_CONCURRENCY, {})
                    for i in range(workers)
                ]

                async def done() -> bool:
                    found = await app.list_jobs(status=JobStatus.SUCCEEDED, limit=jobs + 1)
                    return len(found) == jobs

                try:
                    await until("all jobs succeeded", done, procs, JOB_TIMEOUT)
                finally:
                    codes = await stop_workers(procs)
                store = await app.open_store()
                firsts: list[float] = []
                owners: dict[str, float] = {}
                ends: list[float] = []
                for job_id in ids:
                    job = await app.get_job(job_id)
                    expect(job.result == steps, f"job {job_id} returned {job.result!r}")
                    events = await store.events(job_id)
                    for claim in claims(events):
                        firsts.append(claim.at)
                        owner = str(claim.data.get("owner"))
                        owners[owner] = min(claim.at, owners.get(owner, claim.at))
                    ends.append(last_of(events, EventType.JOB_SUCCEEDED).at)
        window = max(ends) - min(firsts)
        extra = {
            "window_s": window,
            "enqueue_s": enqueue_s,
            "startup_s": min(firsts) - spawned,
            "start_skew_s": max(owners.values()) - min(firsts),
            "claims": len(firsts),
            "worker_exit_codes": codes,
        }
        notes = (
            f"{jobs} jobs x {steps} ctx.step started first, then {workers} worker process(es) "
            f"(python -m aetheris worker --concurrency {W2_CONCURRENCY}); window = first "
            "job_claimed to last job_succeeded (journal timestamps); worker start-up excluded"
        )
        figures.append(Figure(variant, "jobs_per_s", jobs / window, notes, extra))
        figures.append(Figure(variant, "steps_per_s", jobs * steps / window, notes, extra))
        figures.append(
            Figure(
                variant,
                "startup_s",
                min(firsts) - spawned,
                "worker start-up: spawn of the process(es) to the first job_claimed",
                extra,
            )
        )
    return figures


# -- W3: recovery after SIGKILL -----------------------------------------------------------------


async def w3(run: Run) -> list[Figure]:
    figures: list[Figure] = []
    for variant in W3_VARIANTS:
        try:
            figures += await w3_variant(run, variant)
        except (Invalid, OSError, aetheris.AetherisError, psycopg.Error) as exc:
            notes = f"FAILED: {type(exc).__name__}: {exc}"[:1500]
            figures += [Figure(variant, m, None, notes) for m in ("recovery_s", "lines")]
    return figures


async def w3_variant(run: Run, variant: str) -> list[Figure]:
    mode, kill = W3_VARIANTS[variant]
    lines = run.dir / f"w3-{variant}.lines"
    gate = run.dir / f"w3-{variant}.go"
    env = {aetheris_app.LINES_ENV: str(lines)}
    with database(run, f"w3-{variant}") as url:
        async with aetheris_app.build_app(url) as app:
            spec = {"lines": str(lines), "gate": str(gate), "mode": mode, "steps": common.W3_STEPS}
            handle = await app.start("w3_lines", spec)
            doomed = await spawn_worker(
                url, run.dir, f"w3-{variant}-a", 1, {**env, aetheris_app.KILL_ENV: kill}
            )
            procs = [doomed]
            try:

                async def claimed() -> bool:
                    return (await handle.status()) is JobStatus.RUNNING

                await until("the first claim", claimed, procs, 60)
                fresh = await spawn_worker(url, run.dir, f"w3-{variant}-b", 1, env, "--grace", "0")
                procs.append(fresh)
                await serving(run.dir, f"w3-{variant}-b", fresh)
                gate.touch()  # the job runs; worker A kills itself at its kill point
                code = await asyncio.wait_for(doomed.wait(), 120)
                expect(code == -signal.SIGKILL, f"worker A exited with {code}, not SIGKILL")
                killed = float(read(Path(f"{lines}.killed")))
                want = JobStatus.PARKED if mode == "at_most_once" else JobStatus.SUCCEEDED

                async def settled() -> bool:
                    status = await handle.status()
                    expect(status in (want, JobStatus.RUNNING, JobStatus.PENDING), str(status))
                    return status is want

                await until(f"job {want}", settled, procs[1:], 120)
                job = await handle.job()
                events = await (await app.open_store()).events(handle.job_id)
                numbers = [int(line.split()[0]) for line in lines.read_text().splitlines()]
                extra = w3_extra(events, killed, numbers, doomed, fresh)
                if mode == "at_most_once":
                    extra.update(await w3_resolve(app, job, lines, procs[1:]))
            finally:
                extra_codes = await stop_workers(procs)
    extra["worker_exit_codes"] = extra_codes
    kind = EventType.JOB_PARKED if mode == "at_most_once" else EventType.JOB_SUCCEEDED
    recovery = last_of(events, kind).at - killed
    return [
        Figure(variant, "recovery_s", recovery, w3_notes(run, variant, extra), extra),
        Figure(variant, "lines", float(len(numbers)), w3_notes(run, variant, extra), extra),
    ]


def w3_extra(
    events: Sequence[Event], killed: float, numbers: list[int], a: Process, b: Process
) -> dict[str, Any]:
    found = claims(events)
    expect(len(found) == 2, f"{len(found)} claims, expected 2 (A's, then B's)")
    first, second = found
    expect(f":{a.pid}:" in str(first.data.get("owner")), "the first claim is not worker A's")
    expect(f":{b.pid}:" in str(second.data.get("owner")), "the second claim is not worker B's")
    counts = {n: numbers.count(n) for n in set(numbers)}
    return {
        "kill_to_claim_s": second.at - killed,
        "recovered_from_a": second.data.get("recovered_from") == first.data.get("owner"),
        "steps_run_twice": sorted(n for n, c in counts.items() if c > 1),
        "steps_missing": [n for n in range(1, common.W3_STEPS + 1) if n not in counts],
    }


async def w3_resolve(app: App, job: Job, lines: Path, procs: Sequence[Process]) -> dict[str, Any]:
    """The parked job: an operator says the line was written; the job then completes."""
    expect(job.park_reason is not None and job.park_reason.value == "effect_in_doubt", "reason")
    detail = job.park_detail or {}
    position = int(detail["position"])
    await app.resolve_effect(
        job.id, position, committed=True, result=common.step(common.W3_KILL_AT), by="bench"
    )

    async def succeeded() -> bool:
        return (await app.get_job(job.id)).status is JobStatus.SUCCEEDED

    await until("the resolved job's success", succeeded, procs, 120)
    return {
        "parked": "effect_in_doubt",
        "in_doubt_position": position,
        "lines_after_resolve": len(read(lines).splitlines()),
    }


def w3_notes(run: Run, variant: str, extra: dict[str, Any]) -> str:
    where = {
        "step": f"SIGKILL inside ctx.step {common.W3_KILL_AT}, right after its line",
        "between": f"SIGKILL at the start of step {common.W3_KILL_AT + 1}'s body, before its line",
        "at_most_once": f"each step an at_most_once tool; SIGKILL inside tool {common.W3_KILL_AT}",
        "at_most_once+reconcile": (
            f"each step an at_most_once tool with reconcile= (looks for its idempotency key in "
            f"the file); SIGKILL inside tool {common.W3_KILL_AT}"
        ),
    }[variant]
    how = (
        "B sees A's flock on its presence file released"
        if run.args.backend == "sqlite"
        else "B sees A's advisory lock free for reap_grace (default 5 s)"
    )
    end = "job_parked (effect_in_doubt)" if variant == "at_most_once" else "job_succeeded"
    text = (
        f"{where}; fresh worker B already started and idle before the kill (start-up excluded); "
        f"{how}; recovery_s = kill to B's {end} event; steps run twice: "
        f"{extra.get('steps_run_twice') or 'none'}"
    )
    if variant == "at_most_once":
        text += (
            f"; lines = written when it parked; an operator's `effects resolve --committed` then "
            f"lets it finish with {extra.get('lines_after_resolve')} lines"
        )
    return text


# -- W4: agent-shaped ---------------------------------------------------------------------------


async def w4(run: Run) -> list[Figure]:
    figures: list[Figure] = []
    per_turn: dict[int, float] = {}
    how = (
        "database file size after PRAGMA wal_checkpoint(TRUNCATE)"
        if run.args.backend == "sqlite"
        else f"sum of pg_total_relation_size of {', '.join(PG_TABLES)}"
    )
    for turns in common.W4_TURNS:
        with database(run, f"w4-{turns}") as url:
            async with aetheris_app.build_app(url) as app:
                await app.open_store()
            baseline = stored_bytes(url)  # a fresh migrated database
            async with aetheris_app.build_app(url) as app, running_worker(app, concurrency=1):
                aetheris_app.MARKS.clear()
                handle = await app.start("w4_agent", {"turns": turns})
                expect(await handle.result(JOB_TIMEOUT) == 2 * turns, "wrong result")
            per_turn[turns] = aetheris_app.MARKS[-1] / turns * 1e6
            after = stored_bytes(url)
        figures.append(
            Figure(
                "agent",
                f"bytes_stored_{turns}",
                float(after["bytes"] - baseline["bytes"]),
                f"{how}, minus the same for the fresh migrated database; fresh database per N",
                {"baseline": baseline, "after": after},
            )
        )
    first = common.W4_TURNS[0]
    figures.append(
        Figure(
            "agent",
            "us_per_turn",
            per_turn[first],
            f"N={first} turns of ctx.step('llm', scripted_llm, messages) + ctx.step('tool', ...) "
            "(the growing list is each llm step's argument); timed inside the agent",
            {"us_per_turn_by_n": per_turn},
        )
    )
    return figures


# -- W5: journal growth and resume --------------------------------------------------------------


async def w5(run: Run) -> list[Figure]:
    n = 1_010 if run.quick else common.W5_SIZES[-1]
    out = run.dir / "w5"
    with database(run, "w5") as url:
        async with aetheris_app.build_app(url) as app:
            handle = await app.start("w5_journal", {"n": n, "out": str(out)})
            doomed = await spawn_worker(url, run.dir, "w5-a", 1, {})
            procs = [doomed]
            try:
                a_file = Path(f"{out}.{doomed.pid}.json")

                async def passed_a() -> bool:
                    return exists(a_file)

                await until("worker A passing the last step", passed_a, procs, JOB_TIMEOUT)
                fresh = await spawn_worker(url, run.dir, "w5-b", 1, {}, "--grace", "0")
                procs.append(fresh)
                await serving(run.dir, "w5-b", fresh)
                killed = time.time()
                os.kill(doomed.pid, signal.SIGKILL)
                await doomed.wait()
                b_file = Path(f"{out}.{fresh.pid}.json")

                async def passed_b() -> bool:
                    return exists(b_file)

                await until("worker B passing the last step", passed_b, procs[1:], JOB_TIMEOUT)
                events = await (await app.open_store()).events(handle.job_id)
            finally:
                await stop_workers(procs)
    live = json.loads(read(a_file))
    replay = json.loads(read(b_file))
    found = claims(events)
    expect(len(found) == 2, f"{len(found)} claims, expected 2")
    expect(f":{fresh.pid}:" in str(found[1].data.get("owner")), "second claim is not B's")
    times: list[float] = live["times"]
    figures = []
    windows = {10: (0, 10), 1_000: (990, 1_010), 10_000: (9_990, 10_000)}
    notes = f"one job of {n} ctx.step, each timed inside the agent (worker process, concurrency 1)"
    for size in common.W5_SIZES:
        lo, hi = windows[size]
        value = statistics.median(times[lo:hi]) * 1e6 if hi <= n else None
        shown = notes if value is not None else f"{notes}; --quick runs only {n} steps"
        figures.append(Figure("journal", f"us_per_step_at_{size}", value, shown))
    claim_at = found[1].at
    figures.append(
        Figure(
            "journal",
            "resume_10k_s",
            replay["passed"] - claim_at,
            f"after step {n} the agent blocks (outside any step); its worker is SIGKILLed; a "
            "fresh worker (started and idle before the kill) recovers: from its job_claimed to "
            f"the replaying agent passing step {n} again",
            {
                "steps": n,
                "kill_to_claim_s": claim_at - killed,
                "claim_to_agent_entered_s": replay["entered"] - claim_at,
                "replay_s": replay["passed"] - replay["entered"],
                "replay_us_per_step_median": statistics.median(replay["times"]) * 1e6,
                "kill_to_passed_s": replay["passed"] - killed,
            },
        )
    )
    return figures


# -- main ---------------------------------------------------------------------------------------

WORKLOADS: dict[str, Callable[[Run], Awaitable[list[Figure]]]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
}


async def run_workload(run: Run) -> list[Figure]:
    return await WORKLOADS[run.args.workload](run)


def one_run(run: Run) -> list[Figure]:
    if run.args.backend == "server":
        return [Figure(v, m, None, NO_SERVER) for v, m in METRICS[run.args.workload]]
    error = ""
    figures: list[Figure] = []
    try:
        figures = asyncio.run(run_workload(run))
    except (Invalid, OSError, aetheris.AetherisError, psycopg.Error, TimeoutError) as exc:
        error = f"FAILED: {type(exc).__name__}: {exc}"[:1500]
    produced = {(f.variant, f.metric) for f in figures}
    for variant, metric in METRICS[run.args.workload]:
        if (variant, metric) not in produced:
            figures.append(Figure(variant, metric, None, error or "FAILED: not produced"))
    return figures


def main() -> None:
    args = common.parse_args(SYSTEM)
    ver = version()
    settings = common.postgres_settings() if args.backend == "postgres" else None
    for number in range(1, args.runs + 1):
        with common.workdir(args.dir) as directory:
            fsync = common.fsync_p50_us(directory)
            for figure in one_run(Run(args, directory)):
                extra = {**figure.extra, "load_1m": os.getloadavg()[0]}
                if settings:
                    extra["postgres"] = settings
                label = DURABILITY.get((args.backend, args.durability), "")
                common.emit(
                    args.out,
                    common.Result(
                        system=SYSTEM,
                        version=ver,
                        workload=args.workload,
                        variant=figure.variant,
                        backend=args.backend,
                        durability=args.durability,
                        metric=figure.metric,
                        value=figure.value,
                        run=number,
                        fsync_p50_us=fsync,
                        notes=f"{figure.notes} {label}".strip(),
                        extra=extra,
                    ),
                )


if __name__ == "__main__":
    main()
