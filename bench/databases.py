"""A fresh database for each run, on either backend, and the URL its workers use."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

from bench.common import Case
from bench.peers import common


@dataclass(frozen=True)
class Database:
    """The run's database: ``url`` for the store (and for its worker processes)."""

    backend: str
    url: str
    path: Path | None = None
    settings: dict[str, str] = field(default_factory=dict)

    async def last_registration(self) -> float:
        """When the last worker registered its agents (a read of the ``agents`` table)."""
        if self.path is not None:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                row = conn.execute("SELECT max(last_seen) FROM agents").fetchone()
            finally:
                conn.close()
            return float(row[0])
        with psycopg.connect(self.url.split("?", 1)[0]) as conn:
            row = conn.execute("SELECT max(last_seen) FROM agents").fetchone()
        if row is None or row[0] is None:
            raise RuntimeError("benchmark run invalid: no worker registered")
        return float(row[0])


def sqlite_url(path: Path, sync: str | None) -> str:
    """``sqlite:////abs/path`` (FULL, the store's default) or with ``?synchronous=normal``."""
    suffix = "" if sync in (None, "full") else f"?synchronous={sync}"
    return f"sqlite:///{path.resolve()}{suffix}"


@asynccontextmanager
async def fresh_database(
    case: Case, workdir: Path, admin_url: str, **options: Any
) -> AsyncIterator[Database]:
    """A new SQLite file in ``workdir``, or a new PostgreSQL database dropped afterwards.

    ``options`` become ``aetheris_*`` URL parameters on PostgreSQL (e.g. ``reap_grace=1``).
    """
    if case.backend == "sqlite":
        path = workdir / "db.sqlite"
        yield Database(
            "sqlite", sqlite_url(path, case.sync), path, {"synchronous": case.sync or "full"}
        )
        return
    if case.backend != "postgres":
        raise ValueError(f"case {case.key} has no database")
    with common.fresh_postgres_db("bench", case.sync, admin_url) as url:
        settings = common.postgres_settings(("synchronous_commit", "fsync"), url)
        query = urlencode({f"aetheris_{key}": value for key, value in options.items()})
        yield Database("postgres", f"{url}?{query}" if query else url, None, settings)
