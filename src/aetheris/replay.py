"""Deterministic replay of a job's journal against the current code, executing nothing.

Replay runs the agent with every durable operation answered from the journal. It stops at the
first position the journal does not hold (no tool, step or model call is ever executed) and
reports a divergence with the same readable diff a worker would park with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aetheris import runner
from aetheris.app import App
from aetheris.errors import JobNotFound, ReplayEnded
from aetheris.journal import Event, EventDraft, EventType
from aetheris.run import JobRun
from aetheris.store.port import Commit, Effect, Job, Lease, Signal


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What replaying a job's journal against the code found.

    ``outcome`` is ``matched`` (the code ends as the journal does), ``diverged`` (``diff`` says
    where), ``incomplete`` (the journal stops at ``position``: the job has not finished) or
    ``different_end`` (same operations, but the job ends differently now); a saved journal
    of an agent the code does not define is ``unknown_agent``. A divergence names
    the ``location`` in the code that asked for the operation the journal does not hold (None
    when the code ended short of the journal). ``source`` is the file a saved journal was read
    from, when it was.
    """

    job_id: str
    outcome: str
    operations: int
    position: int | None = None
    diff: str | None = None
    recorded_end: dict[str, Any] | None = None
    replayed_end: dict[str, Any] | None = None
    executed: list[str] = field(default_factory=list)
    location: str | None = None
    source: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in ("matched", "incomplete")


class _Capture:
    """Stands in for the store: keeps what the replayed run would have written."""

    def __init__(self, blobs: Mapping[str, bytes]) -> None:
        self.commits: list[Commit] = []
        self._blobs = blobs

    async def blobs(self, job_id: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]:
        wanted = self._blobs if hashes is None else hashes
        return {h: self._blobs[h] for h in wanted if h in self._blobs}

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        self.commits.append(commit)
        return []

    async def get_job(self, job_id: str) -> Job | None:
        return None

    async def events(self, job_id: str) -> list[Event]:
        return []

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        return []

    async def key_holder(self, tenant: str, name: str, key: str) -> str | None:
        return None

    async def agents(self) -> list[str]:
        return []

    async def take_token(self, name: str, rate: float, burst: float) -> float:
        return 0.0  # a replay dispatches nothing: no call waits for a rate limit


_END_EVENTS = (
    EventType.JOB_SUCCEEDED,
    EventType.JOB_FAILED,
    EventType.JOB_COMPENSATED,
    EventType.JOB_PARKED,
    EventType.JOB_CANCELLED,
)


def _end(entries: Sequence[Event | EventDraft]) -> dict[str, Any] | None:
    """How a run ended (its last end event), without the traceback, which may differ."""
    ends = [e for e in entries if e.type in _END_EVENTS]
    if not ends:
        return None
    data = dict(ends[-1].data)
    if isinstance(data.get("error"), dict):
        data["error"] = {k: v for k, v in data["error"].items() if k != "traceback"}
    return {"type": ends[-1].type.value, **data}


async def replay(app: App, job_id: str) -> ReplayReport:
    """Replay ``job_id``'s journal against ``app``'s code (read-only)."""
    store = await app.open_store(view="reveal")  # the code sees what the live run saw
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    events, effects = await store.events(job_id), await store.effects(job_id=job_id)
    return await replay_history(app, job, events, effects, await store.blobs(job_id))


async def replay_history(
    app: App,
    job: Job,
    events: Sequence[Event],
    effects: Sequence[Effect],
    blobs: Mapping[str, bytes] | None = None,
) -> ReplayReport:
    """Replay a job's recorded history (from a store or a bundle) against ``app``'s code."""
    capture = _Capture(blobs or {})
    run = JobRun(
        job=job,
        lease=Lease(job.id, job.lease_epoch, "replay"),
        agent=app.agent_def(job.agent),
        store=capture,
        events=events,
        effects=effects,
        lease_deadline=lambda: math.inf,
        max_payload_bytes=app.max_payload_bytes,
        replay_only=True,
        clock=app.clock,
    )
    operations = sum(1 for e in events if e.type is EventType.OP)
    try:
        await runner.execute(run)
    except ReplayEnded as ended:
        return ReplayReport(
            job.id, "incomplete", operations, position=ended.position, recorded_end=_end(events)
        )
    replayed = [d for c in capture.commits for d in c.events]
    parked = [d for d in replayed if d.type is EventType.JOB_PARKED]
    if parked and parked[-1].data["reason"] == "nondeterminism":
        detail = parked[-1].data["detail"]
        return ReplayReport(
            job.id,
            "diverged",
            operations,
            position=detail["position"],
            diff=detail["diff"],
            recorded_end=_end(events),
            location=detail.get("location"),
        )
    recorded, replayed_end = _end(events), _end(replayed)
    outcome = "matched" if recorded is None or recorded == replayed_end else "different_end"
    return ReplayReport(
        job.id, outcome, operations, recorded_end=recorded, replayed_end=replayed_end
    )
