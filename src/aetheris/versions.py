"""Jobs and code versions: replaying a journal in a sandbox, and what a worker does with jobs
that another version of their agent wrote.

Every entry a run writes records its agent's code version (:mod:`aetheris.fingerprint`), and
the job's row keeps the version that last wrote entries. When a deploy changes an agent's code,
a worker meets jobs written by the previous code. Its policy (:class:`OnNewCode`) says what it
does with them:

``refuse``
    It does not claim them: the claim passes over a job whose version is not its own, so a
    worker still running that version takes it. Jobs no code wrote yet are taken.
``check`` (the default)
    It claims them and first replays the recorded journal against its code in the sandbox
    (:func:`replay_journal`: nothing is dispatched, nothing is written). If it replays cleanly,
    the run goes on live under the new version. If it diverges, the job is handed back as it
    was (pending, not parked, its version unchanged) for a worker running the old code, the
    divergence is logged and journaled with the hand-back, and this worker passes over the
    job for ``recheck_after`` seconds rather than claiming it again at once. Once the new
    code has handed a job back ``HANDBACKS`` times, no worker of the old code came for it in
    all that time: the job parks ``nondeterminism`` (as under ``proceed``), where operators
    look, instead of waiting unseen and growing its journal by a hand-back a minute.
``proceed``
    It runs them: a divergence parks the job ``nondeterminism``, as a replay always has.

A job whose row names no version but whose journal holds entries (written before entries
recorded their code, or a fork) is checked under ``refuse`` and ``check`` alike.

Designs considered and rejected: checking at claim time in the database (the journal must be
replayed against code, which only a worker has); parking a job that fails the check (an old
worker would need an operator to resume it); and deferring it with ``run_at`` (that would
hold it back from the old workers too).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from aetheris import runner
from aetheris.agents import AgentDef
from aetheris.clock import Clock
from aetheris.errors import ConfigurationError, ReplayEnded
from aetheris.journal import CODED, Event, EventDraft, EventLike, EventType
from aetheris.run import JobRun
from aetheris.store.port import (
    ClaimFilter,
    Commit,
    Effect,
    Job,
    JobStatus,
    Lease,
    Signal,
    StatusWrite,
    Store,
)

log = logging.getLogger("aetheris.worker")


class OnNewCode(enum.StrEnum):
    """What a worker does with a job that another version of its agent wrote."""

    REFUSE = "refuse"
    CHECK = "check"
    PROCEED = "proceed"

    @classmethod
    def of(cls, value: str | OnNewCode) -> OnNewCode:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ConfigurationError(
                f"on_new_code must be one of {choices}, got {value!r}"
            ) from None


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What replaying a job's journal against the code found.

    ``outcome`` is ``matched`` (the code ends as the journal does), ``diverged`` (``diff`` says
    where), ``incomplete`` (the journal stops at ``position``: the job has not finished) or
    ``different_end`` (same operations, but the job ends differently now); a saved journal
    of an agent the code does not define is ``unknown_agent``. A divergence names the
    ``location`` in the code that asked for the operation the journal does not hold (None
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


def _end(entries: Sequence[EventLike | EventDraft]) -> dict[str, Any] | None:
    """How a run ended (its last end event), without the traceback, which may differ."""
    ends = [e for e in entries if e.type in _END_EVENTS]
    if not ends:
        return None
    data = dict(ends[-1].data)
    if isinstance(data.get("error"), dict):
        data["error"] = {k: v for k, v in data["error"].items() if k != "traceback"}
    return {"type": ends[-1].type.value, **data}


async def replay_journal(
    agent: AgentDef,
    job: Job,
    events: Sequence[EventLike],
    effects: Sequence[Effect],
    blobs: Mapping[str, bytes] | None = None,
    *,
    max_payload_bytes: int,
    clock: Clock,
) -> ReplayReport:
    """Replay a job's recorded history against ``agent``'s code, executing and writing nothing."""
    capture = _Capture(blobs or {})
    run = JobRun(
        job=job,
        lease=Lease(job.id, job.lease_epoch, "replay"),
        agent=agent,
        store=capture,
        events=events,
        effects=effects,
        lease_deadline=lambda: math.inf,
        max_payload_bytes=max_payload_bytes,
        replay_only=True,
        clock=clock,
    )
    operations = sum(1 for e in events if e.type is EventType.OP)
    recorded = _end(events)
    try:
        await runner.execute(run)
    except ReplayEnded as ended:
        return ReplayReport(
            job.id, "incomplete", operations, position=ended.position, recorded_end=recorded
        )
    replayed = [d for c in capture.commits for d in c.events]
    parked = [d for d in replayed if d.type is EventType.JOB_PARKED]
    if parked and parked[-1].data["reason"] == "nondeterminism":
        detail = parked[-1].data["detail"]
        position, diff = detail["position"], detail["diff"]
        where = detail.get("location")
        return ReplayReport(
            job.id, "diverged", operations, position, diff, recorded, location=where
        )
    replayed_end = _end(replayed)
    outcome = "matched" if recorded is None or recorded == replayed_end else "different_end"
    return ReplayReport(
        job.id, outcome, operations, recorded_end=recorded, replayed_end=replayed_end
    )


def written_by(job: Job, events: Sequence[EventLike], code: str) -> str | None:
    """The version that wrote ``job``'s journal when it is not ``code`` (``unknown``: entries
    that name none); ``None`` when ``code`` wrote it, or nothing did."""
    if job.code_version is not None:
        return None if job.code_version == code else job.code_version
    for event in events:
        if event.type in CODED and event.data.get("code") != code:
            return str(event.data.get("code") or "unknown")
    return None


HANDBACKS = 3  # hand-backs by one version before a diverging job parks instead


class CodeGate:
    """A worker's policy on jobs other code wrote: what it claims, what it runs."""

    def __init__(
        self,
        policy: str | OnNewCode,
        agents: Mapping[str, AgentDef],
        *,
        clock: Clock,
        max_payload_bytes: int,
        recheck_after: float = 60.0,
    ) -> None:
        if not recheck_after >= 0:
            raise ConfigurationError(f"recheck_after must be 0 or more, got {recheck_after}")
        self.policy = OnNewCode.of(policy)
        self.versions = {name: agent.version for name, agent in agents.items()}
        self.recheck_after = recheck_after
        self._agents = agents
        self._clock = clock
        self._max_payload = max_payload_bytes
        self._skipped: dict[str, float] = {}  # job id: until when (monotonic)

    def where(self, base: ClaimFilter) -> ClaimFilter:
        """``base`` with this worker's versions, and the jobs it passes over for now."""
        now = self._clock.monotonic()
        self._skipped = {job: until for job, until in self._skipped.items() if until > now}
        refuse = self.policy is OnNewCode.REFUSE
        return replace(
            base, versions=self.versions, matching_only=refuse, skip=sorted(self._skipped)
        )

    async def admit(
        self, store: Store, run: JobRun, events: Sequence[EventLike]
    ) -> runner.Outcome | None:
        """``None``: run the claimed job. Else it was handed back (how, for the worker's log)."""
        job = run.job
        other = written_by(job, events, run.code)
        if other is None or self.policy is OnNewCode.PROCEED:
            return None
        if _handed_back(events, run.code) >= HANDBACKS:
            log.warning(
                "job %s: code %s handed it back %d times and no worker of code %s took it; "
                "running it, to park it where the code and its journal disagree",
                job.id, run.code, HANDBACKS, other,
            )  # fmt: skip
            return None
        effects = await store.effects(job_id=job.id)
        report = await replay_journal(
            run.agent, job, events, effects, await store.blobs(job.id),
            max_payload_bytes=self._max_payload, clock=self._clock,
        )  # fmt: skip
        if report.outcome != "diverged":
            log.info(
                "job %s: its journal (code %s) replays cleanly under code %s; running it",
                job.id, other, run.code,
            )  # fmt: skip
            return None
        self._skipped[job.id] = self._clock.monotonic() + self.recheck_after
        log.warning(
            "job %s: code %s diverges from its journal (written by code %s); handed back for "
            "a worker running that code, passed over here for %.0fs\n%s",
            job.id, run.code, other, self.recheck_after, report.diff,
        )  # fmt: skip
        return await _hand_back(run, other, report)


def _handed_back(events: Sequence[EventLike], code: str) -> int:
    """How many times code ``code`` handed the job back for diverging from its journal."""
    return sum(
        1
        for e in events
        if e.type is EventType.JOB_RELEASED
        and e.data.get("code") == code
        and "divergence" in e.data
    )


async def _hand_back(run: JobRun, other: str, report: ReplayReport) -> runner.Outcome:
    """Release the job as it was (pending; the release holds no position, so the job's
    version stays the old one) with what diverged, in its journal."""
    why = f"code {run.code} diverges from code {other}"
    data = {
        "owner": run.lease.owner,
        "reason": why,
        "code": run.code,
        "written_by": other,
        "divergence": {"position": report.position, "diff": report.diff},
    }
    status = StatusWrite(JobStatus.PENDING)
    await run.commit(EventDraft(EventType.JOB_RELEASED, data), status=status)
    return runner.Outcome(status, reason=why)
