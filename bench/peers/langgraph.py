"""LangGraph harness: W1-W5 on SqliteSaver / PostgresSaver (see bench/peers/README.md).

    PYTHONPATH=/work/main bench/.venvs/langgraph/bin/python -m bench.peers.langgraph \
        --workload W1 --backend sqlite --durability full --runs 3 --out /tmp/x.jsonl

Every workload runs twice per run: with ``durability="sync"`` (the checkpoint of each
super-step is saved before the next starts: the strongest per-step mode, variant without
suffix) and with ``durability="async"`` (LangGraph's default: the save runs while the next
super-step executes; variants ending in ``-async``). ``durability="exit"`` saves only when the
graph returns, so it is no per-step durability at all and is not measured.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.peers import common
from bench.peers.langgraph_graphs import (
    agent_graph,
    async_counter_graph,
    async_saver,
    counter_graph,
    pg_bytes,
    run_config,
    saver,
    sqlite_bytes,
    sqlite_pragmas,
    versions,
)

SYSTEM = "langgraph"
MODES = ("sync", "async")
BASE = {
    "W1": "steps",
    "W2": "throughput",
    "W3": "kill",
    "W4": "turns",
    "W5": "growth",
    "A2": "checkpointer",
}
METRICS = {
    "W1": ["us_per_step"],
    "W2": ["jobs_per_s", "steps_per_s"],
    "W3": ["recovery_s", "lines"],
    "W4": ["us_per_turn", "bytes_stored_20", "bytes_stored_100", "bytes_stored_200"],
    "W5": ["us_per_step_at_10", "us_per_step_at_1000", "us_per_step_at_10000", "resume_10k_s"],
    "A2": list(common.AGENT_METRICS),
}


@dataclass
class Ctx:
    args: Any
    run: int
    work: Path
    fsync: float
    version: str
    base_extra: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    def emit(
        self,
        workload: str,
        variant: str,
        metric: str,
        value: float | None,
        notes: str,
        **extra: Any,
    ) -> None:
        common.emit(
            self.args.out,
            common.Result(
                system=SYSTEM,
                version=self.version,
                workload=workload,
                variant=variant,
                backend=self.args.backend,
                durability=self.args.durability,
                metric=metric,
                value=value,
                run=self.run,
                fsync_p50_us=round(self.fsync, 1),
                notes=notes,
                extra={**self.base_extra, **extra},
            ),
        )

    @contextmanager
    def target(self, name: str) -> Iterator[str]:
        """A fresh database: a SQLite file in the run's work dir, or a new PostgreSQL database."""
        if self.args.backend == "sqlite":
            path = self.work / f"{name}.sqlite"
            if path.exists():
                raise RuntimeError(f"{path} already used in this run")
            yield str(path)
        else:
            with common.fresh_postgres_db("bench_langgraph") as url:
                yield url


def variant(base: str, mode: str) -> str:
    return base if mode == "sync" else f"{base}-async"


def saver_notes(args: Any, mode: str, aio: bool = False) -> str:
    if args.backend == "sqlite":
        sync = {"full": "FULL", "process": "NORMAL"}[args.durability]
        name = "AsyncSqliteSaver (aiosqlite)" if aio else "SqliteSaver"
        where = f"{name}, WAL, PRAGMA synchronous={sync} set on the connection passed to it"
    else:
        commit = "on" if args.durability == "full" else "off (session)"
        name = "AsyncPostgresSaver on an AsyncConnectionPool (max 10)" if aio else "PostgresSaver"
        where = f"{name} (psycopg), synchronous_commit={commit}"
    return f"{where}; durability={mode!r}"


# -- W1: step overhead -------------------------------------------------------------------------


