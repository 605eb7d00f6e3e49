"""Benchmark of the durable core on SQLite: step overhead (W1) and throughput (W2).

    python -m bench.core [--quick] [--runs N] [--only w1|w2] [--dir DIR]

Every figure is the median of ``--runs`` runs (3; 1 with ``--quick``). Runs go round-robin over
all cases, each on a fresh SQLite file in a fresh directory, and each run first times 200 x
(write 4 KiB + ``os.fsync``) in that directory. Results are written to
``bench/results/core-<UTC date time>.json``. See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

import aetheris
from aetheris import App, Job, JobStatus
from aetheris.journal import EventType
from aetheris.testing import running_worker
from bench import core_app

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"

FSYNC_WRITES = 200
FSYNC_BLOCK = 4096
W1_STEPS = 1000
W1_TIMEOUT = 600.0
W2_JOBS = 200
W2_STEPS = 10
W2_CONCURRENCY = 16
W2_WORKERS = (1, 2)
W2_TIMEOUT = 600.0
W2_POLL = 0.1
STOP_TIMEOUT = 30.0
SYNC_MODES = ("full", "normal")
WORKER_APP = "bench.core_app:app"

Record = dict[str, Any]
Detail = Callable[[int, int | None], None]


# -- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One measured configuration; its figure is the median of its runs."""

    key: str
    workload: str
    label: str
    sync: str | None
    params: dict[str, Any]


@dataclass
class Outcome:
    """The runs of one case."""

    case: Case
    runs: list[Record] = field(default_factory=list)

    def values(self, name: str) -> list[float]:
        return [float(run[name]) for run in self.runs]

    def median(self, name: str) -> float:
        return statistics.median(self.values(name))

    def fsync_p50(self) -> float:
        """The median over runs of each run's fsync p50."""
        return statistics.median(float(run["fsync"]["p50_us"]) for run in self.runs)

    def fsync_p90_max(self) -> float:
        """The worst fsync p90 of any run: shows a run that met a slow-disk burst."""
        return max(float(run["fsync"]["p90_us"]) for run in self.runs)


def w1_cases() -> list[Case]:
    n = W1_STEPS
    cases = [
        Case("w1.baseline.sync", "W1", "baseline: v = fn(i)", None, {"body": "sync", "n": n}),
        Case(
            "w1.baseline.async", "W1", "baseline: v = await fn(i)", None, {"body": "async", "n": n}
        ),
    ]
    for sync in SYNC_MODES:
        cases += [
            Case(
                f"w1.step_sync.{sync}",
                "W1",
                "ctx.step, def fn",
                sync,
                {"agent": "w1_steps", "input": {"n": n, "body": "sync"}, "commits_per_step": 1},
            ),
            Case(
                f"w1.step_async.{sync}",
                "W1",
                "ctx.step, async def fn",
                sync,
                {"agent": "w1_steps", "input": {"n": n, "body": "async"}, "commits_per_step": 1},
            ),
            Case(
                f"w1.tool_at_most_once.{sync}",
                "W1",
                "tool, at_most_once",
                sync,
                {"agent": "w1_tool", "input": {"n": n}, "commits_per_step": 2},
            ),
        ]
    return cases


def w2_cases() -> list[Case]:
    return [
        Case(
            f"w2.workers{workers}.{sync}",
            "W2",
            f"{workers}",
            sync,
            {"workers": workers, "jobs": W2_JOBS, "steps": W2_STEPS, "concurrency": W2_CONCURRENCY},
        )
        for sync in SYNC_MODES
        for workers in W2_WORKERS
    ]


# -- measurements shared by every run ---------------------------------------------------------


def fsync_probe(directory: Path) -> Record:
    """Time ``FSYNC_WRITES`` x (write 4 KiB + fsync) to a file next to the database."""
    path = directory / "fsync.probe"
    block = os.urandom(FSYNC_BLOCK)
    samples: list[float] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(FSYNC_WRITES):
            began = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            samples.append((time.perf_counter() - began) * 1e6)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {
        "p50_us": _percentile(samples, 50),
        "p90_us": _percentile(samples, 90),
        "n": len(samples),
    }


