"""What the Aetheris benchmarks share: fresh databases, worker processes, journal reads, probes.

Used by ``bench.workloads`` (so by ``python -m bench.core`` and ``bench.peers.aetheris``), by
``bench.profile`` and by the summary of ``python -m bench``. PostgreSQL databases come from
``bench.peers.common.fresh_postgres_db``, the one helper every harness uses.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

import aetheris
from aetheris.journal import Event, EventType
from aetheris.store.postgres import PostgresStore
from bench.peers import common

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
WORKER_APP = "bench.app:app"
KILL_ENV = "BENCH_AETHERIS_KILL"  # inside:N or before:N: the worker kills itself at step N
LINES_ENV = "BENCH_AETHERIS_W3_LINES"  # the lines file, where the reconcile function looks
SERVING = " serving "  # what a worker logs once it serves
SETTLE_S = 0.5  # a fresh worker is left idle this long after it logged that it serves
STOP_TIMEOUT = 30.0
FSYNC_WRITES = 200
FSYNC_BLOCK = 4096
PG_STORED = (  # every table of the store's schema (blobs and kv too), indexes and TOAST included
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"
)
PG_REAP_GRACE = float(inspect.signature(PostgresStore).parameters["reap_grace"].default)

Record = dict[str, Any]
Detail = Callable[[int, int | None], None]
Process = asyncio.subprocess.Process


class Invalid(Exception):
    """The run did not go as the workload requires: its figures are not reported."""


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise Invalid(f"benchmark run invalid: {problem}")


# -- databases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """A run's fresh database: ``url`` for the store and its worker processes."""

    backend: str
    url: str
    path: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)

    def last_registration(self) -> float:
        """When the last worker registered its agents (``max(last_seen)`` of ``agents``)."""
        if self.path is not None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT max(last_seen) FROM agents").fetchone()
            finally:
                conn.close()
        else:
            with psycopg.connect(self.url.split("?", 1)[0]) as pg:
                row = pg.execute("SELECT max(last_seen) FROM agents").fetchone()
        expect(row is not None and row[0] is not None, "no worker registered")
        return float(row[0]) if row else 0.0


@contextmanager
def fresh_database(
    backend: str,
    sync: str | None,
    workdir: Path,
    name: str = "db",
    admin_url: str = "",
    **options: Any,
) -> Iterator[Database]:
    """A new SQLite file in ``workdir``, or a new PostgreSQL database dropped afterwards.

    ``sync``: SQLite's ``synchronous`` (``full``, the store's default, or ``normal``: URL
    ``?synchronous=normal``) or PostgreSQL's ``synchronous_commit``, set with ``ALTER DATABASE``
    (None: the server's default). ``options`` become ``aetheris_*`` URL parameters on PostgreSQL
    (e.g. ``reap_grace=1``).
    """
    if backend == "sqlite":
        path = (workdir / f"{name}.sqlite").resolve()
        suffix = "" if sync in (None, "full") else f"?synchronous={sync}"
        yield Database("sqlite", f"sqlite:///{path}{suffix}", path, {"synchronous": sync or "full"})
        return
    expect(backend == "postgres", f"no database for backend {backend!r}")
    with common.fresh_postgres_db("bench_aetheris", sync, admin_url) as url:
        settings = common.postgres_settings(("synchronous_commit", "fsync"), url)
        query = urlencode({f"aetheris_{key}": value for key, value in options.items()})
        yield Database("postgres", f"{url}?{query}" if query else url, None, settings)


def stored_bytes(url: str) -> dict[str, int]:
    """SQLite: file size after a TRUNCATE checkpoint; PostgreSQL: the total size of every table
    of the store's schema (jobs, events, effects, blobs, kv, ...), indexes and TOAST included."""
    if url.startswith("sqlite:"):
        path = Path(url.removeprefix("sqlite://").split("?", 1)[0])
        lite = sqlite3.connect(path)
        try:
            lite.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            lite.close()
        wal = Path(f"{path}-wal")
        return {"bytes": path.stat().st_size, "wal": wal.stat().st_size if wal.exists() else 0}
    with psycopg.connect(url.split("?", 1)[0]) as conn:
        row = conn.execute(PG_STORED).fetchone()
    return {"bytes": int(row[0]) if row else 0}