def w1(ctx: Ctx, mode: str) -> None:
    steps = 200 if ctx.args.quick else common.W1_STEPS
    marks: list[float] = []

    def body(i: int) -> int:
        if i == 0:
            marks.append(time.perf_counter())
        out = common.step(i)
        if out == steps:
            marks.append(time.perf_counter())
        return out

    with (
        ctx.target(f"w1-{mode}") as target,
        saver(ctx.args.backend, ctx.args.durability, target) as cp,
    ):
        app = counter_graph(steps, body).compile(checkpointer=cp)
        began = time.perf_counter()
        state = app.invoke({"i": 0}, run_config("w1", steps), durability=mode)
        ended = time.perf_counter()
        if ctx.args.backend == "sqlite":
            extra = sqlite_pragmas(cp.conn)
        else:
            row = cp.conn.execute("SHOW synchronous_commit").fetchone()
            extra = {"session_synchronous_commit": row["synchronous_commit"]}
    assert state["i"] == steps, state
    ctx.emit(
        "W1",
        variant("steps", mode),
        "us_per_step",
        (ended - began) / steps * 1e6,
        f"{saver_notes(ctx.args, mode)}; one graph.invoke of {steps} super-steps, timed from the "
        "call to its return (input checkpoint and final save included) / steps",
        steps=steps,
        first_to_last_step_us=(marks[1] - marks[0]) / steps * 1e6,
        **extra,
    )


# -- W2: throughput ----------------------------------------------------------------------------


async def _w2(ctx: Ctx, mode: str, target: str, jobs: int, steps: int) -> tuple[float, list]:
    async with async_saver(ctx.args.backend, ctx.args.durability, target) as cp:
        app = async_counter_graph(steps, common.step).compile(checkpointer=cp)
        # worker start-up, outside the window: saver set up, graph compiled, one warm-up job
        await app.ainvoke({"i": 0}, run_config("warm-up", steps), durability=mode)
        began = time.perf_counter()
        states = await asyncio.gather(
            *(
                app.ainvoke({"i": 0}, run_config(f"job-{k}", steps), durability=mode)
                for k in range(jobs)
            )
        )
        return time.perf_counter() - began, states


def w2(ctx: Ctx, mode: str) -> None:
    jobs, steps = (50, common.W2_STEPS) if ctx.args.quick else (common.W2_JOBS, common.W2_STEPS)
    with ctx.target(f"w2-{mode}") as target:
        window, states = asyncio.run(_w2(ctx, mode, target, jobs, steps))
    assert all(s["i"] == steps for s in states)
    notes = (
        f"{saver_notes(ctx.args, mode, aio=True)}; {jobs} graph.ainvoke with async def nodes "
        "run by asyncio.gather in one process (LangGraph OSS has no worker service); window from "
        "just before gather to its return, after saver setup, compile and one warm-up job"
    )
    ctx.emit(
        "W2",
        variant("throughput", mode),
        "jobs_per_s",
        jobs / window,
        notes,
        jobs=jobs,
        steps=steps,
        window_s=window,
    )
    ctx.emit(
        "W2",
        variant("throughput", mode),
        "steps_per_s",
        jobs * steps / window,
        notes,
        jobs=jobs,
        steps=steps,
        window_s=window,
    )


# -- worker processes (W3, W5) -----------------------------------------------------------------


def spawn_worker(spec: dict[str, Any]) -> tuple[int, float, dict[str, Any]]:
    """Run one worker process to its end; returns (returncode, spawn time, what it wrote)."""
    out = Path(spec["out"])
    out.unlink(missing_ok=True)
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.peers.langgraph_worker", json.dumps(spec)],
        timeout=1800,
        check=False,
    )
    return proc.returncode, spawned, (json.loads(out.read_text()) if out.exists() else {})


# -- W3: crash recovery ------------------------------------------------------------------------


