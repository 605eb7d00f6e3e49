"""Absurd (earendil-works/absurd, PyPI ``absurd-sdk`` + ``absurdctl``) on the W1-W5 workloads.

Absurd is durable execution inside PostgreSQL: PL/pgSQL procedures (installed with
``absurdctl init``) and a thin SDK. Every run gets a fresh database with the schema and one queue
(``bench``). Durable state = the queue's tables ``t_/r_/c_/e_/w_bench``; a step is a checkpoint
row (``ctx.step(name, fn)``), upserted in its own autocommit transaction before the step returns.

Mapping (see bench/peers/README.md):
- W1, W4: ``spawn`` then ``work_batch()`` in the calling thread (one task, claimed at once).
- W2: W2_JOBS spawns, then one ``start_worker()`` thread with the SDK defaults.
- W3: a child process spawns idempotently and runs the task until the step body SIGKILLs it;
  a fresh process repeats the spawn and runs ``start_worker`` (lease 10 s and SDK default 120 s).
- W5: 10,000 steps then ``await_event`` (the task suspends); a fresh process emits the event and
  replays the task past step 10,000.

SQLite and ``server`` backends: reported as null (Absurd runs on PostgreSQL only).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.peers import common
from bench.peers.absurd_worker import (
    KILL_FILE_ENV,
    KILL_MODE_ENV,
    MARKS,
    QUEUE,
    STEP_US,
    make_app,
    with_durability,
)

SYSTEM = "absurd"
REPO_ROOT = Path(__file__).resolve().parents[2]
QUEUE_TABLES = [f"{prefix}_{QUEUE}" for prefix in ("t", "r", "c", "e", "w")]
W3_MODES = ("inside", "between")
W3_LEASES = (10, 120)  # claim_timeout: a short lease, and the Python SDK's default

NOT_POSTGRES = (
    "Absurd runs on PostgreSQL only: its engine is the PL/pgSQL procedures of absurd.sql and "
    "absurd-sdk talks to them through psycopg 3; no SQLite (or own-server) backend exists in "
    "absurd-sdk/absurdctl (the third-party b4fun/absurd-sqlite port is not part of them)"
)


@dataclass
class Figure:
    variant: str
    metric: str
    value: float | None
    notes: str
    extra: dict[str, Any] = field(default_factory=dict)


def metrics_of(workload: str, quick: bool) -> list[tuple[str, str]]:
    """(variant, metric) pairs a workload reports: also used to report failures as null."""
    leases = W3_LEASES[:1] if quick else W3_LEASES
    return {
        "W1": [("steps", "us_per_step")],
        "W2": [("1worker", "jobs_per_s"), ("1worker", "steps_per_s")],
        "W3": [
            (f"kill_{mode}_lease{lease}", metric)
            for lease in leases
            for mode in W3_MODES
            for metric in ("recovery_s", "lines")
        ],
        "W4": [("turns", "us_per_turn")]
        + [("turns", f"bytes_stored_{n}") for n in common.W4_TURNS],
        "W5": [("10k", f"us_per_step_at_{n}") for n in common.W5_SIZES] + [("10k", "resume_10k_s")],
    }[workload]


# -- databases ---------------------------------------------------------------------------------


def absurdctl() -> str:
    beside = Path(sys.executable).parent / "absurdctl"
    return str(beside) if beside.exists() else (shutil.which("absurdctl") or "absurdctl")


@contextmanager
def absurd_db() -> Iterator[str]:
    """A fresh database with the Absurd schema (``absurdctl init``) and the queue ``bench``."""
    with common.fresh_postgres_db("bench_absurd") as url:
        for command in (["init", "-d", url], ["create-queue", "-d", url, QUEUE]):
            subprocess.run(
                [absurdctl(), *command], check=True, capture_output=True, text=True, timeout=120
            )
        yield url


def stored_bytes(url: str) -> dict[str, int]:
    """Sizes of the queue's durable state: tables with indexes and TOAST, the whole database,
    and the checkpoint payloads alone."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(('absurd.' || quote_ident(t))::regclass)),"
            " 0) FROM unnest(%s::text[]) AS t",
            (QUEUE_TABLES,),
        ).fetchone()
        database = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        payload = conn.execute(
            f"SELECT coalesce(sum(pg_column_size(state)), 0), count(*) FROM absurd.c_{QUEUE}"
        ).fetchone()
    if tables is None or database is None or payload is None:
        raise RuntimeError("size queries returned nothing")
    return {
        "tables": int(tables[0]),
        "database": int(database[0]),
        "checkpoint_payload": int(payload[0]),
        "checkpoints": int(payload[1]),
    }


