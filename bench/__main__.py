"""``python -m bench``: Aetheris side by side with DBOS, LangGraph, Restate, Temporal and Absurd.

``python -m bench [--quick] [--runs N] [--systems aetheris,dbos,...] [--workloads W1,A1,...]
[--backends sqlite,postgres,server] [--durability full,process]``. Builds each peer's venv
(bench/.venvs/<peer>) if missing or stale, runs every (system, workload, backend, durability)
with the system's interpreter, prints one table per workload and writes
``bench/results/bench-<UTC>.jsonl`` (every figure), ``.json`` (medians, ratios, machine) and
``.png`` (chart). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.suite import report, runner, venvs

SYSTEMS = ["aetheris", "dbos", "langgraph", "restate", "temporal", "absurd"]
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "A1", "A2"]
BACKENDS = ["sqlite", "postgres", "server"]
DURABILITIES = ["full", "process"]
RESULTS = venvs.BENCH / "results"
MAIN_PACKAGES = {"aetheris", "pydantic", "psycopg", "psycopg-binary", "psycopg-pool", "rich"}


def _listed(allowed: list[str]) -> Any:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        wrong = [name for name in names if name not in allowed]
        if wrong or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}; got {text!r}")
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 1 run by default")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    for option, choices in (
        ("--systems", SYSTEMS),
        ("--workloads", WORKLOADS),
        ("--backends", BACKENDS),
        ("--durability", DURABILITIES),
    ):
        parser.add_argument(
            option, type=_listed(choices), default=choices, help=f"default {','.join(choices)}"
        )
    parser.add_argument(
        "--timeout", type=float, default=2_400.0, help="seconds per run of one case (default 2400)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where the harnesses' files go")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG (and its venv)")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def build_envs(args: argparse.Namespace, console: Console, stamp: str) -> dict[str, venvs.Env]:
    envs = {"aetheris": venvs.main_env()}
    for system in args.systems:
        if system != "aetheris":
            log = RESULTS / f"bench-{stamp}.logs.tmp" / f"install-{system}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            envs[system] = venvs.ensure(system, venvs.REQUIREMENTS / f"{system}.txt", console, log)
    return envs


def draw_chart(console: Console, stamp: str, summary_path: Path, png: Path) -> dict[str, Any]:
    log = RESULTS / f"bench-{stamp}.logs.tmp" / "install-report.log"
    env = venvs.ensure("report", venvs.REPORT_REQUIREMENTS, console, log)
    if env.python is None:
        return {"error": f"report venv not installed: {env.problem}"}
    done = subprocess.run(
        [str(env.python), "-m", "bench.suite.chart", str(summary_path), str(png)],
        cwd=runner.ROOT,
        env={**os.environ, "PYTHONPATH": str(runner.ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr[-1000:]}"}
    return {"png": str(png.relative_to(runner.ROOT)), "matplotlib": env.packages.get("matplotlib")}


def systems_info(
    envs: dict[str, venvs.Env], rows: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for name, env in envs.items():
        packages = env.packages
        if name == "aetheris":
            packages = {k: v for k, v in packages.items() if k.lower() in MAIN_PACKAGES}
        found[name] = {
            "versions_reported": sorted({str(r["version"]) for r in rows if r["system"] == name}),
            "interpreter": str(env.python) if env.python else None,
            "venv": env.action,
            "not_installed": env.problem,
            "packages": packages,
        }
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 230)
    load_at_start = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench-{stamp}.jsonl"
    summary_path = RESULTS / f"bench-{stamp}.json"
    png = RESULTS / f"bench-{stamp}.png"
    logs = RESULTS / f"bench-{stamp}.logs.tmp"
    console.print(
        f"[bold]python -m bench[/]: systems {','.join(args.systems)}; workloads "
        f"{','.join(args.workloads)}; backends {','.join(args.backends)}; durability "
        f"{','.join(args.durability)}; {args.runs} run(s){' (quick)' if args.quick else ''}; "
        f"load average {load_at_start[0]:.2f} {load_at_start[1]:.2f} {load_at_start[2]:.2f}"
    )
    envs = build_envs(args, console, stamp)
    cases = runner.plan(args.systems, args.workloads, args.backends, args.durability)
    began = time.monotonic()
    outcomes = runner.run_all(cases, envs, args, out, logs, console)
    rows = report.load(out)
    groups = report.group(rows)
    report.print_tables(console, groups, args.systems)
    context: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - began, 1),
        "command": ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)],
        "options": {
            "quick": args.quick,
            "runs": args.runs,
            "systems": args.systems,
            "workloads": args.workloads,
            "backends": args.backends,
            "durability": args.durability,
            "timeout_per_run_s": args.timeout,
        },
        "results_file": str(out.relative_to(runner.ROOT)),
        "logs": str(logs.relative_to(runner.ROOT)),
        "machine": report.machine(load_at_start),
        "systems": systems_info(envs, rows),
        "cases": [
            {**o.case.__dict__, "seconds": round(o.seconds, 1), "exit": o.code, "rows": o.rows}
            | ({"problem": o.problem} if o.problem else {})
            for o in outcomes
        ],
    }
    data = report.summary(groups, rows, context)
    summary_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    if not args.no_chart:
        data["chart"] = draw_chart(console, stamp, summary_path, png)
        summary_path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    end_load = data["machine"]["load_avg_at_end"]
    fsync = data["machine"]["fsync_p50_us_median"]
    fsync_text = "n/a" if fsync is None else f"{fsync:.0f} µs"
    console.print(
        f"\nresults: {out.relative_to(runner.ROOT)}  summary: "
        f"{summary_path.relative_to(runner.ROOT)}"
        + (f"  chart: {png.relative_to(runner.ROOT)}" if png.exists() else "")
        + f"\nload average at start {load_at_start[0]:.2f}, at end {end_load[0]:.2f}; "
        f"fsync p50 median {fsync_text}; "
        f"{sum(1 for o in outcomes if o.problem)} of {len(outcomes)} cases failed or not installed"
    )
    if "error" in data.get("chart", {}):
        console.print(f"[red]chart not drawn[/]: {data['chart']['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