def _percentile(samples: Sequence[float], pct: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def sqlite_url(path: Path, sync: str | None) -> str:
    """``sqlite:////abs/path`` (FULL, the store's default) or with ``?synchronous=normal``."""
    suffix = "" if sync in (None, "full") else f"?synchronous={sync}"
    return f"sqlite:///{path.resolve()}{suffix}"


# -- W1: step overhead ------------------------------------------------------------------------


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
    _expect(value == n, f"baseline returned {value}")
    return {"us_per_step": span / n * 1e6, "span_s": span}


async def w1_job(case: Case, workdir: Path) -> Record:
    """One job of n sequential steps (or tool calls), one in-process worker, a fresh file."""
    n = case.params["input"]["n"]
    app = core_app.build_app(sqlite_url(workdir / "w1.sqlite", case.sync))
    core_app.MARKS.clear()
    async with app, running_worker(app, concurrency=1):
        handle = await app.start(case.params["agent"], case.params["input"])
        value = await handle.result(timeout=W1_TIMEOUT)
        job = await handle.job()
    _expect(value == n, f"job {job.id} returned {value!r}, expected {n}")
    _expect(len(core_app.MARKS) == 1, f"expected one timing mark, got {core_app.MARKS}")
    span = core_app.MARKS[0]
    return {
        "us_per_step": span / n * 1e6,
        "span_s": span,
        "job_wall_s": job.updated_at - job.created_at,
        "events": job.event_count,
        "commits_per_step": case.params["commits_per_step"],
    }


# -- W2: throughput with real worker processes ------------------------------------------------


async def w2_run(case: Case, workdir: Path, detail: Detail) -> Record:
    """Start all jobs, then spawn the workers and wait until every job has succeeded."""
    jobs, steps = case.params["jobs"], case.params["steps"]
    url = sqlite_url(workdir / "w2.sqlite", case.sync)
    async with core_app.build_app(url) as app:
        enqueue_s = await enqueue(app, jobs, steps)
        spawned = time.time()
        procs = await spawn_workers(
            case.params["workers"], case.params["concurrency"], url, workdir
        )
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
        "all_registered_s": last_registration(workdir / "w2.sqlite") - spawned,
        "observed_wall_s": seen - spawned,
        "enqueue_s": enqueue_s,
        "worker_exit_codes": exit_codes,
    }


async def enqueue(app: App, jobs: int, steps: int) -> float:
    began = time.perf_counter()
    for _ in range(jobs):
        await app.start("w2_job", {"steps": steps})
    return time.perf_counter() - began


