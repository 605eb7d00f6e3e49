"""A fresh database for each run, on either backend, and the URL its workers use."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import pg
from bench.common import Case


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
        return await pg.last_registration(self.url)


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
    async with pg.fresh_database(admin_url, case.sync) as name:
        url = pg.database_url(admin_url, name, **options)
        yield Database("postgres", url, None, await pg.effective_settings(url))
