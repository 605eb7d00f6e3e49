"""Stores for the stateful tests: an empty one per example, on a clock the test drives.

Rules of a Hypothesis state machine cannot be coroutines, so a backend owns an event loop and
runs each store call to completion on it. Memory and SQLite stores read the fake clock through
``clock=``; on PostgreSQL the test database's ``aetheris_now()`` is replaced by a function that
reads a one-row table the backend writes, so lease expiry follows the test's clock there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from aetheris.store.memory import MemoryStore
from aetheris.store.port import Store
from aetheris.store.postgres import PostgresStore
from aetheris.store.sqlite import SQLiteStore

T = TypeVar("T")
START = 1_700_000_000.0


class FakeClock:
    """The time every store reads: it moves only when the model's clock does."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Backend:
    """One kind of store on an event loop this test owns (rules cannot be coroutines)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(START)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def set_time(self, now: float) -> None:
        self.clock.now = now

    def fresh(self) -> Store:
        raise NotImplementedError

    def release(self, store: Store) -> None:
        """Let go of one example's store."""

    def close(self) -> None:
        self.loop.close()


class MemoryBackend(Backend):
    def fresh(self) -> Store:
        return MemoryStore(clock=self.clock)


class SQLiteBackend(Backend):
    """A new database file per example: cheaper than emptying one, and nothing carries over."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory
        self.count = itertools.count()

    def fresh(self) -> Store:
        path = self.directory / f"ex{next(self.count)}.db"
        store = SQLiteStore(f"sqlite:///{path}", clock=self.clock)
        self.run(store.open())
        return store

    def release(self, store: Store) -> None:
        self.run(store.close())
        assert isinstance(store, SQLiteStore)
        for path in self.directory.glob(store.path.name + "*"):
            path.unlink()


CLOCK_SQL = """
CREATE TABLE aetheris_test_clock (now float8 NOT NULL);
INSERT INTO aetheris_test_clock VALUES (0);
CREATE OR REPLACE FUNCTION aetheris_now() RETURNS float8 LANGUAGE sql STABLE
AS $$ SELECT now FROM aetheris_test_clock $$;
"""


class PostgresBackend(Backend):
    """One database for the whole test (cloned from the migrated template), emptied per example.

    ``aetheris_now()`` reads a table the test writes, so the database's clock is the model's.
    """

    def __init__(self, url: str) -> None:
        super().__init__()
        self.admin = psycopg.connect(url, autocommit=True)
        self.admin.execute(CLOCK_SQL)
        self.store = PostgresStore(url, max_connections=2)
        self.run(self.store.open())

    def set_time(self, now: float) -> None:
        super().set_time(now)
        self.admin.execute("UPDATE aetheris_test_clock SET now = %s", (now,))

    def fresh(self) -> Store:
        self.admin.execute("TRUNCATE jobs, events, effects, signals, agents")
        return self.store

    def close(self) -> None:
        self.run(self.store.close())
        self.admin.close()
        super().close()


@contextlib.contextmanager
def backend_for(url: str, tmp_path: Path) -> Iterator[Backend]:
    backend: Backend
    if url.startswith("memory:"):
        backend = MemoryBackend()
    elif url.startswith("sqlite:"):
        backend = SQLiteBackend(tmp_path)
    else:
        backend = PostgresBackend(url)
    try:
        yield backend
    finally:
        backend.close()