def require_completed(app: Any, task_id: str, expected: Any) -> None:
    snapshot = app.fetch_task_result(task_id)
    if snapshot is None or snapshot.state != "completed":
        raise RuntimeError(f"task {task_id} ended as {snapshot}")
    if snapshot.result != expected:
        raise RuntimeError(f"task {task_id} returned {snapshot.result!r}, wanted {expected!r}")


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_MODE_ENV, KILL_FILE_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def child(command: str, url: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "bench.peers.absurd_worker", command, "--url", url, *options]


def last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON from the child: {stdout[-500:]!r}")
    return dict(json.loads(lines[-1]))


# -- workloads ---------------------------------------------------------------------------------


def run_w1(durability: str, quick: bool, workdir: Path) -> list[Figure]:
    n = 100 if quick else common.W1_STEPS
    with absurd_db() as url:
        app = make_app(with_durability(url, durability))
        try:
            MARKS.clear()
            began = time.perf_counter()
            task = app.spawn("steps", {"steps": n})
            app.work_batch(worker_id="w1", claim_timeout=120)
            ended = time.perf_counter()
            require_completed(app, task["task_id"], n)
        finally:
            app.close()
    window = MARKS["last_step"] - MARKS["first_step"]
    extra = {
        "steps": n,
        "steps_window_s": window,
        "spawn_to_complete_s": ended - began,
        "fixed_cost_ms": (ended - began - window) * 1e3,
    }
    notes = (
        f"{n} x ctx.step in one task run by work_batch() in the calling thread; timed inside "
        "the handler from before the first ctx.step to after the last one returned (spawn, "
        "claim, checkpoint preload and complete_run excluded, see extra.fixed_cost_ms); per "
        "step: checkpoint lookup + body + set_task_checkpoint_state upsert, own autocommit txn"
    )
    return [Figure("steps", "us_per_step", window / n * 1e6, notes, extra)]


def run_w2(durability: str, quick: bool, workdir: Path) -> list[Figure]:
    jobs = 20 if quick else common.W2_JOBS
    with absurd_db() as url:
        sdk_url = with_durability(url, durability)
        worker = make_app(sdk_url)  # connected before the window opens
        client = make_app(sdk_url)
        try:
            for _ in range(jobs):
                client.spawn("steps", {"steps": common.W2_STEPS})
            thread = threading.Thread(target=worker.start_worker, kwargs={"worker_id": "w2"})
            thread.start()
            deadline = time.monotonic() + 600
            with psycopg.connect(url, autocommit=True) as conn:
                while time.monotonic() < deadline:
                    done, failed = conn.execute(
                        "SELECT count(*) FILTER (WHERE state = 'completed'),"
                        f" count(*) FILTER (WHERE state IN ('failed', 'cancelled')) FROM "
                        f"absurd.t_{QUEUE}"
                    ).fetchone() or (0, 0)
                    if done + failed >= jobs:
                        break
                    time.sleep(0.05)
                worker.stop_worker()
                thread.join(timeout=30)
                first, last, completed = conn.execute(
                    f"SELECT extract(epoch FROM min(t.first_started_at)),"
                    f" extract(epoch FROM max(r.completed_at)), count(*) FILTER"
                    f" (WHERE r.state = 'completed') FROM absurd.t_{QUEUE} t"
                    f" JOIN absurd.r_{QUEUE} r ON r.run_id = t.last_attempt_run"
                ).fetchone() or (None, None, 0)
        finally:
            worker.stop_worker()
            worker.close()
            client.close()
    if completed != jobs:
        raise RuntimeError(f"only {completed} of {jobs} tasks completed")
    window = float(last) - float(first)
    extra = {"jobs": jobs, "steps_per_job": common.W2_STEPS, "window_s": window}
    notes = (
        f"{jobs} tasks spawned before the worker starts; one start_worker() thread in the "
        "harness process, SDK defaults (concurrency 1, poll 0.25 s, claim_timeout 120); window "
        "from the first task's first_started_at (its claim) to the last run's completed_at, "
        "both Postgres timestamps, so worker start-up and the spawns are excluded"
    )
    return [
        Figure("1worker", "jobs_per_s", jobs / window, notes, extra),
        Figure("1worker", "steps_per_s", jobs * common.W2_STEPS / window, notes, extra),
    ]


