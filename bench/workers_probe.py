"""What ``python -m bench.workers`` watches while worker processes drain a queue: the server's
sessions and their wait events, ungranted locks, transaction counters, and the CPU time of the
machine, of PostgreSQL's processes and of the workers (from ``/proc``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ACTIVITY = """
SELECT coalesce(wait_event_type, 'CPU') AS kind, coalesce(wait_event, 'running') AS event
FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()
"""
WAITING_LOCKS = "SELECT count(*) FROM pg_locks WHERE NOT granted"
DATABASE = """
SELECT xact_commit, xact_rollback, deadlocks, blks_hit, blks_read
FROM pg_stat_database WHERE datname = current_database()
"""
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Sampler:
    """Samples ``pg_stat_activity`` and ``pg_locks`` every ``interval`` seconds."""

    url: str
    interval: float = 0.05
    samples: int = 0
    active: int = 0  # active sessions seen, summed over samples
    waits: collections.Counter[str] = field(default_factory=collections.Counter)
    lock_samples: int = 0  # samples where some session waited for a lock
    max_waiting_locks: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while not stop.is_set():
                rows = await (await conn.execute(ACTIVITY)).fetchall()
                locks = await (await conn.execute(WAITING_LOCKS)).fetchone()
                self.samples += 1
                self.active += len(rows)
                self.waits.update(f"{kind}:{event}" for kind, event in rows)
                waiting = int(locks[0]) if locks else 0
                self.lock_samples += any(kind == "Lock" for kind, _ in rows)
                self.max_waiting_locks = max(self.max_waiting_locks, waiting)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)

    def summary(self) -> dict[str, Any]:
        total = sum(self.waits.values()) or 1
        return {
            "samples": self.samples,
            "mean_active_sessions": round(self.active / max(self.samples, 1), 2),
            "wait_events": {k: round(v / total, 3) for k, v in self.waits.most_common(8)},
            "lock_wait_samples": self.lock_samples,
            "max_ungranted_locks": self.max_waiting_locks,
        }


def database_counters(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(DATABASE).fetchone()
    assert row is not None
    names = ("xact_commit", "xact_rollback", "deadlocks", "blks_hit", "blks_read")
    return dict(zip(names, (int(v) for v in row), strict=True))


def counter_deltas(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds so far: the machine's busy and total time, and per process group."""

    at: float
    busy: float
    total: float
    postgres: float
    workers: float

    backends: dict[int, float]  # CPU seconds of each of the workers' server sessions

    @staticmethod
    def read(worker_pids: list[int], url: str) -> CpuClock:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
        idle = ticks[3] + ticks[4]
        return CpuClock(
            time.monotonic(),
            (sum(ticks) - idle) / TICKS,
            sum(ticks) / TICKS,
            sum(_cpu(pid) for pid in _pids_named("postgres")),
            sum(_cpu(pid) for pid in worker_pids),
            {pid: _cpu(pid) for pid in worker_backends(url)},
        )

    def since(self, start: CpuClock) -> dict[str, float]:
        """Cores used on average between ``start`` and this reading."""
        wall = self.at - start.at or 1.0
        total = self.total - start.total or 1.0
        cores = os.cpu_count() or 1
        # A session opened during the run counts whole; one closed during it is missed.
        backends = sum(cpu - start.backends.get(pid, 0.0) for pid, cpu in self.backends.items())
        return {
            "machine_busy": round((self.busy - start.busy) / total, 3),
            "machine_cores_busy": round((self.busy - start.busy) / total * cores, 2),
            # Every PostgreSQL process of the machine, other databases' sessions included.
            "postgres_cores": round((self.postgres - start.postgres) / wall, 2),
            "worker_sessions_cores": round(backends / wall, 2),
            "worker_cores": round((self.workers - start.workers) / wall, 2),
        }


def worker_backends(url: str) -> list[int]:
    """The server processes of the workers' sessions on the run's database."""
    query = (
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'aetheris-worker'"
    )
    with psycopg.connect(url) as conn:
        return [int(row[0]) for row in conn.execute(query).fetchall()]


def _pids_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
    return found


def _cpu(pid: int) -> float:
    """utime + stime of ``pid`` (and its waited-for children), in seconds; 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICKS


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
