"""DBOS Transact (PyPI ``dbos``) on the peer workloads W1-W5; see bench/peers/README.md.

``python -m bench.peers.dbos --workload W1 --backend sqlite --durability full --runs 3
--out results.jsonl``. Every measurement runs in fresh worker processes
(``bench.peers.dbos_worker``) on a fresh database: a SQLite file in the run's work directory, or
a new PostgreSQL database from ``common.fresh_postgres_db``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.peers import agent_script, common

SYSTEM = "dbos"
ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT_S = 1_800


@dataclass
class Run:
    """One run's context: arguments, work directory and the rows it produced."""

    args: Any
    dir: Path
    rows: list[tuple[str, str, float | None, str, dict[str, Any]]] = field(default_factory=list)

    def add(
        self,
        variant: str,
        metric: str,
        value: float | None,
        notes: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.rows.append((variant, metric, value, notes, extra or {}))


class WorkerFailed(Exception):
    pass


# -- databases and worker processes -----------------------------------------------------------


@contextmanager
def database(run: Run, name: str) -> Iterator[str]:
    if run.args.backend == "sqlite":
        yield f"sqlite:///{run.dir / name}.sqlite"
    else:
        with common.fresh_postgres_db("bench_dbos") as url:
            yield url


def worker(
    run: Run,
    spec: dict[str, Any],
    env: dict[str, str] | None = None,
    expect_kill: bool = False,
    module: str = "bench.peers.dbos_worker",
) -> dict[str, Any]:
    """Run one worker process to its end; return what it wrote (or {} if it was killed)."""
    tag = f"{spec['task']}-{time.monotonic_ns()}"
    spec = {**spec, "durability": run.args.durability, "result": str(run.dir / f"{tag}.json")}
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    log = run.dir / f"{tag}.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", module, json.dumps(spec)],
            cwd=run.dir,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
    if expect_kill:
        if proc.returncode != -9:
            raise WorkerFailed(f"{tag}: expected SIGKILL, exit {proc.returncode}")
        return {}
    if proc.returncode != 0:
        tail = log.read_text()[-2000:]
        raise WorkerFailed(f"{tag}: exit {proc.returncode}: {tail}")
    return json.loads(Path(spec["result"]).read_text())


DURABILITY = {  # see the README: DBOS sets no SQLite pragma of its own
    ("sqlite", "full"): "[DBOS default engine: journal_mode=DELETE, synchronous=FULL]",
    ("sqlite", "process"): "[custom engine: journal_mode=WAL, synchronous=NORMAL]",
    ("postgres", "full"): "[PostgreSQL default: synchronous_commit=on]",
    ("postgres", "process"): "[synchronous_commit=off]",
}


