"""``python -m tests.sim``: re-run one seed, sweep a range, or run for a while.

Examples::

    python -m tests.sim --seed 42                 # one seed, both stores, shrunk if it fails
    python -m tests.sim --seeds 0:2000 --store both
    python -m tests.sim --duration 600 --store sqlite
    python -m tests.sim --seed 42 --store memory --plan /tmp/sim-repro-memory-42.json --trace
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tests.sim import report
from tests.sim.sim import SimResult, run_seed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--seed", type=int, help="run one seed and tell everything about it")
    what.add_argument("--seeds", help="run seeds A:B (A included, B excluded)")
    what.add_argument("--duration", type=float, help="run seeds for this many seconds")
    parser.add_argument("--store", choices=("memory", "sqlite", "both"), default="both")
    parser.add_argument("--start", type=int, default=0, help="first seed of --duration")
    parser.add_argument("--plan", type=Path, help="with --seed: run exactly this plan (JSON)")
    parser.add_argument("--trace", action="store_true", help="with --seed: print the trace")
    parser.add_argument("--no-shrink", action="store_true", help="do not shrink a failure")
    parser.add_argument("--details", action="store_true", help="sweeps: report failures in full")
    parser.add_argument(
        "--check-determinism", action="store_true", help="run every seed twice, compare traces"
    )
    return parser


def _stores(choice: str) -> list[str]:
    return ["memory", "sqlite"] if choice == "both" else [choice]


def _one(args: argparse.Namespace, store: str) -> bool:
    plan = actions = None
    if args.plan is not None:
        plan, actions = report.plan_from_json(args.plan.read_text())
    result = run_seed(args.seed, store, plan=plan, actions=actions, keep_trace=True)
    if args.trace:
        report.emit("\n".join(result.trace))
    report.emit(report.full(result))
    if args.check_determinism:
        again = run_seed(args.seed, store, plan=plan, actions=actions)
        same = "same trace" if again.digest == result.digest else "DIFFERENT TRACE"
        report.emit(f"determinism: {same} ({result.digest[:16]} / {again.digest[:16]})")
    if not result.ok and not args.no_shrink:
        _shrunk(result)
    return result.ok


def _shrunk(result: SimResult) -> None:
    from tests.sim.shrink import shrink

    report.emit("shrinking the fault plan and operator actions (ddmin)...")
    found = shrink(result)
    path = Path(tempfile.gettempdir()) / f"sim-repro-{result.store}-{result.seed}.json"
    path.write_text(report.plan_to_json(result.seed, result.store, found.faults, found.actions))
    kept = len(found.faults) + len(found.actions)
    report.emit(
        f"minimal reproduction ({kept} of {len(result.plan) + len(result.actions)} items, "
        f"{found.runs} runs):"
    )
    report.emit("\n".join(report.describe_plan(found.faults, found.actions)))
    report.emit("\n".join(report.violations(found.result)) or "  (the failure did not reproduce)")
    report.emit(f"  {report.command(result.seed, result.store, path)}")


def _seed_range(text: str) -> Iterator[int]:
    first, _, last = text.partition(":")
    yield from range(int(first), int(last))


def _sweep(args: argparse.Namespace, seeds: Iterator[int], deadline: float | None) -> bool:
    sweep = report.Sweep()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[done]} seeds, {task.fields[rate]:.1f}/s"),
        TextColumn("{task.fields[bad]} failed"),
        TimeElapsedColumn(),
    )
    began = time.monotonic()
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task("simulating", total=None, done=0, rate=0.0, bad=0)
        for seed in seeds:
            if deadline is not None and time.monotonic() >= deadline:
                break
            for store in _stores(args.store):
                _run_in_sweep(args, sweep, seed, store, progress)
            done = sum(sweep.seeds.values())
            rate = done / max(time.monotonic() - began, 1e-9)
            progress.update(task, done=done, rate=rate, bad=len(sweep.failures))
    report.emit(sweep.summary())
    return not sweep.failures


def _run_in_sweep(
    args: argparse.Namespace, sweep: report.Sweep, seed: int, store: str, progress: Progress
) -> None:
    started = time.monotonic()
    result = run_seed(seed, store, keep_trace=args.details)
    sweep.add(result, time.monotonic() - started)
    if args.check_determinism and run_seed(seed, store).digest != result.digest:
        progress.console.print(f"NONDETERMINISTIC {store} seed {seed}", markup=False)
        sweep.failures.append(result)
    if not result.ok:
        text = report.full(result) if args.details else report.one_line(result)
        progress.console.print(text, soft_wrap=True, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point; the exit status is 1 if any run failed."""
    args = _parser().parse_args(argv)
    if args.seed is not None:
        outcomes = [_one(args, store) for store in _stores(args.store)]  # every store, always
        return 0 if all(outcomes) else 1
    if args.seeds is not None:
        return 0 if _sweep(args, _seed_range(args.seeds), None) else 1
    forever = iter(range(args.start, 1 << 62))
    return 0 if _sweep(args, forever, time.monotonic() + args.duration) else 1


if __name__ == "__main__":
    raise SystemExit(main())
