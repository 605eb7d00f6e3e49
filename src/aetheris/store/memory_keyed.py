"""Keyed signals on the in-memory store: the reference semantics of
:meth:`~aetheris.store.port.Store.deliver_keyed`, :meth:`~aetheris.store.port.Store.key_holder`
and of the keys a :class:`~aetheris.store.port.Commit` takes (``correlate``).

A mixin of :class:`~aetheris.store.memory.MemoryStore`, kept apart so that the store's module
stays about running jobs. Every method runs under the store's one lock: each is one
transaction, as the SQL stores' are.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.errors import Conflict
from aetheris.journal import canonical, to_jsonable
from aetheris.store._shared import key_taken
from aetheris.store.port import Delivery, Job, Signal, keyed_signal, signal_wake

Where = tuple[str, str, str]  # (tenant, signal name, key)


@dataclass(frozen=True, slots=True)
class KeyedRow:
    """A keyed signal that arrived: ``job_id`` is the job whose inbox took it (``None``: it
    waits in the mailbox)."""

    signal_id: str
    payload: Any
    sender: str | None
    created_at: float
    job_id: str | None


class MemoryKeyed:
    """Keyed signals in dictionaries; the store provides ``_lock``, ``_jobs``, ``_signals``,
    ``_clock`` and ``_wake``, and sets ``_holders`` and ``_keyed`` up."""

    _lock: threading.Lock
    _jobs: dict[str, Job]
    _signals: dict[tuple[str, int], Signal]
    _clock: Callable[[], float]
    _holders: dict[Where, str]  # the job that took each key (it may have ended since)
    _keyed: dict[Where, list[KeyedRow]]  # every keyed signal, in arrival order

    def _wake(self, job_id: str, wake_on: str | None, now: float) -> None:
        raise NotImplementedError

    def _live_holder(self, where: Where) -> str | None:
        holder = self._holders.get(where)
        job = self._jobs.get(holder) if holder is not None else None
        return holder if job is not None and not job.status.terminal else None

    async def key_holder(self, tenant: str, name: str, key: str) -> str | None:
        with self._lock:
            return self._live_holder((tenant, name, key))

    def _check_keys(self, job: Job, correlate: Sequence[tuple[str, str]]) -> None:
        """Refuse a commit that takes a key a job that has not ended holds (before writing)."""
        for name, key in correlate:
            holder = self._live_holder((job.tenant, name, key))
            if holder is not None and holder != job.id:
                raise Conflict(key_taken(job.id, name, key, holder))

    def _take_keys(self, job: Job, correlate: Sequence[tuple[str, str]]) -> None:
        """The job holds each key from now on; the key's mailbox moves to its inbox."""
        for name, key in sorted(set(correlate)):
            where = (job.tenant, name, key)
            self._holders[where] = job.id
            rows = self._keyed.get(where, [])
            for index, row in enumerate(rows):
                if row.job_id is None:
                    rows[index] = dataclasses.replace(row, job_id=job.id)
                    self._to_inbox(job.id, name, key, row)

    def _to_inbox(self, job_id: str, name: str, key: str, row: KeyedRow) -> None:
        inbox = keyed_signal(name, key)
        seq = 1 + max((s.seq for s in self._signals.values() if s.job_id == job_id), default=0)
        self._signals[(job_id, seq)] = Signal(
            job_id, seq, inbox, f"{inbox}:{row.signal_id}", row.payload, row.sender,
            row.created_at, None,
        )  # fmt: skip

    async def deliver_keyed(
        self, tenant: str, name: str, key: str, payload: Any, signal_id: str, sender: str | None
    ) -> Delivery:
        canonical(payload)  # what no SQL store can keep is refused here too
        with self._lock:
            where = (tenant, name, key)
            rows = self._keyed.setdefault(where, [])
            for row in rows:
                if row.signal_id == signal_id:
                    return Delivery(signal_id, row.job_id, False)
            holder = self._live_holder(where)
            now = self._clock()
            row = KeyedRow(signal_id, to_jsonable(payload), sender, now, holder)
            rows.append(row)
            if holder is not None:
                self._to_inbox(holder, name, key, row)
                self._wake(holder, signal_wake(keyed_signal(name, key)), now)
            return Delivery(signal_id, holder, True)