def median_us(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1e6


# -- workloads --------------------------------------------------------------------------------


def w1(run: Run) -> None:
    steps = 100 if run.args.quick else common.W1_STEPS
    with database(run, "w1") as url:
        r = worker(run, {"task": "w1", "url": url, "steps": steps})
    assert r["value"] == steps, r
    run.add(
        "steps",
        "us_per_step",
        r["w1_s"] / steps * 1e6,
        f"{steps} @DBOS.step in one workflow; timed in the body, first step to last",
        {"sqlite_pragmas": r["sqlite"]} if r["sqlite"] else {},
    )


def w2(run: Run) -> None:
    jobs, steps = (20, common.W2_STEPS) if run.args.quick else (common.W2_JOBS, common.W2_STEPS)
    with database(run, "w2") as url:
        r = worker(run, {"task": "w2", "url": url, "jobs": jobs, "steps": steps})
    assert r["values"] == [steps] * jobs, r
    window = r["window_s"]
    notes = f"{jobs} x {steps} steps on a DBOS queue, 1 process; first enqueue -> last result"
    extra = {k: r[k] for k in ("enqueue_s", "first_body_start_s", "last_body_end_s")}
    extra["window_s"] = window
    run.add("queue", "jobs_per_s", jobs / window, notes, extra)
    run.add("queue", "steps_per_s", jobs * steps / window, notes, extra)


def w3_variant(run: Run, variant: str, kill_env: str) -> None:
    wid = f"w3-{variant}"
    lines = run.dir / f"{variant}.lines"
    with database(run, f"w3-{variant}") as url:
        spec = {"url": url, "workflow_id": wid}
        env = {kill_env: str(common.W3_KILL_AT)}
        worker(
            run,
            {**spec, "task": "w3_run", "lines": str(lines), "steps": common.W3_STEPS},
            env,
            expect_kill=True,
        )
        killed = float(Path(str(lines) + ".killed").read_text())
        spawned = time.time()
        r = worker(run, {**spec, "task": "recover"})
    assert r["value"] == common.W3_STEPS, r
    numbers = [int(x) for x in lines.read_text().split()]
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    where = "inside step" if variant == "kill_in_step" else "after step"
    notes = f"SIGKILL {where} {common.W3_KILL_AT}; fresh process: DBOS.launch() recovers"
    extra = {
        "steps_run_twice": twice,
        "kill_to_spawn_s": spawned - killed,
        "kill_to_launch_s": r["launch_began"] - killed,
        "launch_s": r["launched"] - r["launch_began"],
        "launched_to_done_s": r["done"] - r["launched"],
        "kill_to_body_end_s": r["body_end"] - killed if r["body_end"] else None,
    }
    run.add(variant, "recovery_s", r["done"] - killed, notes, extra)
    run.add(variant, "lines", float(len(numbers)), f"{notes}; ran twice: {twice}", extra)


def w3(run: Run) -> None:
    # the environment variables dbos_worker reads (not imported: it would load DBOS here)
    w3_variant(run, "kill_in_step", "BENCH_DBOS_KILL_IN_STEP")
    w3_variant(run, "kill_between_steps", "BENCH_DBOS_KILL_AFTER_STEP")


def w4(run: Run) -> None:
    store = (
        "file size after wal_checkpoint(TRUNCATE)"
        if run.args.backend == "sqlite"
        else "sum of pg_total_relation_size, schema dbos"
    )
    per_turn: dict[int, float] = {}
    for turns in common.W4_TURNS:
        with database(run, f"w4-{turns}") as url:
            r = worker(run, {"task": "w4", "url": url, "turns": turns})
        assert r["value"] == 2 * turns, r
        per_turn[turns] = r["w4_s"] / turns * 1e6
        run.add(
            "agent",
            f"bytes_stored_{turns}",
            float(r["bytes"]),
            f"{store}; fresh database; net of launch-time size in extra",
            {"baseline_bytes": r["baseline_bytes"], "net_bytes": r["bytes"] - r["baseline_bytes"]},
        )
    run.add(
        "agent",
        "us_per_turn",
        per_turn[common.W4_TURNS[0]],
        f"N={common.W4_TURNS[0]}, 2 steps per turn, timed in the body; every N in extra",
        {"us_per_turn_by_n": per_turn},
    )


def w5(run: Run) -> None:
    steps = 1_010 if run.args.quick else common.W5_SIZES[-1]
    wid = "w5-journal"
    times_path = run.dir / "w5-times.json"
    with database(run, "w5") as url:
        spec = {"url": url, "workflow_id": wid}
        worker(
            run,
            {**spec, "task": "w5_run", "steps": steps, "times": str(times_path)},
            {"BENCH_DBOS_KILL_AFTER_LOOP": "1"},
            expect_kill=True,
        )
        spawned = time.time()
        r = worker(run, {**spec, "task": "recover"})
    assert r["value"] == steps, r
    times: list[float] = json.loads(times_path.read_text())
    notes = f"{steps} steps in one workflow, each timed in the body"
    # steps 1-10, 991-1,010 and 9,991-10,000 (1-based), as the workload defines them
    windows = {10: (0, 10), 1_000: (990, 1_010), 10_000: (9_990, 10_000)}
    for size in common.W5_SIZES:
        lo, hi = windows[size]
        value = median_us(times[lo:hi]) if hi <= steps else None
        shown = notes if value is not None else f"{notes}; --quick runs only {steps} steps"
        run.add("journal", f"us_per_step_at_{size}", value, shown)
    replay = r["replay_times"]
    run.add(
        "journal",
        "resume_10k_s",
        r["passed"] - r["launch_began"],
        f"SIGKILL after step {steps}; fresh process: DBOS.launch() -> body passes it again",
        {
            "steps": steps,
            "spawn_to_passed_s": r["passed"] - spawned,
            "replay_us_per_step_median": median_us(replay) if replay else None,
        },
    )


A1_WORKER = "bench.peers.dbos_agent_worker"
A1_WHAT = (
    "the PydanticAI agent with PydanticAI's DBOSDurability (model requests are DBOS steps), "
    "run in an async @DBOS.workflow; reserve and charge are @DBOS.step() tools, lookup plain"
)


def a1_kill(run: Run) -> dict[str, Any]:
    """Process A runs the 9-turn workflow and SIGKILLs itself right after charge's side effect;
    a fresh process launches DBOS, which recovers the workflow."""
    world = run.dir / "a1-world"
    world.mkdir()
    env = {agent_script.WORLD_ENV: str(world)}
    kill = {**env, agent_script.KILL_ENV: str(agent_script.KILL_TURN)}
    with database(run, "a1-kill") as url:
        spec = {"url": url, "workflow_id": "a1-kill", "turns": agent_script.KILL_RUN_TURNS}
        worker(run, {**spec, "task": "run"}, kill, expect_kill=True, module=A1_WORKER)
        killed = float((world / "killed").read_text())
        r = worker(run, {**spec, "task": "recover"}, env, module=A1_WORKER)
    assert r["value"] == agent_script.KILL_RUN_TURNS, r
    found = agent_script.duplicates((world / "calls.log").read_text())
    what = "a fresh process's DBOS.launch() recovered the workflow and it completed"
    return found | {"recovery_s": r["done"] - killed, "what": what}


def a1(run: Run) -> None:
    turns, stored_turns, repeats = common.agent_sizes(run.args.quick)
    with database(run, "a1-time") as url:
        timed = worker(
            run, {"task": "time", "url": url, "turns": turns, "repeats": repeats}, module=A1_WORKER
        )
    floor = {"us_per_turn": timed.pop("plain_us_per_turn"), "runs_s": timed.pop("plain_runs_s")}
    with database(run, "a1-bytes") as url:
        size = worker(run, {"task": "bytes", "url": url, "turns": stored_turns}, module=A1_WORKER)
    how = (
        "file size growth after wal_checkpoint(TRUNCATE)"
        if run.args.backend == "sqlite"
        else "growth of pg_total_relation_size, schema dbos"
    )
    size["how"] = f"{how}, one workflow of {stored_turns} turns, fresh database"
    kill = a1_kill(run)
    timing = f"N={turns} turns, median of {repeats} workflows, timed in the workflow body"
    for row in common.agent_rows("DBOSDurability", A1_WHAT, timing, timed, floor, size, kill):
        run.add(*row)


WORKLOADS: dict[str, Callable[[Run], None]] = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "A1": a1,
}
W3_METRICS = [
    (v, m) for v in ("kill_in_step", "kill_between_steps") for m in ("recovery_s", "lines")
]
METRICS = {  # what each workload reports: a failed or impossible one reports these as null
    "W1": [("steps", "us_per_step")],
    "W2": [("queue", "jobs_per_s"), ("queue", "steps_per_s")],
    "W3": W3_METRICS,
    "W4": [("agent", f"bytes_stored_{n}") for n in common.W4_TURNS] + [("agent", "us_per_turn")],
    "W5": [("journal", f"us_per_step_at_{n}") for n in common.W5_SIZES]
    + [("journal", "resume_10k_s")],
    "A1": [("DBOSDurability", m) for m in common.AGENT_METRICS],
}


