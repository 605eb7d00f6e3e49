"""Tenancy on the PostgreSQL store: job listings and counts by tenant (and cursor), API keys,
and the public keys of the signing keys in use.

A mixin of :class:`~aetheris.store.postgres.PostgresStore`, kept apart so that the store's
module stays about running jobs (see :meth:`aetheris.store.port.Store.list_jobs` and
:meth:`~aetheris.store.port.Store.create_api_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aetheris.errors import Conflict
from aetheris.store.port import ApiKey, Job, JobStatus, ParkReason, SigningKeyInfo, Summary
from aetheris.store.sql.rows import (
    POSTGRESQL,
    job_from,
    key_from,
    key_params,
    list_params,
    summary_from,
)

Row = dict[str, Any]


class PostgresTenancy:
    """``list_jobs``, ``summary``, ``*api_key*`` and ``*signing_key*`` on PostgreSQL; the store
    provides ``_one``, ``_all`` and ``_execute``."""

    async def _one(self, query: str, params: Mapping[str, Any] | None = None) -> Row | None:
        raise NotImplementedError

    async def _all(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        raise NotImplementedError

    async def _execute(self, query: str, params: Mapping[str, Any] | None = None) -> None:
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
        return [job_from(r, POSTGRESQL) for r in await self._all("list_jobs", params)]

    async def summary(self, *, tenant: str | None = None) -> Summary:
        params = {"tenant": tenant}
        counts = await self._all("count_jobs", params)
        oldest = await self._one("oldest_pending", params)
        effects = await self._all("count_effects", params)
        return summary_from(counts, oldest, effects)

    async def create_api_key(self, key: ApiKey) -> None:
        if await self._one("insert_api_key", key_params(key)) is None:
            raise Conflict(f"API key {key.id!r} already exists")

    async def api_key(self, key_id: str) -> ApiKey | None:
        row = await self._one("get_api_key", {"id": key_id})
        return key_from(row) if row is not None else None

    async def api_keys(self) -> list[ApiKey]:
        return [key_from(r) for r in await self._all("list_api_keys")]

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        row = await self._one("revoke_api_key", {"id": key_id})
        return key_from(row) if row is not None else None

    async def record_signing_key(self, key_id: str, public_key: str) -> None:
        await self._execute("record_signing_key", {"key_id": key_id, "public_key": public_key})

    async def signing_keys(self) -> list[SigningKeyInfo]:
        rows = await self._all("signing_keys")
        return [SigningKeyInfo(r["key_id"], r["public_key"], r["first_seen"]) for r in rows]
