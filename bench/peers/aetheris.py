"""Aetheris on the peer workloads W1-W5 (the contract of ``bench.peers.common``).

``python -m bench.peers.aetheris --workload W1 --backend sqlite --durability full --runs 3
--out results.jsonl``, in the main environment. A thin adapter: the workloads are those of
``python -m bench.core`` (``bench.workloads``, agents in ``bench.app``), run with the peer sizes;
this module turns their records into result rows. Every measurement (every variant, every W4
size) gets a fresh database: a SQLite file in the run's work directory, or a new PostgreSQL
database. See bench/peers/README.md (section Aetheris) for what each figure means.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import aetheris
from bench import agent_workloads, workloads
from bench.harness import PG_REAP_GRACE, Database, Invalid, fresh_database, version
from bench.peers import agent_script, common

SYSTEM = "aetheris"
W2_CONCURRENCY = 32
SYNC = {  # the database setting for each durability: None is the default (FULL, or the server's)
    ("sqlite", "full"): None,
    ("sqlite", "process"): "normal",
    ("postgres", "full"): None,
    ("postgres", "process"): "off",
}
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
W3_WHERE = {
    "step": f"SIGKILL inside ctx.step {common.W3_KILL_AT}, right after its line",
    "between": f"SIGKILL at the start of step {common.W3_KILL_AT + 1}'s body, before its line",
    "at_most_once": f"each step an at_most_once tool; SIGKILL inside tool {common.W3_KILL_AT}",
    "at_most_once+reconcile": (
        "each step an at_most_once tool with reconcile= (looks for its idempotency key in "
        f"the file); SIGKILL inside tool {common.W3_KILL_AT}"
    ),
}
METRICS = {  # what each workload reports: a failed one reports these as null
    "W1": [(v, "us_per_step") for v in ("steps", "at_most_once", "steps-process")],
    "W2": [
        (v, m)
        for v in ("1-worker", "2-workers")
        for m in ("jobs_per_s", "steps_per_s", "startup_s")
    ],
    "W3": [(v, m) for v in workloads.W3_VARIANTS for m in ("recovery_s", "lines")],
    "W4": [("agent", "us_per_turn")] + [("agent", f"bytes_stored_{n}") for n in common.W4_TURNS],
    "W5": [("journal", f"us_per_step_at_{n}") for n in common.W5_SIZES]
    + [("journal", "resume_10k_s")],
    "A1": [("plain", "us_per_turn")] + [("AetherisDurability", m) for m in common.AGENT_METRICS],
    "A2": [("plain", "us_per_turn")] + [("AetherisCheckpointer", m) for m in common.AGENT_METRICS],
}
AGENT_VARIANT = {"A1": "AetherisDurability", "A2": "AetherisCheckpointer"}
AGENT_WHAT = {
    "A1": (
        "the PydanticAI agent (FunctionModel, lookup pure / reserve idempotent / charge "
        "at_most_once) with AetherisDurability, run by an Aetheris agent"
    ),
    "A2": (
        "the LangGraph tool loop (scripted chat model, ToolNode) on AetherisCheckpointer with "
        "AetherisChatModel and DurableTools, run by run_graph in an Aetheris agent"
    ),
}


@dataclass
class Figure:
    variant: str
    metric: str
    value: float | None
    notes: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    args: Any
    dir: Path

    @contextmanager
    def db(self, name: str) -> Iterator[Database]:
        key = (self.args.backend, self.args.durability)
        with fresh_database(self.args.backend, SYNC[key], self.dir, name) as db:
            yield db


async def w1(run: Run) -> list[Figure]:
    n = 100 if run.args.quick else common.W1_STEPS
    figures = []
    for variant, agent, what in (
        ("steps", "w1_steps", "await ctx.step('s', async fn, i)"),
        (
            "at_most_once",
            "w1_tool",
            "await tool(i), @app.tool(effect='at_most_once'): intent, dispatch, outcome",
        ),
    ):
        with run.db(f"w1-{variant}") as db:
            r = await workloads.w1_job(db.url, agent, {"n": n})
        notes = (
            f"{n} x {what} in one job; worker in the harness process (running_worker, "
            "concurrency 1); timed inside the agent, first step to last"
        )
        extra = {"steps": n, "job_wall_s": r["job_wall_s"]}
        figures.append(Figure(variant, "us_per_step", r["us_per_step"], notes, extra))
    with run.db("w1-process") as db:
        r = await workloads.w1_process(db.url, run.dir, n)
    notes = (
        f"{n} x await ctx.step('s', async fn, i) in one job, run by a separate worker process "
        "(python -m aetheris worker --concurrency 1); timed inside the agent"
    )
    figures.append(Figure("steps-process", "us_per_step", r["us_per_step"], notes, {"steps": n}))
    return figures


async def w2(run: Run) -> list[Figure]:
    jobs, steps = (20 if run.args.quick else common.W2_JOBS), common.W2_STEPS
    figures = []
    for workers, variant in ((1, "1-worker"), (2, "2-workers")):
        with run.db(f"w2-{workers}") as db:
            r = await workloads.w2_run(db, run.dir, jobs, steps, workers, W2_CONCURRENCY)
        notes = (
            f"{jobs} jobs x {steps} ctx.step started first, then {workers} worker process(es) "
            f"(python -m aetheris worker --concurrency {W2_CONCURRENCY}); window = first "
            "job_claimed to last job_succeeded (journal timestamps); worker start-up excluded"
        )
        startup = "worker start-up: spawn of the process(es) to the first job_claimed"
        figures += [
            Figure(variant, "jobs_per_s", r["jobs_per_s"], notes, r),
            Figure(variant, "steps_per_s", r["steps_per_s"], notes, r),
            Figure(variant, "startup_s", r["startup_s"], startup, r),
        ]
    return figures


async def w3(run: Run) -> list[Figure]:
    figures = []
    how = (
        "B sees A's flock on its presence file released"
        if run.args.backend == "sqlite"
        else f"B sees A's advisory lock free for reap_grace (default {PG_REAP_GRACE:g} s)"
    )
    for variant in workloads.W3_VARIANTS:
        try:
            with run.db(f"w3-{variant}") as db:
                r = await workloads.w3_lines(db.url, run.dir, variant)
        except (Invalid, OSError, aetheris.AetherisError, psycopg.Error) as exc:
            notes = f"FAILED: {type(exc).__name__}: {exc}"[:1500]
            figures += [Figure(variant, m, None, notes) for m in ("recovery_s", "lines")]
            continue
        end = "job_parked (effect_in_doubt)" if variant == "at_most_once" else "job_succeeded"
        notes = (
            f"{W3_WHERE[variant]}; fresh worker B already started and idle before the kill "
            f"(start-up excluded); {how}; recovery_s = kill to B's {end} event; steps run twice: "
            f"{r['steps_run_twice'] or 'none'}"
        )
        if variant == "at_most_once":
            notes += (
                "; lines = written when it parked; an operator's `effects resolve --committed` "
                f"then lets it finish with {r['lines_after_resolve']} lines"
            )
        figures += [
            Figure(variant, "recovery_s", r["recovery_s"], notes, r),
            Figure(variant, "lines", float(r["lines"]), notes, r),
        ]
    return figures


async def w4(run: Run) -> list[Figure]:
    how = (
        "database file size after PRAGMA wal_checkpoint(TRUNCATE)"
        if run.args.backend == "sqlite"
        else "sum of pg_total_relation_size of every table of the store's schema"
    )
    figures = []
    per_turn: dict[int, float] = {}
    for turns in common.W4_TURNS:
        with run.db(f"w4-{turns}") as db:
            r = await workloads.w4_run(db.url, turns)
        per_turn[turns] = r["us_per_turn"]
        figures.append(
            Figure(
                "agent",
                f"bytes_stored_{turns}",
                float(r["after"]["bytes"] - r["baseline"]["bytes"]),
                f"{how}, minus the same for the fresh migrated database; fresh database per N",
                {"baseline": r["baseline"], "after": r["after"]},
            )
        )
    first = common.W4_TURNS[0]
    notes = (
        f"N={first} turns of ctx.step('llm', scripted_llm, messages) + ctx.step('tool', ...) "
        "(the growing list is each llm step's argument); timed inside the agent"
    )
    extra = {"us_per_turn_by_n": per_turn}
    return [*figures, Figure("agent", "us_per_turn", per_turn[first], notes, extra)]


async def w5(run: Run) -> list[Figure]:
    n = 1_010 if run.args.quick else common.W5_SIZES[-1]
    with run.db("w5") as db:
        r = await workloads.w5_process(db.url, run.dir, n)
    notes = f"one job of {n} ctx.step, each timed inside the agent (worker process, concurrency 1)"
    short = f"{notes}; --quick runs only {n} steps"
    figures = [
        Figure("journal", f"us_per_step_at_{size}", value, notes if value is not None else short)
        for size, value in zip(common.W5_SIZES, r["windows_us"].values(), strict=True)
    ]
    notes = (
        f"after step {n} the agent blocks (outside any step); its worker is SIGKILLed; a fresh "
        "worker (started and idle before the kill) recovers: from its job_claimed to the "
        f"replaying agent passing step {n} again"
    )
    keep = ("resume_load_s", "resume_replay_s", "replay_median_us", "kill_to_claim_s")
    extra = {"steps": n, **{k: r[k] for k in (*keep, "kill_to_passed_s")}}
    return [*figures, Figure("journal", "resume_10k_s", r["resume_s"], notes, extra)]


async def agents(run: Run) -> list[Figure]:
    """A1/A2: the framework's agent made durable by Aetheris, and the same agent plain."""
    workload, variant = run.args.workload, AGENT_VARIANT[run.args.workload]
    turns, stored_turns, repeats = common.agent_sizes(run.args.quick)
    how = (
        "SQLite file growth after PRAGMA wal_checkpoint(TRUNCATE)"
        if run.args.backend == "sqlite"
        else "growth of pg_total_relation_size over every table of the store's schema"
    )
    floor = await agent_workloads.plain(workload, turns, agent_script.PLAIN_REPEATS)
    with run.db(f"{workload}-time") as db:
        timed = await agent_workloads.durable(db.url, workload, turns, repeats)
    with run.db(f"{workload}-bytes") as db:
        size = await agent_workloads.stored(db.url, workload, stored_turns)
    size["how"] = f"{how}, one job of {stored_turns} turns, fresh database"
    with run.db(f"{workload}-kill") as db:
        kill = await agent_workloads.killed(db.url, run.dir, workload)
    kill["what"] = (
        "worker B found charge's intent without an outcome and parked the job effect_in_doubt"
        " (the harness then resolved it as committed and the job completed)"
        if kill["parked_effect_in_doubt"]
        else "the job completed"
    )
    what = AGENT_WHAT[workload]
    timing = f"N={turns} turns, median of {repeats} jobs, timed inside the Aetheris agent"
    plain_notes = f"the same agent, no durability (plain run in this process), N={turns}"
    return [
        Figure("plain", "us_per_turn", floor["us_per_turn"], plain_notes, floor),
        *(
            Figure(*row)
            for row in common.agent_rows(variant, what, timing, timed, floor, size, kill)
        ),
    ]


WORKLOADS: dict[str, Callable[[Run], Coroutine[Any, Any, list[Figure]]]] = {
    "A1": agents,
    "A2": agents,
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
}


def one_run(run: Run) -> list[Figure]:
    if run.args.backend == "server":
        return [Figure(v, m, None, NO_SERVER) for v, m in METRICS[run.args.workload]]
    error = ""
    figures: list[Figure] = []
    try:
        figures = asyncio.run(WORKLOADS[run.args.workload](run))
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
    label = DURABILITY.get((args.backend, args.durability), "")
    for number in range(1, args.runs + 1):
        with common.workdir(args.dir) as directory:
            fsync = common.fsync_p50_us(directory)
            for figure in one_run(Run(args, directory)):
                extra = {**figure.extra, "load_1m": os.getloadavg()[0]}
                if settings:
                    extra["postgres"] = settings
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