def main() -> None:
    args = common.parse_args(SYSTEM)
    dbos_version = version("dbos")
    settings = "" if args.backend != "postgres" else json.dumps(common.postgres_settings())
    for number in range(1, args.runs + 1):
        with common.workdir(args.dir) as directory:
            run = Run(args, directory)
            fsync = common.fsync_p50_us(directory)
            error = ""
            if args.backend == "server":
                error = "DBOS has no server of its own: its backends are SQLite and PostgreSQL"
            else:
                try:
                    WORKLOADS[args.workload](run)
                except (
                    WorkerFailed,
                    AssertionError,
                    KeyError,
                    subprocess.TimeoutExpired,
                    OSError,
                ) as e:
                    error = f"FAILED: {type(e).__name__}: {e}"[:1500]
            produced = {(variant, metric) for variant, metric, *_ in run.rows}
            for variant, metric in METRICS[args.workload]:
                if (variant, metric) not in produced:
                    run.add(variant, metric, None, error or "FAILED: not produced")
            for variant, metric, value, notes, extra in run.rows:
                if settings:
                    extra = {**extra, "postgres": json.loads(settings)}
                common.emit(
                    args.out,
                    common.Result(
                        system=SYSTEM,
                        version=dbos_version,
                        workload=args.workload,
                        variant=variant,
                        backend=args.backend,
                        durability=args.durability,
                        metric=metric,
                        value=value,
                        run=number,
                        fsync_p50_us=fsync,
                        notes=f"{notes} {DURABILITY.get((args.backend, args.durability), '')}",
                        extra={**extra, "load_1m": os.getloadavg()[0]},
                    ),
                )


if __name__ == "__main__":
    main()
