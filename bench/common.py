"""What every workload of ``python -m bench.core`` shares: cases, runs, probes, worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetheris.journal import Event, EventType
from bench.peers.common import fsync_samples

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
WORKER_APP = "bench.core_app:app"

FSYNC_WRITES = 200
FSYNC_BLOCK = 4096
STOP_TIMEOUT = 30.0

Record = dict[str, Any]
Detail = Callable[[int, int | None], None]
Process = asyncio.subprocess.Process


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


def fsync_probe(directory: Path) -> Record:
    """Time ``FSYNC_WRITES`` x (write 4 KiB + fsync) to a file in ``directory``."""
    samples = fsync_samples(directory, FSYNC_WRITES, FSYNC_BLOCK)
    return {"p50_us": percentile(samples, 50), "p90_us": percentile(samples, 90), "n": len(samples)}


def percentile(samples: Sequence[float], pct: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise RuntimeError(f"benchmark run invalid: {problem}")


def claims(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.type is EventType.JOB_CLAIMED]


# -- worker processes -------------------------------------------------------------------------


async def spawn_worker(
    url: str,
    workdir: Path,
    name: str,
    concurrency: int,
    *extra: str,
    app: str = WORKER_APP,
    env: Mapping[str, str] | None = None,
) -> Process:
    """``python -m aetheris worker --app <app>``, its output in ``<name>.log``; ``env`` is the
    environment to start from (default: this process's)."""
    env = {**(os.environ if env is None else env)}
    env |= {"AETHERIS_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "aetheris", "worker", "--app", app]
    command += ["--concurrency", str(concurrency), *extra]
    log = os.open(workdir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            *command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        os.close(log)


async def stop_workers(procs: Sequence[Process]) -> list[int]:
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


async def wait_for_log(path: Path, text: str, proc: Process, timeout: float) -> None:
    """Poll a worker's log until it contains ``text`` (e.g. the line it logs once serving)."""
    deadline = time.monotonic() + timeout
    while text not in await asyncio.to_thread(path.read_text, errors="replace"):
        expect(proc.returncode is None, f"worker exited with {proc.returncode}; see {path}")
        expect(time.monotonic() < deadline, f"no {text!r} in {path} after {timeout}s")
        await asyncio.sleep(0.02)
