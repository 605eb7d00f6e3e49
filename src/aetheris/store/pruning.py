"""Retention on every store: what deleting ended jobs removes, and the tombstones it leaves.

:meth:`~aetheris.store.port.Store.prune_ended` deletes, in one short transaction, a batch of
jobs that ended (``succeeded``, ``failed``, ``cancelled``, ``compensated``) before a cutoff,
with every row keyed by them: events, ledger rows, signals, blobs, keyed signals delivered to
them, the correlation keys they held, webhook deliveries about them, and the LangGraph
checkpoints of their default thread (``aetheris-<job id>`` in the ``langgraph`` key-value
space). A job's end time is its row's last update. Jobs that have not ended are never
touched, whatever their age, and neither is a child whose parent has not ended (the parent
reads its result when it resumes). Forks hold a copy of their origin's journal, so they keep
working when the origin is pruned.

Each pruned job leaves a :class:`Tombstone`: its journal's length and head when it went, signed
by the pruning process's key when it holds one (the statement of :func:`tombstone_statement`).
A verifier who witnessed the job (``aetheris verify --all --witness FILE``) can then tell a
prune, which it accepts, from a deletion, which it reports. Rejected: deleting without a trace
(a witness could no longer tell retention from tampering); keeping the events and deleting
only payloads (the hash chain covers the bytes, so the journal would no longer verify).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from aetheris.errors import InvalidInput
from aetheris.journal import Anchor

DEFAULT_BATCH = 500
# The row counts a prune reports, in this order: what each table lost.
TABLES = (
    "jobs",
    "events",
    "effects",
    "signals",
    "blobs",
    "keyed_signals",
    "correlations",
    "deliveries",
    "kv",
)
# The key-value entries of a job: the LangGraph checkpoints and writes of its default thread.
_KV_SPACE = "langgraph"
_KV_KINDS = ("c", "w")
_TOP = "\U0010ffff"  # above every code point: prefix + _TOP ends the prefix's key range


@dataclass(frozen=True, slots=True)
class Pruned:
    """What a prune deleted (or, in a dry run, would delete): rows by table (:data:`TABLES`)
    and jobs by agent. ``+`` adds two batches up."""

    rows: Mapping[str, int] = field(default_factory=dict)
    by_agent: Mapping[str, int] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        return self.rows.get("jobs", 0)

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(_sum(self.rows, other.rows), _sum(self.by_agent, other.by_agent))

    @classmethod
    def of(cls, candidates: Sequence[Candidate], counts: Mapping[str, int]) -> Pruned:
        by_agent: dict[str, int] = {}
        for c in candidates:
            by_agent[c.agent] = by_agent.get(c.agent, 0) + 1
        rows = {"jobs": len(candidates)} | {t: int(counts.get(t, 0)) for t in TABLES[1:]}
        return cls(rows, dict(sorted(by_agent.items())))


def _sum(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in dict.fromkeys([*a, *b])}


@dataclass(frozen=True, slots=True)
class Candidate:
    """An ended job a prune chose: what its tombstone records."""

    id: str
    tenant: str
    agent: str
    status: str
    events: int
    head: str
    ended_at: float


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What is left of a pruned job: its journal's length and head when it was deleted, and
    the signature of :func:`tombstone_statement` by the pruning process's key (if it held one)."""

    job_id: str
    tenant: str
    agent: str
    status: str
    events: int
    head: str
    ended_at: float
    pruned_at: float
    anchor: Anchor | None = None


def tombstone_statement(job_id: str, events: int, head: str) -> bytes:
    """What a tombstone's signature signs: the job and its journal's length and head."""
    doc = {"aetheris": "pruned/1", "events": events, "head": head, "job": job_id}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def tombstone_rows(
    candidates: Iterable[Candidate], signer: Any, now: float
) -> list[dict[str, Any]]:
    """Statement parameters of the tombstones of ``candidates`` (signed when ``signer``, a
    :class:`~aetheris.anchor.SigningKey`, is given)."""
    rows = []
    for c in candidates:
        sig = None if signer is None else signer.sign(tombstone_statement(c.id, c.events, c.head))
        rows.append({
            "job_id": c.id, "tenant": c.tenant, "agent": c.agent, "status": c.status,
            "events": c.events, "head": c.head, "ended_at": c.ended_at, "pruned_at": now,
            "anchor_key": None if signer is None else signer.key_id, "anchor_sig": sig,
        })  # fmt: skip
    return rows


def tombstone_of(row: Mapping[str, Any]) -> Tombstone:
    anchor = None
    if row["anchor_key"] is not None and row["anchor_sig"] is not None:
        anchor = Anchor(str(row["anchor_key"]), str(row["anchor_sig"]))
    return Tombstone(
        str(row["job_id"]), str(row["tenant"]), str(row["agent"]), str(row["status"]),
        int(row["events"]), str(row["head"]), float(row["ended_at"]), float(row["pruned_at"]),
        anchor,
    )  # fmt: skip


def kv_ranges(job_ids: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(space, low, high)`` key ranges of the key-value entries of jobs ``job_ids``."""
    ranges = []
    for job_id in job_ids:
        thread = quote(f"aetheris-{job_id}", safe="")
        for kind in _KV_KINDS:
            prefix = f"{kind}/{thread}/"
            ranges.append((_KV_SPACE, prefix, prefix + _TOP))
    return ranges


class Pruning(Protocol):
    """The store port's retention operations (part of :class:`~aetheris.store.port.Store`)."""

    async def prune_ended(
        self,
        ended_before: float,
        *,
        agent: str | None = None,
        skip_agents: Sequence[str] = (),
        limit: int | None = DEFAULT_BATCH,
        dry_run: bool = False,
    ) -> Pruned:
        """Delete one batch, at most ``limit`` jobs (``None``: all), of the jobs that ended
        before ``ended_before`` (Unix seconds), oldest created first: of ``agent`` when given, of
        no agent in ``skip_agents``. In one short transaction, with every row keyed by them,
        leaving a :class:`Tombstone` each. ``dry_run``: delete nothing, count what would go.
        A batch smaller than ``limit`` was the last one."""
        ...

    async def tombstones(self, job_ids: Sequence[str]) -> dict[str, Tombstone]:
        """The tombstones of those of ``job_ids`` that were pruned, by job id."""
        ...


def check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise InvalidInput(f"a prune's batch must be at least 1 job, got {limit}")
