"""Retention on the in-memory store: the reference semantics of
:meth:`~aetheris.store.port.Store.prune_ended` (see :mod:`aetheris.store.pruning`).

A mixin of :class:`~aetheris.store.memory.MemoryStore`; each call runs under the store's one
lock, as one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from aetheris.models import TERMINAL_STATUSES, Effect, Job, Signal, WebhookDelivery
from aetheris.store.memory_keyed import KeyedRow, Where
from aetheris.store.pruning import (
    DEFAULT_BATCH,
    Candidate,
    Pruned,
    Tombstone,
    check_limit,
    kv_ranges,
    tombstone_of,
    tombstone_rows,
)


class MemoryPruning:
    """``prune_ended`` and ``tombstones`` in dictionaries; the store provides the tables."""

    _lock: threading.Lock
    _clock: Callable[[], float]
    signer: Any
    _jobs: dict[str, Job]
    _events: dict[str, list[Any]]
    _effects: dict[tuple[str, int], Effect]
    _signals: dict[tuple[str, int], Signal]
    _blobs: dict[tuple[str, str], bytes]
    _by_key: dict[tuple[str, str], str]
    _holders: dict[Where, str]
    _keyed: dict[Where, list[KeyedRow]]
    _deliveries: dict[int, WebhookDelivery]
    _claims: dict[int, str]
    _kv: dict[str, dict[str, bytes]]
    _tombstones: dict[str, Tombstone]

    async def prune_ended(
        self,
        ended_before: float,
        *,
        agent: str | None = None,
        skip_agents: Sequence[str] = (),
        limit: int | None = DEFAULT_BATCH,
        dry_run: bool = False,
    ) -> Pruned:
        check_limit(limit)
        with self._lock:
            chosen = self._prune_candidates(ended_before, agent, set(skip_agents), limit)
            ids = {c.id for c in chosen}
            counts = self._prune_rows(ids, delete=not dry_run)
            if not dry_run:
                now = self._clock()
                for row in tombstone_rows(chosen, self.signer, now):
                    self._tombstones.setdefault(row["job_id"], tombstone_of(row))
            return Pruned.of(chosen, counts)

    async def tombstones(self, job_ids: Sequence[str]) -> dict[str, Tombstone]:
        with self._lock:
            return {i: self._tombstones[i] for i in job_ids if i in self._tombstones}

    def _prune_candidates(
        self, before: float, agent: str | None, skip: set[str], limit: int | None
    ) -> list[Candidate]:
        def ended(job: Job | None) -> bool:
            return job is None or job.status in TERMINAL_STATUSES

        found = [
            j
            for j in self._jobs.values()
            if j.status in TERMINAL_STATUSES
            and j.created_at < before  # as the SQL stores' index range: implied by the next
            and j.updated_at < before
            and (agent is None or j.agent == agent)
            and j.agent not in skip
            and (j.parent_id is None or ended(self._jobs.get(j.parent_id)))
        ]
        found.sort(key=lambda j: (j.created_at, j.id))  # the order of the SQL stores' jobs_ended
        return [
            Candidate(j.id, j.tenant, j.agent, j.status.value, j.event_count, j.head_hash,
                      j.updated_at)
            for j in found[:limit]
        ]  # fmt: skip

    def _prune_rows(self, ids: set[str], *, delete: bool) -> dict[str, int]:
        def drop(table: dict[Any, Any], keys: list[Any]) -> int:
            if delete:
                for key in keys:
                    del table[key]
            return len(keys)

        counts = {
            "events": sum(len(self._events.get(i, ())) for i in ids),
            "effects": drop(self._effects, [k for k in self._effects if k[0] in ids]),
            "signals": drop(self._signals, [k for k in self._signals if k[0] in ids]),
            "blobs": drop(self._blobs, [k for k in self._blobs if k[0] in ids]),
            "correlations": drop(self._holders, [w for w, i in self._holders.items() if i in ids]),
            "deliveries": drop(
                self._deliveries, [n for n, d in self._deliveries.items() if d.job_id in ids]
            ),
            "keyed_signals": self._prune_keyed(ids, delete),
            "kv": self._prune_kv(ids, delete),
        }
        if delete:
            for job_id in ids:
                job = self._jobs.pop(job_id)
                self._events.pop(job_id, None)
                if job.idempotency_key is not None:
                    self._by_key.pop((job.tenant, job.idempotency_key), None)
            for number in [n for n in self._claims if n not in self._deliveries]:
                del self._claims[number]
        return counts

    def _prune_keyed(self, ids: set[str], delete: bool) -> int:
        count = 0
        for where, rows in list(self._keyed.items()):
            kept = [r for r in rows if r.job_id not in ids]
            count += len(rows) - len(kept)
            if delete:
                self._keyed[where] = kept
        return count

    def _prune_kv(self, ids: set[str], delete: bool) -> int:
        count = 0
        for space, low, high in kv_ranges(sorted(ids)):
            entries = self._kv.get(space, {})
            keys = [k for k in entries if low <= k < high]
            count += len(keys)
            if delete:
                for key in keys:
                    del entries[key]
        return count
