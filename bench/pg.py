"""PostgreSQL for the benchmark: the server's settings, and a fresh database per run.

Each run gets ``CREATE DATABASE bench_<random>`` (psycopg, autocommit) on the server of
``--pg-url``; the store migrates it when it opens, and ``DROP DATABASE ... WITH (FORCE)`` removes
it afterwards, whatever happened.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SETTINGS = (
    "server_version",
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "full_page_writes",
    "commit_delay",
    "shared_buffers",
    "max_connections",
)


def database_url(admin_url: str, name: str, **options: Any) -> str:
    """The URL of database ``name`` on the server of ``admin_url``, with ``aetheris_`` options."""
    parts = urlsplit(admin_url)
    query = urlencode({f"aetheris_{key}": value for key, value in options.items()})
    return urlunsplit(parts._replace(path=f"/{name}", query=query))


async def show(url: str, names: Sequence[str], connect_timeout: int = 0) -> dict[str, str]:
    """``SHOW`` of each setting in ``names``, from a session of ``url``. ``connect_timeout``:
    seconds to wait for the connection, 0 for psycopg's default."""
    options: dict[str, Any] = {"connect_timeout": connect_timeout} if connect_timeout else {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, **options) as conn:
        found = {}
        for name in names:
            row = await (
                await conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name)))
            ).fetchone()
            found[name] = str(row[0]) if row else "?"
        return found


async def server_settings(admin_url: str) -> dict[str, str]:
    """``SHOW`` of the settings that decide what a commit costs (and the server's version)."""
    return await show(admin_url, SETTINGS)


@asynccontextmanager
async def fresh_database(admin_url: str, synchronous_commit: str | None) -> AsyncIterator[str]:
    """Create ``bench_<random>`` (with ``synchronous_commit`` set on it if given); drop it after."""
    name = f"bench_{secrets.token_hex(6)}"
    ident = sql.Identifier(name)
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        if synchronous_commit is not None:
            await conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                    ident, sql.Literal(synchronous_commit)
                )
            )
    try:
        yield name
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


async def effective_settings(url: str) -> dict[str, str]:
    """What a session of the run's database sees (database-level settings included)."""
    return await show(url.split("?", 1)[0], ("synchronous_commit", "fsync"))


async def last_registration(url: str) -> float:
    """When the last worker registered its agents (``max(last_seen)`` of the ``agents`` table)."""
    async with await psycopg.AsyncConnection.connect(url.split("?", 1)[0]) as conn:
        row = await (await conn.execute("SELECT max(last_seen) FROM agents")).fetchone()
    if row is None or row[0] is None:
        raise RuntimeError("benchmark run invalid: no worker registered")
    return float(row[0])