async def spawn_workers(
    count: int, concurrency: int, url: str, workdir: Path
) -> list[asyncio.subprocess.Process]:
    env = {**os.environ, "AETHERIS_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "aetheris", "worker", "--app", WORKER_APP]
    command += ["--concurrency", str(concurrency)]
    procs = []
    for index in range(count):
        log = os.open(workdir / f"worker-{index}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            procs.append(
                await asyncio.create_subprocess_exec(
                    *command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            )
        finally:
            os.close(log)
    return procs


async def wait_all_succeeded(
    app: App, jobs: int, procs: Sequence[asyncio.subprocess.Process], detail: Detail
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
        _expect(not stuck, f"jobs ended badly: {stuck}")
        dead = [p.returncode for p in procs if p.returncode is not None]
        _expect(not dead, f"a worker exited early with code {dead}; see worker-*.log")
        _expect(time.monotonic() < deadline, f"not done after {W2_TIMEOUT}s: {dict(counts)}")
        await asyncio.sleep(W2_POLL)


async def stop_workers(procs: Sequence[asyncio.subprocess.Process]) -> list[int]:
    """SIGTERM every worker, then wait; SIGKILL one that does not stop in time."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(await asyncio.wait_for(proc.wait(), STOP_TIMEOUT))
        except TimeoutError:
            proc.kill()
            codes.append(await proc.wait())
    return codes


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
    _expect(len(done) == jobs, f"{len(done)} job_succeeded events for {jobs} jobs")
    first_by_owner = _first_claim_by_owner(claims)
    first = min(at for at, _ in claims)
    return {
        "window_s": max(done) - first,
        "first_claim_at": first,
        "start_skew_s": max(first_by_owner.values()) - first,
        "claims": len(claims),
        "jobs_per_worker": sorted(Counter(owner for _, owner in claims).values(), reverse=True),
    }


def last_registration(path: Path) -> float:
    """When the last worker registered its agents (read-only look at the ``agents`` table)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT max(last_seen) FROM agents").fetchone()
    finally:
        conn.close()
    return float(row[0])


def _check_w2_job(job: Job, steps: int) -> None:
    _expect(job.status is JobStatus.SUCCEEDED, f"job {job.id} is {job.status}")
    _expect(job.result == steps, f"job {job.id} returned {job.result!r}, expected {steps}")


def _first_claim_by_owner(claims: Sequence[tuple[float, str]]) -> dict[str, float]:
    first: dict[str, float] = {}
    for at, owner in claims:
        first[owner] = min(at, first.get(owner, at))
    return first


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise RuntimeError(f"benchmark run invalid: {problem}")


# -- orchestration ----------------------------------------------------------------------------


class Ui:
    """Rich progress: one bar over all runs, one line for the run in progress."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self.overall = self.progress.add_task("all runs", total=total)
        self.current: TaskID = self.progress.add_task("", total=None)

    def begin(self, case: Case, round_: int, rounds: int) -> None:
        sync = f" [{case.sync}]" if case.sync else ""
        what = f"{case.label} workers" if case.workload == "W2" else case.label
        description = f"{case.workload} {what}{sync} (run {round_ + 1}/{rounds})"
        self.progress.reset(self.current, description=description, total=None)

    def detail(self, done: int, total: int | None) -> None:
        self.progress.update(self.current, completed=done, total=total)

    def finish(self, case: Case, record: Record) -> None:
        self.progress.advance(self.overall)
        self.console.log(f"{case.key:<28} {_headline(case, record)}")


def _headline(case: Case, record: Record) -> str:
    fsync = f"fsync p50 {record['fsync']['p50_us']:.0f} µs"
    load = f"load {record['load_1m']:.1f}"
    if case.workload == "W2":
        skew = f", skew {record['start_skew_s']:.2f} s" if case.params["workers"] > 1 else ""
        return (
            f"{record['jobs_per_s']:8.1f} jobs/s {record['steps_per_s']:8.0f} steps/s  "
            f"window {record['window_s']:.2f} s, startup {record['startup_s']:.2f} s{skew}  "
            f"({fsync}, {load})"
        )
    return f"{record['us_per_step']:8.2f} µs/step  ({fsync}, {load})"


def prepare(workdir: Path) -> Record:
    """A fresh directory for the run, and the fsync latency measured in it."""
    workdir.mkdir(parents=True)
    return fsync_probe(workdir)


async def run_case(case: Case, workdir: Path, ui: Ui) -> Record:
    fsync = prepare(workdir)
    runner: Awaitable[Record]
    if case.workload == "W2":
        runner = w2_run(case, workdir, ui.detail)
    elif case.sync is None:
        runner = w1_baseline(case)
    else:
        runner = w1_job(case, workdir)
    record = await runner
    return {"fsync": fsync, "load_1m": os.getloadavg()[0], **record}


async def run_all(cases: Sequence[Case], rounds: int, base: Path, ui: Ui) -> list[Outcome]:
    """Round-robin: every case once per round, so drift hits all cases alike."""
    outcomes = [Outcome(case) for case in cases]
    with ui.progress:
        for round_ in range(rounds):
            for outcome in outcomes:
                ui.begin(outcome.case, round_, rounds)
                workdir = base / f"round{round_}" / outcome.case.key
                outcome.runs.append(await run_case(outcome.case, workdir, ui))
                ui.finish(outcome.case, outcome.runs[-1])
    return outcomes


# -- reporting --------------------------------------------------------------------------------


def _runs(values: Sequence[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def w1_table(outcomes: Sequence[Outcome]) -> Table:
    table = Table(title=f"W1 step overhead: 1 job x {W1_STEPS} sequential steps, 1 worker (median)")
    columns = ("case", "sync", "commits/step", "µs/step", "runs µs/step", "job wall s")
    for column in (*columns, "fsync p50 µs", "p90 max"):
        table.add_column(column, justify="left" if column in ("case", "sync") else "right")
    for o in outcomes:
        if o.case.workload != "W1":
            continue
        job = o.case.sync is not None
        table.add_row(
            o.case.label,
            o.case.sync or "-",
            str(o.case.params["commits_per_step"]) if job else "0",
            f"{o.median('us_per_step'):.2f}",
            _runs(o.values("us_per_step"), ".1f" if job else ".3f"),
            f"{o.median('job_wall_s'):.3f}" if job else "-",
            f"{o.fsync_p50():.0f}",
            f"{o.fsync_p90_max():.0f}",
        )
    return table


def w2_table(outcomes: Sequence[Outcome]) -> Table:
    table = Table(
        title=f"W2 throughput: {W2_JOBS} jobs x {W2_STEPS} steps started first, worker processes "
        f"x concurrency {W2_CONCURRENCY} (median; window = first claim to last success)"
    )
    columns = ("workers", "sync", "jobs/s", "steps/s", "runs jobs/s", "window s", "startup s")
    for column in (*columns, "skew s", "wall s", "fsync p50 µs", "p90 max"):
        table.add_column(column, justify="left" if column == "sync" else "right")
    for o in outcomes:
        if o.case.workload != "W2":
            continue
        table.add_row(
            o.case.label,
            o.case.sync or "-",
            f"{o.median('jobs_per_s'):.1f}",
            f"{o.median('steps_per_s'):.0f}",
            _runs(o.values("jobs_per_s"), ".1f"),
            f"{o.median('window_s'):.2f}",
            f"{o.median('startup_s'):.2f}",
            f"{o.median('start_skew_s'):.2f}",
            f"{o.median('observed_wall_s'):.2f}",
            f"{o.fsync_p50():.0f}",
            f"{o.fsync_p90_max():.0f}",
        )
    return table


def summary(outcomes: Sequence[Outcome]) -> list[Record]:
    rows = []
    for o in outcomes:
        metrics = ["us_per_step"] if o.case.workload == "W1" else ["jobs_per_s", "steps_per_s"]
        rows.append(
            {
                "key": o.case.key,
                "workload": o.case.workload,
                "label": o.case.label,
                "sqlite_synchronous": o.case.sync,
                "params": o.case.params,
                "median": {m: o.median(m) for m in metrics},
                "fsync_p50_us_median": o.fsync_p50(),
                "fsync_p90_us_max": o.fsync_p90_max(),
                "runs": o.runs,
            }
        )
    return rows


def machine(workdir: Path) -> Record:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "aetheris": aetheris.__version__,
        "git": _git(),
        "workdir": str(workdir),
        "workdir_filesystem": _filesystem(workdir),
    }


def _git() -> Record:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "src_dirty": bool(git("status", "--porcelain", "src")),
    }


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (Linux), e.g. ext4 or tmpfs."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def write_results(document: Record) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"core-{stamp}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
    return path


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="one run per figure instead of 3")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--only", choices=("w1", "w2"), help="run one workload only")
    parser.add_argument("--dir", type=Path, help="where the databases go (default: system temp)")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def select_cases(only: str | None) -> list[Case]:
    return (w1_cases() if only != "w2" else []) + (w2_cases() if only != "w1" else [])


async def amain(args: argparse.Namespace, console: Console) -> Path:
    cases = select_cases(args.only)
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="aetheris-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        info = machine(base)
        console.print(
            f"[bold]aetheris core benchmark[/bold]: {len(cases)} cases x {args.runs} runs, "
            f"databases in {base} ({info['workdir_filesystem']})"
        )
        outcomes = await run_all(cases, args.runs, base, Ui(console, len(cases) * args.runs))
    fsyncs = [run["fsync"]["p50_us"] for o in outcomes for run in o.runs]
    if args.only != "w2":
        console.print(w1_table(outcomes))
    if args.only != "w1":
        console.print(w2_table(outcomes))
    console.print(
        f"fsync (4 KiB write + fsync) p50 over {len(fsyncs)} runs: median "
        f"{statistics.median(fsyncs):.0f} µs, min {min(fsyncs):.0f}, max {max(fsyncs):.0f}"
    )
    return write_results(
        {
            "benchmark": "core",
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "command": ["python", "-m", "bench.core", *sys.argv[1:]],
            "settings": _settings(args),
            "machine": info,
            "fsync_p50_us": {
                "median": statistics.median(fsyncs),
                "min": min(fsyncs),
                "max": max(fsyncs),
            },
            "results": summary(outcomes),
        }
    )


def _settings(args: argparse.Namespace) -> Record:
    return {
        "runs": args.runs,
        "w1_steps": W1_STEPS,
        "w2_jobs": W2_JOBS,
        "w2_steps_per_job": W2_STEPS,
        "w2_concurrency": W2_CONCURRENCY,
        "w2_worker_command": f"python -m aetheris worker --app {WORKER_APP} "
        f"--concurrency {W2_CONCURRENCY}",
        "fsync_probe": f"{FSYNC_WRITES} x (write {FSYNC_BLOCK} B + os.fsync)",
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(log_path=False)
    if not console.is_terminal:
        console = Console(log_path=False, width=max(console.width, 150))
    path = asyncio.run(amain(args, console))
    console.print(f"results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    main()
