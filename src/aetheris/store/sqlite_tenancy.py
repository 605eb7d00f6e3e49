"""Tenancy on the SQLite store: job listings and counts by tenant (and cursor), API keys, and
the public keys of the signing keys in use.

A mixin of :class:`~aetheris.store.sqlite.SQLiteStore`, kept apart so that the store's module
stays about running jobs: reads run inline, writes go through the store's group commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from aetheris.errors import Conflict
from aetheris.store import sql
from aetheris.store.port import ApiKey, Job, JobStatus, ParkReason, SigningKeyInfo, Summary
from aetheris.store.sql.rows import (
    SQLITE,
    job_from,
    key_from,
    key_params,
    list_params,
    summary_from,
)

T = TypeVar("T")
Q = sql.queries("sqlite")


class SQLiteTenancy:
    """``list_jobs``, ``summary``, ``*api_key*`` and ``*signing_key*`` on a SQLite file; the store
    provides ``_read``, ``_write`` and ``_clock``."""

    _clock: Callable[[], float]

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        agent: str | None = None,
        since: float | None = None,
        limit: int = 100,
        tenant: str | None = None,
        park_reason: ParkReason | None = None,
        until: float | None = None,
        after: tuple[float, str] | None = None,
        idempotency_key: str | None = None,
    ) -> list[Job]:
        params = list_params(
            status, agent, since, limit, tenant=tenant, park_reason=park_reason, until=until,
            after=after, idempotency_key=idempotency_key,
        )  # fmt: skip
        rows = self._read(lambda conn: conn.execute(Q["list_jobs"], params).fetchall())
        return [job_from(r, SQLITE) for r in rows]

    async def summary(self, *, tenant: str | None = None) -> Summary:
        params = {"tenant": tenant}

        def read(conn: sqlite3.Connection) -> Summary:
            counts = conn.execute(Q["count_jobs"], params).fetchall()
            oldest = conn.execute(Q["oldest_pending"], params).fetchone()
            effects = conn.execute(Q["count_effects"], params).fetchall()
            return summary_from(counts, oldest, effects)

        return self._read(read)

    async def create_api_key(self, key: ApiKey) -> None:
        params = key_params(key)
        row = await self._write(lambda conn: conn.execute(Q["insert_api_key"], params).fetchone())
        if row is None:
            raise Conflict(f"API key {key.id!r} already exists")

    async def api_key(self, key_id: str) -> ApiKey | None:
        query = Q["get_api_key"]
        row = self._read(lambda conn: conn.execute(query, {"id": key_id}).fetchone())
        return key_from(row) if row is not None else None

    async def api_keys(self) -> list[ApiKey]:
        rows = self._read(lambda conn: conn.execute(Q["list_api_keys"]).fetchall())
        return [key_from(r) for r in rows]

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        params = {"id": key_id, "now": self._clock()}
        row = await self._write(lambda conn: conn.execute(Q["revoke_api_key"], params).fetchone())
        return key_from(row) if row is not None else None

    async def record_signing_key(self, key_id: str, public_key: str) -> None:
        params = {"key_id": key_id, "public_key": public_key, "now": self._clock()}
        await self._write(lambda conn: conn.execute(Q["record_signing_key"], params))

    async def signing_keys(self) -> list[SigningKeyInfo]:
        rows = self._read(lambda conn: conn.execute(Q["signing_keys"]).fetchall())
        return [SigningKeyInfo(r["key_id"], r["public_key"], r["first_seen"]) for r in rows]
