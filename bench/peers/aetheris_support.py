"""What the Aetheris harness (``bench.peers.aetheris``) is made of: runs, databases, workers.

Fresh databases with the run's durability, stored-bytes measures, worker processes
(``python -m aetheris worker --app bench.peers.aetheris_app:app``) and small journal helpers.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

import aetheris
from aetheris.journal import Event, EventType
from bench import common as core_common
from bench.peers import aetheris_app, common

ROOT = Path(__file__).resolve().parents[2]
WORKER_APP = "bench.peers.aetheris_app:app"
SETTLE_S = 0.5  # a fresh worker is left idle this long after it logged "serving"
PG_TABLES = ("jobs", "events", "effects", "agents")

Process = asyncio.subprocess.Process


@dataclass
class Figure:
    variant: str
    metric: str
    value: float | None
    notes: str
    extra: dict[str, Any] = field(default_factory=dict)


class Invalid(Exception):
    """The run did not go as the workload requires: its figures are not reported."""


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise Invalid(problem)


@dataclass
class Run:
    args: Any
    dir: Path

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)


def version() -> str:
    """``aetheris.__version__`` plus the git commit (``.dirty`` if src/ has local changes)."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = ".dirty" if git("status", "--porcelain", "--", "src") else ""
    return f"{aetheris.__version__}+g{commit}{dirty}"


# -- databases ----------------------------------------------------------------------------------


@contextmanager
def database(run: Run, name: str) -> Iterator[str]:
    """A fresh database URL for one measurement, with the run's durability."""
    if run.args.backend == "sqlite":
        suffix = "?synchronous=normal" if run.args.durability == "process" else ""
        yield f"sqlite:///{(run.dir / name).resolve()}.db{suffix}"
        return
    sync = "off" if run.args.durability == "process" else None
    with common.fresh_postgres_db("bench_aetheris", sync) as url:
        yield url


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite://").split("?", 1)[0])


def stored_bytes(url: str) -> dict[str, int]:
    """SQLite: file size after a TRUNCATE checkpoint; PostgreSQL: the tables' total size."""
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        lite = sqlite3.connect(path)
        try:
            lite.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            lite.close()
        wal = Path(f"{path}-wal")
        return {"bytes": path.stat().st_size, "wal": wal.stat().st_size if wal.exists() else 0}
    query = " + ".join(f"pg_total_relation_size('{t}')" for t in PG_TABLES)
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT ({query})::bigint").fetchone()  # type: ignore[arg-type,unused-ignore]
    return {"bytes": int(row[0]) if row else 0}


# -- worker processes ---------------------------------------------------------------------------


async def spawn_worker(
    url: str, workdir: Path, name: str, concurrency: int, env: dict[str, str], *extra: str
) -> Process:
    """``python -m aetheris worker --app bench.peers.aetheris_app:app``, logging to name.log;
    started without the kill variable unless ``env`` sets it."""
    base = {k: v for k, v in os.environ.items() if k != aetheris_app.KILL_ENV}
    base |= {"PYTHONPATH": str(ROOT), **env}
    return await core_common.spawn_worker(
        url, workdir, name, concurrency, *extra, app=WORKER_APP, env=base
    )


async def until(
    what: str, check: Callable[[], Awaitable[bool]], procs: Sequence[Process], timeout: float
) -> None:
    """Poll ``check`` until true; fail if a worker exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not await check():
        dead = [p.returncode for p in procs if p.returncode is not None]
        expect(not dead, f"a worker exited with {dead} while waiting for {what}")
        expect(time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s")
        await asyncio.sleep(0.02)


async def serving(workdir: Path, name: str, proc: Process) -> None:
    """Wait until the worker logged that it serves, then leave it idle a moment."""
    log = workdir / f"{name}.log"

    async def ready() -> bool:
        return " serving " in read(log)

    await until(f"{name} serving", ready, [proc], 60)
    await asyncio.sleep(SETTLE_S)


def read(path: Path) -> str:
    return path.read_text(errors="replace")


def exists(path: Path) -> bool:
    return path.exists()


def last_of(events: Sequence[Event], kind: EventType) -> Event:
    found = [e for e in events if e.type is kind]
    expect(bool(found), f"no {kind} event")
    return found[-1]
