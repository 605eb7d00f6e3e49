"""Run every (system, workload, backend, durability) as a subprocess of the system's interpreter.

Each harness appends its JSON lines to the one results file. A harness that exits non-zero or
times out adds a failure row (metric ``harness``) with the last lines of its stderr; a system
that could not be installed adds a row (metric ``install``) saying so. Nothing is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from bench.peers.common import AGENT_METRICS, AGENT_SYSTEMS
from bench.suite.venvs import Env

ROOT = Path(__file__).resolve().parents[2]
GRACE_S = 30.0


@dataclass(frozen=True)
class Case:
    system: str
    workload: str
    backend: str
    durability: str

    @property
    def label(self) -> str:
        return f"{self.system} {self.workload} {self.backend}/{self.durability}"

    @property
    def slug(self) -> str:
        return f"{self.system}-{self.workload}-{self.backend}-{self.durability}"


@dataclass
class Outcome:
    case: Case
    seconds: float
    code: int | None  # None: not run (not installed) or killed on timeout
    rows: int
    problem: str | None


def plan(
    systems: Sequence[str],
    workloads: Sequence[str],
    backends: Sequence[str],
    durabilities: Sequence[str],
) -> list[Case]:
    return [
        Case(s, w, b, d) for w in workloads for b in backends for d in durabilities for s in systems
    ]


def row(case: Case, metric: str, notes: str, extra: dict[str, Any] | None = None) -> str:
    """A results line written by the orchestrator itself (a failure, or a missing install)."""
    return json.dumps(
        {
            "system": case.system,
            "version": "",
            "workload": case.workload,
            "variant": "(all)",
            "backend": case.backend,
            "durability": case.durability,
            "metric": metric,
            "value": None,
            "run": 0,
            "fsync_p50_us": None,
            "notes": notes,
            "extra": extra or {},
        },
        sort_keys=True,
    )


def not_applicable(case: Case) -> str | None:
    """Why a system does not run an agent workload (A1/A2) at all, or None if it does."""
    reason = AGENT_SYSTEMS.get(case.workload, {}).get(case.system)
    return f"not applicable: {reason}" if reason else None


def append(out: Path, line: str) -> None:
    with open(out, "a") as f:
        f.write(line + "\n")


def count_rows(out: Path) -> int:
    if not out.exists():
        return 0
    with open(out) as f:
        return sum(1 for _ in f)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _follow(
    lines: queue.Queue[str | None], log: IO[str], progress: Progress, current: Any, deadline: float
) -> bool:
    """Copy the harness's output to its log and the progress line; True if it timed out."""
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            return False
        log.write(line + "\n")
        log.flush()
        if line:
            progress.update(current, description=f"  └ {line[:110]}")
    return True


def _end(proc: subprocess.Popen[str]) -> None:
    """SIGINT the harness (its ``finally`` blocks stop its workers and drop its databases), then
    SIGKILL its whole process group if it has not exited within ``GRACE_S``."""
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_case(
    case: Case,
    env: Env,
    args: Any,
    out: Path,
    logs: Path,
    progress: Progress,
    current: Any,
) -> Outcome:
    """Run one harness to its end (or its timeout), showing its latest output line."""
    began = time.monotonic()
    if (reason := not_applicable(case)) is not None:
        append(out, row(case, AGENT_METRICS[0], reason))
        return Outcome(case, 0.0, 0, 1, None)
    if env.python is None:
        append(out, row(case, "install", f"not installed: {env.problem}"))
        return Outcome(case, 0.0, None, 1, f"not installed: {env.problem}")
    command = [str(env.python), "-m", f"bench.peers.{case.system}"]
    command += ["--workload", case.workload, "--backend", case.backend]
    command += ["--durability", case.durability, "--runs", str(args.runs), "--out", str(out)]
    if args.quick:
        command.append("--quick")
    if args.dir:
        command += ["--dir", str(args.dir)]
    timeout = args.timeout * args.runs
    before = count_rows(out)
    stderr_path = logs / f"{case.slug}.stderr"
    stdout_path = logs / f"{case.slug}.stdout"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    process_env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
    process_env.pop("AETHERIS_DATABASE_URL", None)
    lines: queue.Queue[str | None] = queue.Queue()
    with (
        open(stderr_path, "w") as err,
        open(stdout_path, "w") as log,
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=process_env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,  # its own process group: a timeout ends its children too
        ) as proc,
    ):
        assert proc.stdout is not None
        threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        try:
            timed_out = _follow(lines, log, progress, current, began + timeout)
        except BaseException:  # Ctrl-C: end the harness and everything it started
            _end(proc)
            raise
        if timed_out:
            _end(proc)
        code: int | None = proc.wait()
    seconds = time.monotonic() - began
    tail = " | ".join(deque(stderr_path.read_text(errors="replace").splitlines(), maxlen=12))
    problem = None
    if timed_out:
        problem = f"FAILED: timed out after {timeout:.0f} s; stderr: {tail[-1500:]}"
        code = None
    elif code != 0:
        problem = f"FAILED: exit code {code}; stderr: {tail[-1500:]}"
    if problem:
        append(out, row(case, "harness", problem, {"stderr_log": str(stderr_path)}))
    return Outcome(case, seconds, code, count_rows(out) - before, problem)


def run_all(
    cases: Sequence[Case], envs: dict[str, Env], args: Any, out: Path, logs: Path, console: Console
) -> list[Outcome]:
    logs.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("all", total=len(cases))
        current = progress.add_task("", total=None)
        for number, case in enumerate(cases, 1):
            progress.update(overall, description=f"[bold]{case.label}[/] ({number}/{len(cases)})")
            progress.reset(current, description="  └ starting …")
            outcome = run_case(case, envs[case.system], args, out, logs, progress, current)
            outcomes.append(outcome)
            mark = "[green]ok[/]" if outcome.problem is None else "[red]FAILED[/]"
            if outcome.problem and outcome.problem.startswith("not installed"):
                mark = "[yellow]not installed[/]"
            progress.console.print(
                f"{mark} {case.label}: {outcome.rows} rows in {outcome.seconds:.1f} s"
                + (f" — {outcome.problem[:200]}" if outcome.problem else "")
            )
            progress.advance(overall)
        progress.update(current, description="  └ done", visible=False)
    return outcomes