# -- worker processes ---------------------------------------------------------------------------


async def spawn_worker(
    url: str,
    workdir: Path,
    name: str,
    concurrency: int,
    *extra: str,
    env: dict[str, str] | None = None,
    app: str = WORKER_APP,
) -> Process:
    """``python -m aetheris worker --app bench.app:app`` (or ``app``; cwd the repository, which
    is put first on ``PYTHONPATH``), its output in ``<name>.log``; without the kill variable
    unless ``env`` sets it."""
    base = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    path = os.pathsep.join(p for p in (str(REPO), base.get("PYTHONPATH")) if p)
    base |= {"PYTHONPATH": path, "AETHERIS_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "aetheris", "worker", "--app", app]
    command += ["--concurrency", str(concurrency), *extra]
    log = os.open(workdir / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            *command, cwd=REPO, env=base | (env or {}), stdout=log, stderr=subprocess.STDOUT
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


async def until(
    what: str,
    check: Callable[[], Awaitable[bool]],
    procs: Sequence[Process],
    timeout: float,
    poll: float = 0.02,
) -> None:
    """Poll ``check`` until true; fail if a worker exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not await check():
        dead = [p.returncode for p in procs if p.returncode is not None]
        expect(not dead, f"a worker exited with {dead} while waiting for {what}")
        expect(time.monotonic() < deadline, f"{what}: not after {timeout:.0f} s")
        await asyncio.sleep(poll)


async def serving(workdir: Path, name: str, proc: Process, timeout: float = 90.0) -> None:
    """Wait until the worker logged that it serves, then leave it idle a moment."""
    log = workdir / f"{name}.log"

    async def ready() -> bool:
        return SERVING in read(log)

    await until(f"{name} serving", ready, [proc], timeout)
    await asyncio.sleep(SETTLE_S)


def read(path: Path) -> str:
    """A small file's text. A plain function, so async code can call it between its phases."""
    return path.read_text(errors="replace")


def exists(path: Path) -> bool:
    return path.exists()


def write(path: Path, text: str) -> None:
    path.write_text(text)


def claims(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.type is EventType.JOB_CLAIMED]


def last_of(events: Sequence[Event], kind: EventType) -> Event:
    found = [e for e in events if e.type is kind]
    expect(bool(found), f"no {kind} event")
    return found[-1]


# -- the machine and the run --------------------------------------------------------------------


def fsync_probe(directory: Path) -> Record:
    """Time ``FSYNC_WRITES`` x (write 4 KiB + fsync) to a file in ``directory``."""
    samples = common.fsync_samples(directory, FSYNC_WRITES, FSYNC_BLOCK)
    return {"p50_us": percentile(samples, 50), "p90_us": percentile(samples, 90), "n": len(samples)}


def percentile(samples: Sequence[float], pct: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def version() -> str:
    """``aetheris.__version__`` plus the git commit (``.dirty`` if src/ has local changes)."""
    dirty = ".dirty" if git("status", "--porcelain", "--", "src") else ""
    return f"{aetheris.__version__}+g{git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def machine(workdir: Path | None = None) -> Record:
    """The machine, the interpreter and the code that ran (and the run directory's filesystem)."""
    first = {"cpu_model": "model name", "memory": "MemTotal"}
    found = dict.fromkeys(first, "?")
    for name, path in (("cpu_model", "/proc/cpuinfo"), ("memory", "/proc/meminfo")):
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        found[name] = next(
            (ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(first[name])), "?"
        )
    info = {
        **found,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "psycopg": psycopg.__version__,
        "aetheris": aetheris.__version__,
        "git": {
            "commit": git("rev-parse", "HEAD"),
            "src_dirty": bool(git("status", "--porcelain", "src")),
        },
    }
    if workdir is not None:
        info |= {"workdir": str(workdir), "workdir_filesystem": filesystem(workdir)}
    return info


def filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (Linux), e.g. ext4 or tmpfs."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        point, kind_here = line.split()[1:3]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, kind_here
    return kind


def write_results(prefix: str, document: Record) -> Path:
    """``bench/results/<prefix>-<UTC date time>.json`` (the directory is made if missing)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{prefix}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
    return path
