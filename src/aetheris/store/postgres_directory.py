"""The directory on the PostgreSQL store: which agents workers serve (with their input
schemas), and the workers' rows.

A mixin of :class:`~aetheris.store.postgres.PostgresStore`, kept apart so that the store's
module stays about running jobs (see :meth:`aetheris.store.port.Store.register_agents` and
:meth:`~aetheris.store.port.Store.workers`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aetheris.store.port import WORKER_ALIVE_WINDOW, WorkerInfo
from aetheris.store.sql.rows import POSTGRESQL, worker_from

Row = dict[str, Any]


class PostgresDirectory:
    """``register_agents``, ``agent_input_schema``, ``agents`` and ``workers`` on PostgreSQL;
    the store provides ``_one``, ``_all`` and ``_execute``."""

    async def _one(self, query: str, params: Mapping[str, Any] | None = None) -> Row | None:
        raise NotImplementedError

    async def _all(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        raise NotImplementedError

    async def _execute(self, query: str, params: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    async def register_agents(self, agents: Mapping[str, Mapping[str, Any] | None]) -> None:
        await self._execute("upsert_agents", {"agents": json.dumps(dict(agents))})

    async def agent_input_schema(self, name: str) -> dict[str, Any] | None:
        row = await self._one("agent_input_schema", {"name": name})
        return row["input_schema"] if row is not None else None

    async def agents(self) -> list[str]:
        return [r["name"] for r in await self._all("list_agents")]

    async def workers(self) -> list[WorkerInfo]:
        rows = await self._all("list_workers", {"window": WORKER_ALIVE_WINDOW})
        return [worker_from(r, POSTGRESQL) for r in rows]
