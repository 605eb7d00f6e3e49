"""Markdown tables (and the issue's targets, met or missed) from summaries of ``python -m bench``.

``python -m bench.suite.markdown SUMMARY.json [SUMMARY.json ...]`` prints, for every workload in
the summaries, a table of medians with the ratio to Aetheris (as ``python -m bench`` prints them),
then the targets checked against those medians. ``docs/benchmarks.md`` pastes this output, so
every figure there is one the command produced. Standard library only.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.suite.report import (
    DURABILITIES,
    METRIC_ORDER,
    REFERENCE,
    SPECIAL,
    WORKLOAD_TITLES,
    fmt,
    ratio_text,
    row_key,
    system_order,
)

SYSTEMS = ["aetheris", "dbos", "langgraph", "restate", "temporal", "absurd"]  # table order
Median = dict[str, Any]


def _key(m: Median) -> tuple[int, int, int, str]:
    keys = (m["system"], m["variant"], m["backend"], m["durability"])
    return row_key(m["workload"], *keys, system_order(SYSTEMS))


def _cell(m: Median | None) -> str:
    if m is None:
        return ""
    if m["median"] is None:
        return "FAILED" if m["status"] == "failed" else "n/a"
    text = f"{m['median']:.0f}" if m["metric"] == "lines" else fmt(m["median"])
    if m.get("ratio_aetheris_better") is not None:
        text += f" (×{ratio_text(m['ratio_aetheris_better'])})"
    if m["status"] == "partial":
        text += "*"
    return text


def workload_table(workload: str, medians: Sequence[Median]) -> list[str]:
    mine = [m for m in medians if m["workload"] == workload and m["metric"] not in SPECIAL]
    metrics = [x for x in METRIC_ORDER.get(workload, []) if any(m["metric"] == x for m in mine)]
    metrics += sorted({m["metric"] for m in mine} - set(metrics))
    rows: dict[tuple[str, str, str, str], dict[str, Median]] = {}
    for m in sorted(mine, key=_key):
        rows.setdefault((m["system"], m["variant"], m["backend"], m["durability"]), {})[
            m["metric"]
        ] = m
    lines = [
        f"**{WORKLOAD_TITLES.get(workload, workload)}**",
        "",
        "| system | variant | backend | durability | " + " | ".join(metrics) + " | runs |",
        "| --- | --- | --- | --- | " + " | ".join("---:" for _ in metrics) + " | ---: |",
    ]
    skipped: dict[str, set[str]] = {}
    for (system, variant, backend, durability), cells in rows.items():
        values = list(cells.values())
        if all(v["median"] is None and v["status"] == "n/a" for v in values):
            skipped.setdefault(system, set()).add(backend)
            continue
        ok = max(v["ok_runs"] for v in values)
        total = max(v["runs"] for v in values)
        shown = f"**{system}**" if system == REFERENCE else system
        lines.append(
            f"| {shown} | {variant} | {backend} | {durability} | "
            + " | ".join(_cell(cells.get(x)) for x in metrics)
            + f" | {ok}/{total} |"
        )
    lines.append("")
    if skipped:
        lines.append(
            "Not applicable: "
            + "; ".join(f"{s} on {', '.join(sorted(b))}" for s, b in skipped.items())
            + "."
        )
        lines.append("")
    return lines


# -- the targets of issue 4 ----------------------------------------------------------------------


def _find(medians: Sequence[Median], **want: str) -> Median | None:
    for m in medians:
        if all(m.get(k) == v for k, v in want.items()) and m["median"] is not None:
            return m
    return None


def _best_peer(
    medians: Sequence[Median], workload: str, metric: str, backend: str, durability: str
) -> Median | None:
    """The best peer figure on the same backend and durability (a server peer counts as SQLite)."""
    backends = {backend, "server"} if backend == "sqlite" else {backend}
    found = [
        m
        for m in medians
        if m["system"] != REFERENCE
        and m["workload"] == workload
        and m["metric"] == metric
        and m["backend"] in backends
        and m["durability"] == durability
        and m["median"] is not None
    ]
    if not found:
        return None
    pick: Callable[..., Median] = max if metric.endswith("_per_s") else min
    return pick(found, key=lambda m: m["median"])


def _name(m: Median) -> str:
    return f"{m['system']} {m['variant']} {m['backend']}/{m['durability']}"


def _values(medians: Sequence[Median], variants: set[str]) -> list[int]:
    return sorted({int(v) for m in medians if m["variant"] in variants for v in m["values"]})


def targets(medians: Sequence[Median], fsync_us: float | None) -> list[str]:
    out = ["| target | measured | met |", "| --- | --- | :---: |"]

    def add(target: str, measured: str, met: bool) -> None:
        out.append(f"| {target} | {measured} | {'yes' if met else 'no'} |")

    def ours(workload: str, metric: str, where: str, variant: str | None = None) -> Median | None:
        backend, durability = where.split("/")
        want = {"workload": workload, "metric": metric, "backend": backend}
        want |= {"durability": durability} | ({"variant": variant} if variant else {})
        return _find(medians, system=REFERENCE, **want)

    def ten_times_best(
        workload: str, metric: str, where: str, variant: str | None, target: str
    ) -> None:
        """Aetheris against the best peer on the same backend and durability: ×10 or better."""
        m = ours(workload, metric, where, variant)
        best = _best_peer(medians, workload, metric, *where.split("/"))
        if m and best:
            rate = metric.endswith("_per_s")
            x = m["median"] / best["median"] if rate else best["median"] / m["median"]
            add(
                f"{workload} {where}: {target}",
                f"{fmt(m['median'])} vs {fmt(best['median'])} ({_name(best)}): ×{x:.1f}",
                x >= 10,
            )

    wheres = [f"{b}/{d}" for b in ("sqlite", "postgres") for d in DURABILITIES]
    m = ours("W1", "us_per_step", "sqlite/full", "steps")
    if m and fsync_us:
        x = m["median"] / fsync_us
        add(
            "W1 full durability: ≤ 1.25 × one fsync per pure step (SQLite)",
            f"{fmt(m['median'])} µs = {x:.2f} × fsync p50 {fmt(fsync_us)} µs",
            x <= 1.25,
        )
    m = ours("W1", "us_per_step", "sqlite/process", "steps")
    if m:
        add(
            "W1 process-crash durability: ≤ 30 µs per pure step (SQLite NORMAL)",
            f"{fmt(m['median'])} µs",
            m["median"] <= 30,
        )
    m = ours("W2", "steps_per_s", "sqlite/full", "1-worker")
    if m:
        add(
            "W2: ≥ 5,000 steps/s, SQLite, one worker process, full durability",
            f"{fmt(m['median'])} steps/s",
            m["median"] >= 5_000,
        )
    for where in wheres:
        ten_times_best("W2", "steps_per_s", where, "1-worker", "≥ 10 × the best peer's steps/s")
    lines = [
        m
        for m in medians
        if m["system"] == REFERENCE and m["workload"] == "W3" and m["metric"] == "lines"
    ]
    if any(m["values"] for m in lines):
        guarded = [m for m in lines if m["variant"] != "step"]
        add(
            "W3: zero duplicated side effects (at_most_once and between-step kills)",
            f"lines written: at_most_once {_values(lines, {'at_most_once'})} (step in doubt); "
            f"+reconcile and between {_values(lines, {'at_most_once+reconcile', 'between'})}; "
            f"(a plain ctx.step killed inside its body: {_values(lines, {'step'})})",
            all(v <= 100 for m in guarded for v in m["values"]),
        )
    for backend in ("sqlite", "postgres"):
        worst = [
            max(m["values"])
            for m in medians
            if m["system"] == REFERENCE
            and m["workload"] == "W3"
            and m["values"]
            and m["metric"] == "recovery_s"
            and m["backend"] == backend
        ]
        if worst:
            add(
                f"W3 {backend}: recovery within the lease TTL (30 s) + 1 s",
                f"worst run {max(worst):.2f} s",
                max(worst) <= 31,
            )
    for where in wheres:
        ten_times_best("W4", "us_per_turn", where, None, "≤ 1/10 of the best peer's µs per turn")
        sizes = [ours("W4", f"bytes_stored_{n}", where) for n in (20, 100, 200)]
        if all(sizes):
            b20, b100, b200 = (s["median"] for s in sizes if s)
            add(
                f"W4 {where}: stored bytes linear in turns",
                f"{fmt(b20)} / {fmt(b100)} / {fmt(b200)} bytes at 20/100/200 turns; "
                f"200/100 = {b200 / b100:.2f} (linear: 2, quadratic: 4)",
                1.6 <= b200 / b100 <= 2.4,
            )
    for where in wheres:
        at = [ours("W5", f"us_per_step_at_{n}", where) for n in (10, 1_000, 10_000)]
        if all(at):
            a10, a1k, a10k = (a["median"] for a in at if a)
            add(
                f"W5 {where}: flat per-step cost from 10 to 10,000 entries",
                f"{fmt(a10)} / {fmt(a1k)} / {fmt(a10k)} µs; 10,000 vs 10: ×{a10k / a10:.2f}",
                a10k / a10 <= 1.5,
            )
        r = ours("W5", "resume_10k_s", where)
        if r:
            add(
                f"W5 {where}: resume of a 10,000-entry journal < 1 s",
                f"{r['median']:.2f} s",
                r["median"] < 1,
            )
    return out


def render(summaries: Sequence[dict[str, Any]], names: Sequence[str]) -> str:
    lines: list[str] = []
    medians: list[Median] = []
    fsyncs: list[float] = []
    for summary, name in zip(summaries, names, strict=True):
        workloads = sorted({m["workload"] for m in summary["medians"]})
        lines.append(
            f"From `{name}` (`{' '.join(summary['command'])}`, {summary['started']}, "
            f"{summary['elapsed_s'] / 60:.0f} min; fsync p50 median "
            f"{fmt(summary['machine']['fsync_p50_us_median'] or 0)} µs; load average at start "
            f"{summary['machine']['load_avg_at_start'][0]:.2f}):"
        )
        lines.append("")
        for workload in workloads:
            lines += workload_table(workload, summary["medians"])
        medians += summary["medians"]
        sqlite_full = [
            m["fsync_p50_us"]
            for m in summary["medians"]
            if m["system"] == REFERENCE
            and m["workload"] == "W1"
            and m["backend"] == "sqlite"
            and m["durability"] == "full"
            and m["fsync_p50_us"] is not None
        ]
        fsyncs += sqlite_full
    lines.append("**Targets** (medians above; fsync p50 of the Aetheris W1 SQLite/full runs):")
    lines.append("")
    lines += targets(medians, statistics.median(fsyncs) if fsyncs else None)
    return "\n".join(lines) + "\n"


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        raise SystemExit("usage: python -m bench.suite.markdown SUMMARY.json [SUMMARY.json ...]")
    summaries = [json.loads(p.read_text()) for p in paths]
    print(render(summaries, [str(p) for p in paths]), end="")


if __name__ == "__main__":
    main()
