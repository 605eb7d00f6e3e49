"""Tables of medians (rich) and the JSON summary of ``python -m bench.core``."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from bench.common import Case, Outcome, Record
from bench.growth import W5_STEPS
from bench.overhead import W1_STEPS
from bench.recovery import W3_NAP
from bench.throughput import W2_CONCURRENCY, W2_JOBS, W2_STEPS

METRICS = {
    "W1": ["us_per_step"],
    "W2": ["jobs_per_s", "steps_per_s"],
    "W5": ["first_us", "around_1k_us", "last_us", "last_over_first", "resume_s"],
    "W3": ["recovery_s"],
}


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


def _runs(values: Sequence[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def _table(title: str, columns: Sequence[str], left: Sequence[str]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    return table


def w1_table(outcomes: Sequence[Outcome]) -> Table:
    table = _table(
        f"W1 step overhead: 1 job x {W1_STEPS} sequential steps, 1 worker (median; sync = "
        "SQLite synchronous / PostgreSQL synchronous_commit)",
        (
            "backend",
            "sync",
            "case",
            "commits/step",
            "µs/step",
            "runs µs/step",
            "job wall s",
            "fsync p50 µs",
            "p90 max",
        ),
        ("backend", "sync", "case"),
    )
    for o in outcomes:
        job = o.case.backend is not None
        table.add_row(
            o.case.backend or "-",
            o.case.sync or "-",
            o.case.label,
            str(o.case.params["commits_per_step"]) if job else "0",
            f"{o.median('us_per_step'):.2f}",
            _runs(o.values("us_per_step"), ".1f" if job else ".3f"),
            f"{o.median('job_wall_s'):.3f}" if job else "-",
            f"{o.fsync_p50():.0f}",
            f"{o.fsync_p90_max():.0f}",
        )
    return table


def w2_table(outcomes: Sequence[Outcome]) -> Table:
    table = _table(
        f"W2 throughput: {W2_JOBS} jobs x {W2_STEPS} steps started first, worker processes "
        f"x concurrency {W2_CONCURRENCY} (median; window = first claim to last success)",
        (
            "backend",
            "sync",
            "workers",
            "jobs/s",
            "steps/s",
            "runs jobs/s",
            "window s",
            "startup s",
            "skew s",
            "wall s",
            "fsync p50 µs",
            "p90 max",
        ),
        ("backend", "sync"),
    )
    for o in outcomes:
        table.add_row(
            o.case.backend or "-",
            o.case.sync or "-",
            o.case.label,
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


def w5_table(outcomes: Sequence[Outcome]) -> Table:
    table = _table(
        f"W5 journal growth: 1 job x {W5_STEPS:,} sequential async ctx.step, 1 worker "
        "(median of runs; each figure a median µs/step over the steps named)",
        (
            "backend",
            "sync",
            "1-10",
            "991-1,010",
            "9,991-10k",
            "last/first",
            "runs last/first",
            "1-1k",
            "9,001-10k",
            "ratio",
            "replay µs/step",
            "resume 10k s",
            "runs resume s",
        ),
        ("backend", "sync"),
    )
    for o in outcomes:
        table.add_row(
            o.case.backend or "-",
            o.case.sync or "-",
            f"{o.median('first_us'):.0f}",
            f"{o.median('around_1k_us'):.0f}",
            f"{o.median('last_us'):.0f}",
            f"{o.median('last_over_first'):.2f}",
            _runs(o.values("last_over_first"), ".2f"),
            f"{o.median('first_bucket_us'):.0f}",
            f"{o.median('last_bucket_us'):.0f}",
            f"{o.median('last_over_first_bucket'):.2f}",
            f"{o.median('replay_median_us'):.1f}",
            f"{o.median('resume_s'):.3f}",
            _runs(o.values("resume_s"), ".3f"),
        )
    return table


def w3_table(outcomes: Sequence[Outcome]) -> Table:
    table = _table(
        f"W3-lite recovery after kill -9: steps of {W3_NAP * 1000:.0f} ms, lease TTL 30 s, "
        "fresh worker already idle (median; kill to the fresh worker's job_claimed)",
        (
            "backend",
            "detects a dead worker by",
            "recovery s",
            "runs recovery s",
            "lease left s",
            "steps before kill",
        ),
        ("backend", "detects a dead worker by"),
    )
    for o in outcomes:
        table.add_row(
            o.case.backend or "-",
            o.case.label,
            f"{o.median('recovery_s'):.2f}",
            _runs(o.values("recovery_s"), ".2f"),
            f"{o.median('lease_left_at_kill_s'):.1f}",
            f"{o.median('steps_before_kill'):.0f}",
        )
    return table


TABLES = {"W1": w1_table, "W2": w2_table, "W5": w5_table, "W3": w3_table}


def tables(outcomes: Sequence[Outcome]) -> list[Table]:
    """One table per workload that ran, in the order W1, W2, W5, W3."""
    found = []
    for workload, make in TABLES.items():
        mine = [o for o in outcomes if o.case.workload == workload]
        if mine:
            found.append(make(mine))
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