def w3(ctx: Ctx, mode: str) -> None:
    for kill, base, where in (
        ("in_step", "kill_in_step", f"inside step {common.W3_KILL_AT} right after its line"),
        (
            "before_step",
            "kill_before_step",
            f"at the start of step {common.W3_KILL_AT + 1}'s node, before its line (step "
            f"{common.W3_KILL_AT}'s super-step has returned; with durability='sync' its checkpoint "
            "is saved)",
        ),
    ):
        with ctx.target(f"w3-{kill}-{mode}") as target:
            lines = ctx.work / f"lines-{kill}-{mode}.txt"
            spec = {
                "task": "w3",
                "phase": "run",
                "backend": ctx.args.backend,
                "kill": kill,
                "durability": ctx.args.durability,
                "target": target,
                "mode": mode,
                "thread_id": "w3",
                "steps": common.W3_STEPS,
                "kill_at": common.W3_KILL_AT,
                "lines": str(lines),
                "out": str(ctx.work / "w3-out.json"),
            }
            code, _, crashed = spawn_worker(spec)
            if code != -9 or "killed_at" not in crashed:
                raise RuntimeError(f"worker was not SIGKILLed as planned (exit code {code})")
            code, spawned, rec = spawn_worker({**spec, "phase": "recover", "kill": None})
            if code != 0:
                raise RuntimeError(f"recovery worker exited with {code}")
        numbers = [int(x) for x in lines.read_text().split()]
        twice = sorted({n for n in numbers if numbers.count(n) > 1})
        complete = sorted(set(numbers)) == list(range(1, common.W3_STEPS + 1))
        notes = (
            f"{saver_notes(ctx.args, mode)}; SIGKILL {where}; the harness spawns a fresh process "
            "at once, which opens the saver and calls graph.invoke(None, same thread_id); "
            "recovery_s = kill to that invoke's return (process start, imports, setup, remaining "
            f"steps); steps run twice: {twice or 'none'}"
            + ("" if complete else "; SOME STEPS NEVER RAN")
        )
        extra = {
            "steps_run_twice": twice,
            "all_steps_ran": complete,
            "final_i": rec["final_i"],
            "restart_delay_s": spawned - crashed["killed_at"],
            "startup_s": rec["invoked"] - spawned,
            "invoke_s": rec["done"] - rec["invoked"],
        }
        ctx.emit(
            "W3",
            variant(base, mode),
            "recovery_s",
            rec["done"] - crashed["killed_at"],
            notes,
            **extra,
        )
        ctx.emit("W3", variant(base, mode), "lines", float(len(numbers)), notes, **extra)


# -- W4: agent-shaped --------------------------------------------------------------------------


def w4(ctx: Ctx, mode: str) -> None:
    how = (
        "SQLite file size after PRAGMA wal_checkpoint(TRUNCATE), no VACUUM"
        if ctx.args.backend == "sqlite"
        else "sum of pg_total_relation_size of checkpoints, checkpoint_blobs, checkpoint_writes "
        "and checkpoint_migrations"
    )
    notes = (
        f"{saver_notes(ctx.args, mode)}; a turn = an llm super-step then a tool super-step, "
        "messages in a list channel with operator.add (each checkpoint stores the whole list); "
        f"fresh database per N; bytes = {how}"
    )
    per_turn: dict[int, float] = {}
    for turns in common.W4_TURNS:
        with ctx.target(f"w4-{turns}-{mode}") as target:
            with saver(ctx.args.backend, ctx.args.durability, target) as cp:
                empty = pg_bytes(target) if ctx.args.backend == "postgres" else None
                app = agent_graph(turns).compile(checkpointer=cp)
                config = run_config("w4", 2 * turns)
                began = time.perf_counter()
                state = app.invoke({"messages": [], "turn": 0}, config, durability=mode)
                per_turn[turns] = (time.perf_counter() - began) / turns * 1e6
            assert len(state["messages"]) == 2 * turns
            if ctx.args.backend == "sqlite":
                sizes = sqlite_bytes(Path(target))
                stored = sizes["file_bytes"] + sizes["wal_bytes"]
            else:
                sizes = pg_bytes(target)
                stored = sizes["table_bytes"]
                sizes["empty_schema_bytes"] = empty["table_bytes"]  # type: ignore[index]
        if turns == 20:
            ctx.emit(
                "W4", variant("turns", mode), "us_per_turn", per_turn[turns], notes, turns=turns
            )
        ctx.emit(
            "W4",
            variant("turns", mode),
            f"bytes_stored_{turns}",
            float(stored),
            notes,
            turns=turns,
            us_per_turn=per_turn[turns],
            **sizes,
        )


# -- W5: journal growth ------------------------------------------------------------------------


