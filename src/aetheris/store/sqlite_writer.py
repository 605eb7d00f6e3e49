"""Group commit for SQLite, on the event loop's own thread.

Every write a process makes (a step's commit, a claim, a heartbeat) is queued as an *operation*:
a function of the connection. Once per turn of the event loop, everything queued runs in one
transaction, each operation inside its own savepoint (so a fenced or conflicting write rolls
back alone), and one ``COMMIT`` (one fsync at ``synchronous=FULL``) makes them all durable.
Sixteen jobs stepping at once cost one fsync, not sixteen; one job alone pays one loop turn,
no thread hand-off.

Several processes may share the file. Writers take an exclusive ``flock`` on a sidecar file
before ``BEGIN IMMEDIATE``: uncontended, the flock is taken without blocking and the batch runs
inline; contended, the batch is handed to a thread that blocks on the flock, so the event loop
keeps running and the kernel wakes the waiter as soon as the holder lets go (SQLite's own busy
handler sleeps in steps of milliseconds and lets one process starve another).

Rejected designs: one dedicated database thread per store (a thread hand-off costs ~100 us per
commit on a small VM, more than the SQL), and ``BEGIN IMMEDIATE`` with SQLite's busy timeout
alone (measured: one process locked another out for seconds under load).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from aetheris.errors import ConfigurationError, SimulatedCrash, StoreError, StoreUnavailable

T = TypeVar("T")
# Commits run inline (no event loop turn) at most this many times in a row; see Writer._run_now.
EAGER_BUDGET = 8
Operation = Callable[[sqlite3.Connection], Any]


def translate(path: Path, exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"SQLite {path}: {exc}")
    return StoreError(f"SQLite {path}: {exc}")


def connect(path: Path, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


@dataclass(slots=True)
class _Queued(Generic[T]):
    operation: Callable[[sqlite3.Connection], T]
    future: asyncio.Future[T]


@dataclass(slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


@dataclass
class Writer:
    """The write side of one store in one thread: a connection, a queue, a flusher."""

    path: Path
    synchronous: str
    busy_timeout: float
    lock_path: Path
    conn: sqlite3.Connection = field(init=False)
    lock_fd: int = field(init=False)
    pending: list[_Queued[Any]] = field(default_factory=list)
    running: bool = False
    loop: asyncio.AbstractEventLoop | None = None
    eager_left: int = 0
    batches: int = 0
    operations: int = 0

    def __post_init__(self) -> None:
        self.conn = connect(self.path, self.synchronous, self.busy_timeout)
        self.conn.execute("PRAGMA busy_timeout = 0")
        self.lock_fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o644)

    def close(self) -> None:
        self.conn.close()
        os.close(self.lock_fd)

    def submit(self, operation: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``operation``; it runs in the next batch, in its own savepoint."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            # A thread may run several event loops in turn (asyncio.run per call): work left
            # queued by a loop that is gone can never complete, and must not block this one.
            self.loop, self.pending, self.running = loop, [], False
        future: asyncio.Future[T] = loop.create_future()
        queued = _Queued(operation, future)
        if not self.running and self.eager_left > 0 and self._run_now(queued):
            self.eager_left -= 1
            return future
        self.pending.append(queued)
        if not self.running:
            self.running = True
            loop.call_soon(self._flush)
        return future

    def _run_now(self, queued: _Queued[Any]) -> bool:
        """Commit at once, without a trip through the event loop, if nothing else is waiting.

        A lone job then pays no loop turns per step. After ``EAGER_BUDGET`` such commits in a
        row the next one is queued, so the job yields and other tasks get a turn; if that
        batch holds more than one commit, inline commits stop until batches shrink to one.
        """
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            [outcome] = self._run_locked([queued], wait=False)
        except _Busy:
            return False
        self._settle_one(queued, outcome)
        return True

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        batch = [q for q in batch if not q.future.cancelled()]
        if not batch:
            self._next()
            return
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._flush_in_thread(batch)
            return
        try:
            outcomes = self._run_locked(batch, wait=False)
        except _Busy:
            self._flush_in_thread(batch)
            return
        self._settle(batch, outcomes)

    def _flush_in_thread(self, batch: list[_Queued[Any]]) -> None:
        loop = asyncio.get_running_loop()

        def blocking() -> list[_Outcome]:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            return self._run_locked(batch, wait=True)

        task = loop.run_in_executor(None, blocking)
        task.add_done_callback(lambda done: self._settle(batch, _result_of(done, len(batch))))

    def _run_locked(self, batch: list[_Queued[Any]], *, wait: bool) -> list[_Outcome]:
        """One transaction for the batch; the flock is held on entry and released here."""
        conn = self.conn
        try:
            if wait:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not wait and "locked" in str(exc):
                    raise _Busy from exc
                raise
            finally:
                if wait:
                    conn.execute("PRAGMA busy_timeout = 0")
            return self._transaction(conn, batch)
        except sqlite3.Error as exc:
            error = translate(self.path, exc)
            return [_Outcome(error=error) for _ in batch]
        finally:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)

    def _transaction(self, conn: sqlite3.Connection, batch: list[_Queued[Any]]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        alone = len(batch) == 1
        try:
            for queued in batch:
                outcomes.append(_apply(conn, queued.operation, savepoint=not alone, path=self.path))
                if isinstance(outcomes[-1].error, SimulatedCrash):
                    raise outcomes[-1].error
            # A lone operation runs without a savepoint: if it failed, nothing is kept.
            conn.execute("ROLLBACK" if alone and outcomes[0].error is not None else "COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, SimulatedCrash):
                return [_Outcome(error=exc) for _ in batch]
            error = translate(self.path, exc) if isinstance(exc, sqlite3.Error) else exc
            return [_Outcome(error=error) for _ in batch]
        self.batches += 1
        self.operations += len(batch)
        return outcomes

    def _settle(self, batch: list[_Queued[Any]], outcomes: list[_Outcome]) -> None:
        for queued, outcome in zip(batch, outcomes, strict=True):
            self._settle_one(queued, outcome)
        # Commit inline again only while nobody else commits: a batch of one says so; a bigger
        # batch says jobs are running side by side, and then batching them is what pays.
        self.eager_left = EAGER_BUDGET if len(batch) == 1 else 0
        self._next()

    @staticmethod
    def _settle_one(queued: _Queued[Any], outcome: _Outcome) -> None:
        if queued.future.cancelled():
            return
        if outcome.error is not None:
            queued.future.set_exception(outcome.error)
        else:
            queued.future.set_result(outcome.value)

    def _next(self) -> None:
        if self.pending:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self.running = False


class _Busy(Exception):
    """The database is locked by a writer that does not take our flock: wait in a thread."""


def _apply(
    conn: sqlite3.Connection, operation: Operation, *, savepoint: bool, path: Path
) -> _Outcome:
    if savepoint:
        conn.execute("SAVEPOINT op")
    try:
        value = operation(conn)
    except BaseException as exc:
        if savepoint:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
        if isinstance(exc, sqlite3.Error):
            return _Outcome(error=translate(path, exc))
        return _Outcome(error=exc)
    if savepoint:
        conn.execute("RELEASE op")
    return _Outcome(value=value)


def _result_of(done: asyncio.Future[list[_Outcome]], size: int) -> list[_Outcome]:
    if done.cancelled():
        return [_Outcome(error=StoreUnavailable("SQLite write was cancelled")) for _ in range(size)]
    error = done.exception()
    if error is not None:
        return [_Outcome(error=error) for _ in range(size)]
    return done.result()


# "off" is not durable at all: it exists to measure the cost of everything but the disk.
SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA", "off": "OFF"}


def sqlite_path(url: str) -> tuple[Path, dict[str, str]]:
    """``sqlite:///rel.db`` is relative to the working directory, ``sqlite:////abs.db`` absolute."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ConfigurationError(f"not a SQLite URL: {url!r} (use sqlite:///file.db)")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"SQLite URL has no file path: {url!r}")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Path(path), options


def split_statements(script: str) -> Iterator[str]:
    buffer: list[str] = []
    for line in script.splitlines():
        buffer.append(line)
        candidate = "\n".join(buffer)
        if sqlite3.complete_statement(candidate):
            if candidate.strip(" \n;"):
                yield candidate
            buffer = []


class PerThread(threading.local):
    """Connections are not shared across threads: each thread using the store has its own."""

    reader: sqlite3.Connection | None = None
    writer: Writer | None = None