def w3_variant(durability: str, workdir: Path, mode: str, lease: int) -> dict[str, Any]:
    path = workdir / f"w3-{mode}-{lease}.lines"
    kill_file = workdir / f"w3-{mode}-{lease}.killed"
    with absurd_db() as url:
        sdk_url = with_durability(url, durability)
        crash = subprocess.run(
            child("w3-crash", sdk_url, "--lease", str(lease), "--path", str(path)),
            env=child_env(**{KILL_MODE_ENV: mode, KILL_FILE_ENV: str(kill_file)}),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if crash.returncode != -signal.SIGKILL:
            raise RuntimeError(f"crash child exited {crash.returncode}: {crash.stderr[-800:]}")
        killed_at = float(kill_file.read_text())
        lines_at_kill = len(path.read_text().split())
        recover = subprocess.run(
            child("w3-recover", sdk_url, "--lease", str(lease), "--path", str(path)),
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=lease + 300,
        )
        if recover.returncode != 0:
            raise RuntimeError(f"recovery exited {recover.returncode}: {recover.stderr[-800:]}")
        info = last_json(recover.stdout)
        if info["state"] != "completed":
            raise RuntimeError(f"task ended as {info['state']} after the crash")
        with psycopg.connect(url, autocommit=True) as conn:
            runs = conn.execute(
                "SELECT attempt, state, extract(epoch FROM started_at),"
                " extract(epoch FROM completed_at), failure_reason->>'name'"
                f" FROM absurd.r_{QUEUE} WHERE task_id = %s ORDER BY attempt",
                (info["task_id"],),
            ).fetchall()
    numbers = [int(x) for x in path.read_text().split()]
    last = runs[-1]
    completed_at, reclaimed_at = float(last[3]), float(last[2])
    return {
        "recovery_s": completed_at - killed_at,
        "lines": len(numbers),
        "extra": {
            "lease_s": lease,
            "lines_at_kill": lines_at_kill,
            "duplicated_steps": sorted({n for n in numbers if numbers.count(n) > 1}),
            "missing_steps": sorted(set(range(1, common.W3_STEPS + 1)) - set(numbers)),
            "kill_to_reclaim_s": reclaimed_at - killed_at,
            "reclaim_to_complete_s": completed_at - reclaimed_at,
            "recovery_process_start_to_complete_s": completed_at - info["process_began"],
            "runs": [{"attempt": a, "state": s, "failure": f} for a, s, _started, _done, f in runs],
        },
    }


def run_w3(durability: str, quick: bool, workdir: Path) -> list[Figure]:
    figures = []
    for lease in W3_LEASES[:1] if quick else W3_LEASES:
        for mode in W3_MODES:
            variant = f"kill_{mode}_lease{lease}"
            where = (
                f"inside step {common.W3_KILL_AT} (the body SIGKILLs its process after writing "
                "and fsyncing its line, before the checkpoint)"
                if mode == "inside"
                else f"between steps (after step {common.W3_KILL_AT}'s checkpoint committed, "
                f"before step {common.W3_KILL_AT + 1})"
            )
            notes = (
                f"kill {where}; a fresh process repeats the idempotent spawn and runs "
                f"start_worker(claim_timeout={lease}); the dead run is swept ($ClaimTimeout) by "
                "the first claim after its lease expires, then attempt 2 replays; recovery_s = "
                "Postgres completed_at - time.time() written just before the kill"
            )
            try:
                got = w3_variant(durability, workdir, mode, lease)
            except Exception as exc:
                for metric in ("recovery_s", "lines"):
                    figures.append(Figure(variant, metric, None, f"FAILED: {exc!r}; {notes}"))
                continue
            for metric in ("recovery_s", "lines"):
                figures.append(Figure(variant, metric, got[metric], notes, got["extra"]))
    return figures


def run_w4(durability: str, quick: bool, workdir: Path) -> list[Figure]:
    per_turn: dict[int, float] = {}
    sizes: dict[int, dict[str, int]] = {}
    for turns in common.W4_TURNS:
        with absurd_db() as url:
            before = stored_bytes(url)
            app = make_app(with_durability(url, durability))
            try:
                MARKS.clear()
                task = app.spawn("agent", {"turns": turns})
                app.work_batch(worker_id="w4", claim_timeout=120)
                require_completed(app, task["task_id"], 2 * turns)
            finally:
                app.close()
            after = stored_bytes(url)
        per_turn[turns] = (MARKS["last_step"] - MARKS["first_step"]) / turns * 1e6
        sizes[turns] = {key: after[key] - before[key] for key in after}
    extra = {"us_per_turn": per_turn, "stored": sizes}
    notes = (
        "per turn: ctx.step('llm') on the growing messages then ctx.step('tool') (checkpoints "
        "llm, llm#2, ... and tool, tool#2, ...), one task run by work_batch(); us_per_turn timed "
        "inside the handler (first step to last) for 20 turns; bytes_stored_N = growth of "
        "sum(pg_total_relation_size) of the queue tables t_/r_/c_/e_/w_bench (with indexes and "
        "TOAST) from the empty queue to the completed task, fresh database per N (8 KiB pages, "
        "fillfactor 70 on t_/r_/c_; extra.stored also has pg_database_size growth and the "
        "checkpoint payloads alone)"
    )
    figures = [Figure("turns", "us_per_turn", per_turn[20], notes, extra)]
    figures += [
        Figure("turns", f"bytes_stored_{n}", float(sizes[n]["tables"]), notes, extra)
        for n in common.W4_TURNS
    ]
    return figures


def run_w5(durability: str, quick: bool, workdir: Path) -> list[Figure]:
    n = 1_010 if quick else common.W5_SIZES[-1]
    with absurd_db() as url:
        sdk_url = with_durability(url, durability)
        before = stored_bytes(url)
        app = make_app(sdk_url)
        try:
            task = app.spawn("journal", {"steps": n, "block": True})
            app.work_batch(worker_id="w5", claim_timeout=120)
            snapshot = app.fetch_task_result(task["task_id"])
        finally:
            app.close()
        if snapshot is None or snapshot.state != "sleeping":
            raise RuntimeError(f"the task should be waiting for its event, is {snapshot}")
        step_us = list(STEP_US)
        size = {key: value - before[key] for key, value in stored_bytes(url).items()}
        launched = time.time()
        resume = subprocess.run(
            child("w5-resume", sdk_url, "--task-id", str(task["task_id"])),
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    if resume.returncode != 0:
        raise RuntimeError(f"resume exited {resume.returncode}: {resume.stderr[-800:]}")
    info = last_json(resume.stdout)
    if info["state"] != "completed" or info["replayed_steps"] != n:
        raise RuntimeError(f"resume ended badly: {info}")
    resume_s = info["passed_last_step"] - info["recovery_start"]
    windows = {10: step_us[0:10], 1_000: step_us[990:1_010], 10_000: step_us[9_990:10_000]}
    extra = {
        "steps": n,
        "total_steps_s": sum(step_us) / 1e6,
        "stored_bytes_growth": size,
        "resume_claim_and_preload_s": info["handler_enter"] - info["recovery_start"],
        "resume_replay_in_handler_s": info["passed_last_step"] - info["handler_enter"],
        "resume_from_process_launch_s": info["passed_last_step"] - launched,
    }
    notes = (
        f"one task of {n} ctx.step calls run by work_batch(); each step's wall time recorded "
        "in the handler into a module-level list; medians over steps 1-10, 991-1010, "
        "9991-10000. After the last step the task calls ctx.await_event('resume') and "
        "suspends; resume_10k_s: a fresh process (connected) emits the event and runs "
        "work_batch(): claim, one query preloading every checkpoint, replay of the handler "
        f"from the cache, timed from just before emit_event to the code passing step {n}"
    )
    figures = []
    for size_at, samples in windows.items():
        value = statistics.median(samples) if len(samples) >= min(size_at, 10) else None
        figures.append(
            Figure(
                "10k",
                f"us_per_step_at_{size_at}",
                value,
                notes if value is not None else f"not measured with {n} steps (--quick)",
                extra,
            )
        )
    figures.append(Figure("10k", "resume_10k_s", resume_s, notes, extra))
    return figures


WORKLOADS: dict[str, Callable[[str, bool, Path], list[Figure]]] = {
    "W1": run_w1,
    "W2": run_w2,
    "W3": run_w3,
    "W4": run_w4,
    "W5": run_w5,
}


def durability_note(durability: str, settings: dict[str, str]) -> str:
    server = f"server synchronous_commit={settings.get('synchronous_commit')}, fsync=" + str(
        settings.get("fsync")
    )
    if durability == "process":
        return (
            f"process: synchronous_commit=off on the SDK's sessions ({server}): a checkpoint "
            "survives a worker crash but a Postgres or OS crash can lose the last ~0.6 s"
        )
    return (
        f"full: each checkpoint is committed (WAL flushed) in its own autocommit transaction "
        f"before ctx.step returns ({server})"
    )


def measure(args: Any, workdir: Path) -> list[Figure]:
    if args.backend != "postgres":
        return [Figure(v, m, None, NOT_POSTGRES) for v, m in metrics_of(args.workload, False)]
    settings = common.postgres_settings()
    try:
        figures = WORKLOADS[args.workload](args.durability, args.quick, workdir)
    except Exception as exc:
        figures = [
            Figure(v, m, None, f"FAILED: {exc!r}") for v, m in metrics_of(args.workload, args.quick)
        ]
    note = durability_note(args.durability, settings)
    for figure in figures:
        figure.notes = f"{figure.notes}; {note}"
        figure.extra = {**figure.extra, "postgres": settings, "quick": args.quick}
    return figures


def main() -> None:
    args = common.parse_args(SYSTEM)
    version = importlib.metadata.version("absurd-sdk")
    for run in range(1, args.runs + 1):
        with common.workdir(args.dir) as workdir:
            fsync_us = common.fsync_p50_us(workdir)
            figures = measure(args, workdir)
        for figure in figures:
            common.emit(
                args.out,
                common.Result(
                    system=SYSTEM,
                    version=version,
                    workload=args.workload,
                    variant=figure.variant,
                    backend=args.backend,
                    durability=args.durability,
                    metric=figure.metric,
                    value=figure.value,
                    run=run,
                    fsync_p50_us=fsync_us,
                    notes=figure.notes,
                    extra=figure.extra,
                ),
            )


if __name__ == "__main__":
    main()
