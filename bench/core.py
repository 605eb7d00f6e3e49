"""Benchmark of the durable core on SQLite and PostgreSQL.

    python -m bench.core [--backend sqlite|postgres|all] [--only w1 w2 w3 w5] [--quick]
                         [--runs N] [--dir DIR] [--pg-url URL]

W1 step overhead, W2 throughput with worker processes, W5 per-step cost as a journal grows and
the resume of a 10,000-step journal, W3-lite recovery after ``kill -9`` (the workloads are in
``bench.workloads``, the agents in ``bench.app``). Every figure is the median of ``--runs`` runs
(3; 1 with ``--quick``). Runs go round-robin over all cases, each on a fresh database (a SQLite
file in a fresh directory, or ``CREATE DATABASE bench_aetheris_<random>`` on the PostgreSQL
server of ``--pg-url``, dropped afterwards), and each run first times 200 x (write 4 KiB +
``os.fsync``) in its directory. It prints one table of medians per workload and writes
everything to ``bench/results/core-<UTC date time>.json``. See ``bench/README.md`` for what each
figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import sys
import tempfile
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
from bench import workloads
from bench.harness import (
    FSYNC_BLOCK,
    FSYNC_WRITES,
    PG_REAP_GRACE,
    REPO,
    WORKER_APP,
    Record,
    fresh_database,
    fsync_probe,
    machine,
    write_results,
)
from bench.peers import common

BACKENDS = ("sqlite", "postgres")
WORKLOADS = ("w1", "w2", "w5", "w3")
SYNC_MODES = {"sqlite": ("full", "normal"), "postgres": ("on", "off")}
DEFAULT_SYNC = {"sqlite": "full", "postgres": "on"}
W1_STEPS = 1_000
W2_JOBS = 200
W2_STEPS = 10
W2_CONCURRENCY = 16
W2_WORKERS = {"sqlite": (1, 2), "postgres": (1, 2, 4)}
W5_STEPS = 10_000
W3_STEPS = 200
W3_NAP = 0.05
PG_FAST_REAP_GRACE = 1.0
LEASE_TTL = float(inspect.signature(aetheris.App).parameters["lease_ttl"].default)


@dataclass(frozen=True)
class Case:
    """One measured configuration; its figure is the median of its runs.

    ``backend`` is ``sqlite``, ``postgres`` or None (no database); ``sync`` is SQLite's
    ``synchronous`` (``full``, ``normal``) or PostgreSQL's ``synchronous_commit`` (``on``,
    ``off``) for the run's database, None when there is no database.
    """

    key: str
    workload: str
    label: str
    backend: str | None
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
    p = case.params
    if case.backend is None:
        record = await workloads.w1_baseline(p["n"], p["body"])
        return {"fsync": fsync, "load_1m": os.getloadavg()[0], **record}
    options = p.get("url_options", {})
    with fresh_database(case.backend, case.sync, workdir, "db", pg_url, **options) as db:
        runner: Awaitable[Record]
        if case.workload == "W1":
            runner = workloads.w1_job(db.url, p["agent"], p["input"])
        elif case.workload == "W2":
            args = (p["jobs"], p["steps"], p["workers"], p["concurrency"], ui.detail)
            runner = workloads.w2_run(db, workdir, *args)
        elif case.workload == "W5":
            runner = workloads.w5_in_process(db.url, p["steps"], ui.detail)
        else:
            runner = workloads.w3_lite(db, workdir, p["steps"], p["nap_s"])
        record = await runner
    if case.workload == "W1":
        record["commits_per_step"] = p["commits_per_step"]
    if case.workload == "W3":
        record["reap_grace_s"] = p.get("reap_grace")
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


# -- what it prints and writes ----------------------------------------------------------------


def headline(case: Case, record: Record) -> str:
    """The line printed after each run."""
    fsync = f"fsync p50 {record['fsync']['p50_us']:.0f} µs"
    load = f"load {record['load_1m']:.1f}"
    if case.workload == "W2":
        skew = f", skew {record['start_skew_s']:.2f} s" if case.params["workers"] > 1 else ""
        figures = (
            f"{record['jobs_per_s']:8.1f} jobs/s {record['steps_per_s']:8.0f} steps/s  "
            f"window {record['window_s']:.2f} s, startup {record['startup_s']:.2f} s{skew}"
        )
    elif case.workload == "W5":
        figures = (
            f"{record['first_us']:7.0f} / {record['around_1k_us']:.0f} / {record['last_us']:.0f} "
            f"µs/step (x{record['last_over_first']:.2f}), resume {record['resume_s']:.2f} s"
        )
    elif case.workload == "W3":
        figures = (
            f"recovery {record['recovery_s']:6.2f} s (lease had "
            f"{record['lease_left_at_kill_s']:.1f} s left, "
            f"{record['steps_before_kill']} steps done)"
        )
    else:
        figures = f"{record['us_per_step']:8.2f} µs/step"
    return f"{figures}  ({fsync}, {load})"


Column = tuple[str, Callable[[Outcome], str]]


def med(name: str, fmt: str) -> Callable[[Outcome], str]:
    return lambda o: format(o.median(name), fmt)


def runs(name: str, fmt: str) -> Callable[[Outcome], str]:
    return lambda o: " / ".join(format(v, fmt) for v in o.values(name))


def _job(o: Outcome) -> bool:
    return o.case.backend is not None


WHERE: list[Column] = [
    ("backend", lambda o: o.case.backend or "-"),
    ("sync", lambda o: o.case.sync or "-"),
]
FSYNC: list[Column] = [
    ("fsync p50 µs", lambda o: f"{o.fsync_p50():.0f}"),
    ("p90 max", lambda o: f"{o.fsync_p90_max():.0f}"),
]
LEFT = {"backend", "sync", "case", "detects a dead worker by"}
TABLES: dict[str, tuple[str, list[Column]]] = {
    "W1": (
        f"W1 step overhead: 1 job x {W1_STEPS} sequential steps, 1 worker (median; sync = "
        "SQLite synchronous / PostgreSQL synchronous_commit)",
        [
            *WHERE,
            ("case", lambda o: o.case.label),
            ("commits/step", lambda o: str(o.case.params["commits_per_step"]) if _job(o) else "0"),
            ("µs/step", med("us_per_step", ".2f")),
            ("runs µs/step", lambda o: runs("us_per_step", ".1f" if _job(o) else ".3f")(o)),
            ("job wall s", lambda o: med("job_wall_s", ".3f")(o) if _job(o) else "-"),
            *FSYNC,
        ],
    ),
    "W2": (
        f"W2 throughput: {W2_JOBS} jobs x {W2_STEPS} steps started first, worker processes "
        f"x concurrency {W2_CONCURRENCY} (median; window = first claim to last success)",
        [
            *WHERE,
            ("workers", lambda o: o.case.label),
            ("jobs/s", med("jobs_per_s", ".1f")),
            ("steps/s", med("steps_per_s", ".0f")),
            ("runs jobs/s", runs("jobs_per_s", ".1f")),
            ("window s", med("window_s", ".2f")),
            ("startup s", med("startup_s", ".2f")),
            ("skew s", med("start_skew_s", ".2f")),
            ("wall s", med("observed_wall_s", ".2f")),
            *FSYNC,
        ],
    ),
    "W5": (
        f"W5 journal growth: 1 job x {W5_STEPS:,} sequential async ctx.step, 1 worker "
        "(median of runs; each figure a median µs/step over the steps named)",
        [
            *WHERE,
            ("1-10", med("first_us", ".0f")),
            ("991-1,010", med("around_1k_us", ".0f")),
            ("9,991-10k", med("last_us", ".0f")),
            ("last/first", med("last_over_first", ".2f")),
            ("runs last/first", runs("last_over_first", ".2f")),
            ("1-1k", med("first_bucket_us", ".0f")),
            ("9,001-10k", med("last_bucket_us", ".0f")),
            ("ratio", med("last_over_first_bucket", ".2f")),
            ("replay µs/step", med("replay_median_us", ".1f")),
            ("resume 10k s", med("resume_s", ".3f")),
            ("runs resume s", runs("resume_s", ".3f")),
        ],
    ),
    "W3": (
        f"W3-lite recovery after kill -9: steps of {W3_NAP * 1000:.0f} ms, lease TTL 30 s, "
        "fresh worker already idle (median; kill to the fresh worker's job_claimed)",
        [
            ("backend", lambda o: o.case.backend or "-"),
            ("detects a dead worker by", lambda o: o.case.label),
            ("recovery s", med("recovery_s", ".2f")),
            ("runs recovery s", runs("recovery_s", ".2f")),
            ("lease left s", med("lease_left_at_kill_s", ".1f")),
            ("steps before kill", med("steps_before_kill", ".0f")),
        ],
    ),
}
METRICS = {
    "W1": ["us_per_step"],
    "W2": ["jobs_per_s", "steps_per_s"],
    "W5": ["first_us", "around_1k_us", "last_us", "last_over_first", "resume_s"],
    "W3": ["recovery_s"],
}


def tables(outcomes: Sequence[Outcome]) -> list[Table]:
    """One table per workload that ran, in the order W1, W2, W5, W3."""
    found = []
    for workload, (title, columns) in TABLES.items():
        mine = [o for o in outcomes if o.case.workload == workload]
        if mine:
            table = Table(title=title)
            for name, _ in columns:
                table.add_column(name, justify="left" if name in LEFT else "right")
            for o in mine:
                table.add_row(*(cell(o) for _, cell in columns))
            found.append(table)
    return found


def summary(outcomes: Sequence[Outcome]) -> list[Record]:
    return [
        {
            "key": o.case.key,
            "workload": o.case.workload,
            "label": o.case.label,
            "backend": o.case.backend,
            "sync": o.case.sync,
            "params": o.case.params,
            "median": {m: o.median(m) for m in METRICS[o.case.workload]},
            "fsync_p50_us_median": o.fsync_p50(),
            "fsync_p90_us_max": o.fsync_p90_max(),
            "runs": o.runs,
        }
        for o in outcomes
    ]


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
        "core",
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
        },
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
