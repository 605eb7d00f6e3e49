"""Benchmark of the durable core on SQLite and PostgreSQL.

    python -m bench.core [--backend sqlite|postgres|all] [--only w1 w2 w3 w5] [--quick]
                         [--runs N] [--dir DIR] [--pg-url URL]

W1 step overhead, W2 throughput with worker processes, W5 per-step cost as a journal grows and
the resume of a 10,000-step journal, W3-lite recovery after ``kill -9``. Every figure is the
median of ``--runs`` runs (3; 1 with ``--quick``). Runs go round-robin over all cases, each on a
fresh database (a SQLite file in a fresh directory, or ``CREATE DATABASE bench_<random>`` on the
PostgreSQL server of ``--pg-url``, dropped afterwards), and each run first times 200 x (write
4 KiB + ``os.fsync``) in its directory. Results are written to
``bench/results/core-<UTC date time>.json``. See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import psycopg
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

import aetheris
from aetheris.store.postgres import PostgresStore
from bench.common import (
    FSYNC_BLOCK,
    FSYNC_WRITES,
    REPO,
    RESULTS,
    WORKER_APP,
    Case,
    Outcome,
    Record,
    fsync_probe,
)
from bench.databases import fresh_database
from bench.growth import W5_STEPS, w5_run
from bench.overhead import W1_STEPS, w1_baseline, w1_job
from bench.peers import common
from bench.recovery import W3_NAP, W3_STEPS, w3_run
from bench.report import headline, summary, tables
from bench.throughput import W2_CONCURRENCY, W2_JOBS, W2_STEPS, w2_run

BACKENDS = ("sqlite", "postgres")
WORKLOADS = ("w1", "w2", "w5", "w3")
SYNC_MODES = {"sqlite": ("full", "normal"), "postgres": ("on", "off")}
DEFAULT_SYNC = {"sqlite": "full", "postgres": "on"}
W2_WORKERS = {"sqlite": (1, 2), "postgres": (1, 2, 4)}
PG_REAP_GRACE = float(inspect.signature(PostgresStore).parameters["reap_grace"].default)
PG_FAST_REAP_GRACE = 1.0
LEASE_TTL = float(inspect.signature(aetheris.App).parameters["lease_ttl"].default)


# -- cases ------------------------------------------------------------------------------------


def w1_cases(backends: Sequence[str]) -> list[Case]:
    n = W1_STEPS
    cases = [
        Case("w1.baseline.sync", "W1", "baseline: v = fn(i)", None, None, {"body": "sync", "n": n}),
        Case(
            "w1.baseline.async",
            "W1",
            "baseline: v = await fn(i)",
            None,
            None,
            {"body": "async", "n": n},
        ),
    ]
    kinds = (
        ("step_sync", "ctx.step, def fn", "w1_steps", {"n": n, "body": "sync"}, 1),
        ("step_async", "ctx.step, async def fn", "w1_steps", {"n": n, "body": "async"}, 1),
        ("tool_at_most_once", "tool, at_most_once", "w1_tool", {"n": n}, 2),
    )
    for backend in backends:
        for sync in SYNC_MODES[backend]:
            cases += [
                Case(
                    f"w1.{backend}.{kind}.{sync}",
                    "W1",
                    label,
                    backend,
                    sync,
                    {"agent": agent, "input": data, "commits_per_step": commits},
                )
                for kind, label, agent, data, commits in kinds
            ]
    return cases


def w2_cases(backends: Sequence[str]) -> list[Case]:
    params = {"jobs": W2_JOBS, "steps": W2_STEPS, "concurrency": W2_CONCURRENCY}
    return [
        Case(
            f"w2.{backend}.workers{workers}.{sync}",
            "W2",
            f"{workers}",
            backend,
            sync,
            {"workers": workers, **params},
        )
        for backend in backends
        for sync in SYNC_MODES[backend]
        for workers in W2_WORKERS[backend]
    ]


def w5_cases(backends: Sequence[str]) -> list[Case]:
    return [
        Case(f"w5.{b}", "W5", "journal growth", b, DEFAULT_SYNC[b], {"steps": W5_STEPS})
        for b in backends
    ]


def w3_cases(backends: Sequence[str]) -> list[Case]:
    params = {"steps": W3_STEPS, "nap_s": W3_NAP, "lease_ttl_s": LEASE_TTL}
    cases = []
    if "sqlite" in backends:
        cases.append(Case("w3.sqlite", "W3", "flock released", "sqlite", "full", params))
    if "postgres" in backends:
        for grace, options in ((PG_REAP_GRACE, {}), (PG_FAST_REAP_GRACE, {"reap_grace": 1})):
            url = "" if not options else " (?aetheris_reap_grace=1)"
            cases.append(
                Case(
                    f"w3.postgres.grace{grace:g}",
                    "W3",
                    f"advisory lock free for reap_grace {grace:g} s{url}",
                    "postgres",
                    "on",
                    {**params, "reap_grace": grace, "url_options": options},
                )
            )
    return cases


def select_cases(backends: Sequence[str], only: Sequence[str]) -> list[Case]:
    makers = {"w1": w1_cases, "w2": w2_cases, "w5": w5_cases, "w3": w3_cases}
    return [
        case for workload in WORKLOADS if workload in only for case in makers[workload](backends)
    ]


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
        where = f" {case.backend}" if case.backend else ""
        sync = f" [{case.sync}]" if case.sync else ""
        what = f"{case.label} workers" if case.workload == "W2" else case.label
        description = f"{case.workload}{where} {what}{sync} (run {round_ + 1}/{rounds})"
        self.progress.reset(self.current, description=description, total=None)

    def detail(self, done: int, total: int | None) -> None:
        self.progress.update(self.current, completed=done, total=total)

    def finish(self, case: Case, record: Record) -> None:
        self.progress.advance(self.overall)
        self.console.log(f"{case.key:<34} {headline(case, record)}")


async def run_case(case: Case, workdir: Path, ui: Ui, pg_url: str) -> Record:
    """One run of ``case`` in a fresh directory, on a fresh database."""
    workdir.mkdir(parents=True)  # noqa: ASYNC240 (between runs, nothing else is running)
    fsync = fsync_probe(workdir)
    if case.backend is None:
        record = await w1_baseline(case)
        return {"fsync": fsync, "load_1m": os.getloadavg()[0], **record}
    options = case.params.get("url_options", {})
    async with fresh_database(case, workdir, pg_url, **options) as db:
        runner: Awaitable[Record]
        if case.workload == "W1":
            runner = w1_job(case, db)
        elif case.workload == "W2":
            runner = w2_run(case, db, workdir, ui.detail)
        elif case.workload == "W5":
            runner = w5_run(case, db, ui.detail)
        else:
            runner = w3_run(case, db, workdir, ui.detail)
        record = await runner
    return {"fsync": fsync, "load_1m": os.getloadavg()[0], "database": db.settings, **record}


async def run_all(
    cases: Sequence[Case], rounds: int, base: Path, ui: Ui, pg_url: str
) -> list[Outcome]:
    """Round-robin: every case once per round, so drift hits all cases alike."""
    outcomes = [Outcome(case) for case in cases]
    with ui.progress:
        for round_ in range(rounds):
            for outcome in outcomes:
                ui.begin(outcome.case, round_, rounds)
                workdir = base / f"round{round_}" / outcome.case.key
                outcome.runs.append(await run_case(outcome.case, workdir, ui, pg_url))
                ui.finish(outcome.case, outcome.runs[-1])
    return outcomes


# -- the record of the machine and the run ----------------------------------------------------


def machine(workdir: Path) -> Record:
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "psycopg": psycopg.__version__,
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


def _settings(args: argparse.Namespace) -> Record:
    return {
        "runs": args.runs,
        "backends": args.backends,
        "workloads": args.only,
        "w1_steps": W1_STEPS,
        "w2_jobs": W2_JOBS,
        "w2_steps_per_job": W2_STEPS,
        "w2_concurrency": W2_CONCURRENCY,
        "w2_workers": {b: W2_WORKERS[b] for b in args.backends},
        "w2_worker_command": f"python -m aetheris worker --app {WORKER_APP} "
        f"--concurrency {W2_CONCURRENCY}",
        "w5_steps": W5_STEPS,
        "w3_steps": W3_STEPS,
        "w3_nap_s": W3_NAP,
        "fsync_probe": f"{FSYNC_WRITES} x (write {FSYNC_BLOCK} B + os.fsync)",
    }


def _pg_line(settings: dict[str, str]) -> str:
    names = ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay")
    shown = ", ".join(f"{name}={settings[name]}" for name in names)
    return f"PostgreSQL {settings['server_version']}: {shown}"


# -- entry point ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.core", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="one run per figure instead of 3")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument(
        "--backend", choices=(*BACKENDS, "all"), default="sqlite", help="default: sqlite"
    )
    parser.add_argument(
        "--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS), help="workloads to run"
    )
    parser.add_argument("--dir", type=Path, help="where run directories go (default: system temp)")
    parser.add_argument(
        "--pg-url",
        default=common.PG_ADMIN_URL,
        help="a database on the PostgreSQL server to create the run databases from "
        "(env AETHERIS_TEST_POSTGRES_URL; default postgresql://postgres@127.0.0.1:5432/postgres)",
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    args.only = [w for w in WORKLOADS if w in args.only]
    return args


async def amain(args: argparse.Namespace, console: Console) -> Path:
    cases = select_cases(args.backends, args.only)
    started = datetime.now(UTC)
    server = None
    if "postgres" in args.backends:
        server = common.postgres_settings(common.PG_SERVER_SETTINGS, args.pg_url)
    with tempfile.TemporaryDirectory(prefix="aetheris-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        info = machine(base)
        console.print(
            f"[bold]aetheris core benchmark[/bold]: {len(cases)} cases x {args.runs} runs on "
            f"{', '.join(args.backends)}; run directories in {base} ({info['workdir_filesystem']})"
        )
        if server is not None:
            console.print(_pg_line(server))
        ui = Ui(console, len(cases) * args.runs)
        outcomes = await run_all(cases, args.runs, base, ui, args.pg_url)
    for table in tables(outcomes):
        console.print(table)
    fsyncs = [run["fsync"]["p50_us"] for o in outcomes for run in o.runs]
    console.print(
        f"fsync (4 KiB write + fsync) p50 over {len(fsyncs)} runs: median "
        f"{statistics.median(fsyncs):.0f} µs, min {min(fsyncs):.0f}, max {max(fsyncs):.0f}"
    )
    if server is not None:
        console.print(_pg_line(server))
    return write_results(
        {
            "benchmark": "core",
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "command": ["python", "-m", "bench.core", *sys.argv[1:]],
            "settings": _settings(args),
            "machine": info,
            "postgres": {"server": server, "admin_url": args.pg_url} if server else None,
            "fsync_p50_us": {
                "median": statistics.median(fsyncs),
                "min": min(fsyncs),
                "max": max(fsyncs),
            },
            "results": summary(outcomes),
        }
    )


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(log_path=False)
    if not console.is_terminal:
        console = Console(log_path=False, width=max(console.width, 170))
    path = asyncio.run(amain(args, console))
    console.print(f"results: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


if __name__ == "__main__":
    main()