def w5(ctx: Ctx, mode: str) -> None:
    steps = 1_000 if ctx.args.quick else common.W5_SIZES[-1]
    with ctx.target(f"w5-{mode}") as target:
        spec = {
            "task": "w5",
            "phase": "run",
            "backend": ctx.args.backend,
            "target": target,
            "durability": ctx.args.durability,
            "mode": mode,
            "thread_id": "w5",
            "steps": steps,
            "out": str(ctx.work / "w5-out.json"),
        }
        code, _, run = spawn_worker(spec)
        if code != -9 or "marks" not in run:
            raise RuntimeError(f"worker was not SIGKILLed as planned (exit code {code})")
        code, spawned, rec = spawn_worker({**spec, "phase": "recover"})
        if code != 0 or "reached" not in rec:
            raise RuntimeError(f"recovery worker exited with {code}")
    marks = run["marks"]  # marks[k] = start of step k + 1; marks[steps] = start of step steps+1
    per_step = [(b - a) * 1e6 for a, b in itertools.pairwise(marks)]
    assert len(per_step) == steps
    notes = (
        f"{saver_notes(ctx.args, mode)}; one thread of {steps} super-steps in a worker process; "
        "a step's time = from its node's start to the next node's start (body, checkpoint save, "
        "loop), kept in a list outside the checkpointer"
        + (
            ""
            if mode == "sync"
            else "; with durability='async' the loop does not wait for the "
            "saves, which queue up behind it, so these times leave most of the save out"
        )
    )
    for size in common.W5_SIZES:
        if size > steps:
            continue
        window = (
            per_step[0:10]
            if size == 10
            else (per_step[size - 10 : size] if size == steps else per_step[size - 10 : size + 10])
        )
        ctx.emit(
            "W5",
            variant("growth", mode),
            f"us_per_step_at_{size}",
            statistics.median(window),
            notes,
            steps=steps,
        )
    ctx.emit(
        "W5",
        variant("growth", mode),
        f"resume_{steps // 1000}k_s",
        rec["reached"] - rec["invoked"],
        f"{saver_notes(ctx.args, mode)}; the worker is SIGKILLed at the start of step "
        f"{steps + 1}; a fresh process opens the saver and calls graph.invoke(None, same "
        f"thread_id); timed from that call to the start of step {steps + 1} (LangGraph loads the "
        "latest saved checkpoint and replays nothing; steps after that checkpoint run again, "
        "see resumed_from_step); spawn_to_step_s includes process start",
        steps=steps,
        spawn_to_step_s=rec["reached"] - spawned,
        resumed_from_step=rec["resumed_from_step"],
        total_us_per_step=statistics.mean(per_step),
    )


# -- A2: the tool-loop agent on LangGraph's own checkpointers ----------------------------------


def a2(ctx: Ctx, mode: str) -> None:
    from bench.peers import langgraph_agents  # the agent's modules: only where A2 runs

    notes = saver_notes(ctx.args, mode, aio=True)
    for variant_name, metric, value, text, extra in langgraph_agents.a2(
        ctx, ctx.target, mode, notes
    ):
        ctx.emit("A2", variant_name, metric, value, text, **extra)


WORKLOADS: dict[str, Callable[[Ctx, str], None]] = {
    "A2": a2,
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
}


def main() -> None:
    args = common.parse_args(SYSTEM)
    info = versions()
    base_extra: dict[str, Any] = {"versions": info}
    if args.backend == "postgres":
        base_extra["postgres"] = common.postgres_settings()
    failures = 0
    for run in range(1, args.runs + 1):
        with common.workdir(args.dir) as work:
            ctx = Ctx(args, run, work, common.fsync_p50_us(work), info["langgraph"], base_extra)
            for mode in MODES:
                if args.backend == "server":
                    for metric in METRICS[args.workload]:
                        ctx.emit(
                            args.workload,
                            variant(BASE[args.workload], mode),
                            metric,
                            None,
                            "LangGraph OSS has no server backend: its durable state is a "
                            "checkpointer (SQLite or PostgreSQL) in the application process",
                        )
                    continue
                try:
                    WORKLOADS[args.workload](ctx, mode)
                except Exception as exc:
                    failures += 1
                    traceback.print_exc()
                    for metric in METRICS[args.workload]:
                        ctx.emit(
                            args.workload,
                            variant(BASE[args.workload], mode),
                            metric,
                            None,
                            f"FAILED: {type(exc).__name__}: {exc}",
                        )
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
