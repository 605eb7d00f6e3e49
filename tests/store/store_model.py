"""A small pure-Python model of what the store port promises, for the stateful store tests.

It is written from the port's docstrings and DESIGN.md, not from a store: the stores are
compared with it, so borrowing their code (``_shared.plan_control`` and the like) would test
nothing. Each port operation is one method that either returns the error the store must raise
(and then the model, like the store, changes nothing) or applies the operation and returns
``None``. Time is the model's ``now``; the test drives every store's clock from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aetheris.errors import Conflict, IdempotencyConflict, JobNotFound, LeaseLost
from aetheris.journal import EventType
from aetheris.store.port import (
    ClaimFilter,
    Commit,
    Control,
    EffectState,
    EffectWrite,
    Guard,
    Heartbeat,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    StatusWrite,
    job_wake,
    signal_wake,
)

Refusal = type[BaseException] | None


class _NotNone:
    """Equal to any value but ``None``: for payloads whose wording the port leaves open."""

    def __eq__(self, other: object) -> bool:
        return other is not None

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "<not None>"


NOT_NONE: Any = _NotNone()


@dataclass
class MJob:
    id: str
    agent: str
    input: dict[str, Any]
    queue: str
    priority: int
    run_at: float
    idempotency_key: str | None = None
    parent_id: str | None = None
    status: JobStatus = JobStatus.PENDING
    park_reason: ParkReason | None = None
    wake_on: str | None = None
    wake_at: float | None = None
    control: Control | None = None
    result: Any = None
    error: Any = None
    lease_epoch: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    attempts: int = 0
    recoveries: int = 0
    journal: list[EventType] = field(default_factory=list)

    def holds(self, lease: Lease) -> bool:
        """A lease is good while its epoch is current and the job is still running."""
        return self.lease_epoch == lease.epoch and self.status is JobStatus.RUNNING

    def view(self) -> dict[str, Any]:
        """The fields compared with the store's :class:`~aetheris.store.port.Job`."""
        return {name: getattr(self, name) for name in VIEW_FIELDS} | {
            "event_count": len(self.journal)
        }


VIEW_FIELDS = (
    "agent",
    "input",
    "queue",
    "priority",
    "run_at",
    "idempotency_key",
    "parent_id",
    "status",
    "park_reason",
    "wake_on",
    "wake_at",
    "control",
    "result",
    "error",
    "lease_epoch",
    "lease_owner",
    "lease_expires_at",
    "attempts",
    "recoveries",
)


@dataclass
class MEffect:
    tool: str
    effect: str
    args_hash: str
    idempotency_key: str
    state: EffectState
    result: Any
    error: Any
    attempt: int


@dataclass
class MSignal:
    seq: int
    name: str
    signal_id: str
    payload: Any
    consumed_position: int | None = None


@dataclass
class Model:
    now: float
    jobs: dict[str, MJob] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    effects: dict[tuple[str, int], MEffect] = field(default_factory=dict)
    signals: dict[str, list[MSignal]] = field(default_factory=dict)

    # -- jobs --------------------------------------------------------------------------------

    def create_job(self, new: NewJob) -> tuple[Refusal, str | None, bool]:
        """An idempotency key returns its job for the same request and refuses another."""
        if new.idempotency_key is not None and new.idempotency_key in self.keys:
            existing = self.jobs[self.keys[new.idempotency_key]]
            if (existing.agent, existing.input) != (new.agent, dict(new.input)):
                return IdempotencyConflict, None, False
            return None, existing.id, False
        if new.id in self.jobs:
            return Conflict, None, False
        run_at = new.run_at if new.run_at is not None else self.now
        job = MJob(new.id, new.agent, dict(new.input), new.queue, new.priority, run_at)
        job.idempotency_key, job.parent_id = new.idempotency_key, new.parent_id
        job.journal.append(EventType.JOB_CREATED)
        self.jobs[job.id] = job
        self.signals[job.id] = []
        if new.idempotency_key is not None:
            self.keys[new.idempotency_key] = job.id
        return None, job.id, True

    def children(self, job_id: str) -> list[MJob]:
        return [j for j in self.jobs.values() if j.parent_id == job_id]

    # -- ownership ---------------------------------------------------------------------------

    def claimable(self, where: ClaimFilter) -> set[str]:
        """Every job a claim may take now: the first tier that has one, all of its ties.

        Expired leases come first (ordered by expiry), then parked jobs that are due (by
        wake time), then pending jobs (priority, run time, id). Stores break ties in the first
        two tiers as they like, so any of the tied jobs is a right answer.
        """
        eligible = [
            j
            for j in self.jobs.values()
            if j.agent in where.agents and (where.queues is None or j.queue in where.queues)
        ]
        expired = [
            j
            for j in eligible
            if j.status is JobStatus.RUNNING
            and j.lease_expires_at is not None
            and j.lease_expires_at < self.now
        ]
        if expired:
            return _ties(expired, lambda j: j.lease_expires_at)
        due = [
            j
            for j in eligible
            if j.status is JobStatus.PARKED and j.wake_at is not None and j.wake_at <= self.now
        ]
        if due:
            return _ties(due, lambda j: j.wake_at)
        pending = [j for j in eligible if j.status is JobStatus.PENDING and j.run_at <= self.now]
        if not pending:
            return set()
        return {min(pending, key=lambda j: (-j.priority, j.run_at, j.id)).id}

    def take(self, job_id: str, owner: str, ttl: float) -> str | None:
        """Claim ``job_id``: a new epoch fences every older lease. Returns the owner recovered."""
        job = self.jobs[job_id]
        recovered = job.lease_owner if job.status is JobStatus.RUNNING else None
        job.status, job.lease_epoch, job.lease_owner = JobStatus.RUNNING, job.lease_epoch + 1, owner
        job.lease_expires_at = self.now + ttl
        job.attempts += 1
        job.recoveries += recovered is not None
        job.park_reason, job.wake_on, job.wake_at = None, None, None
        job.journal.append(EventType.JOB_CLAIMED)
        return recovered

    def heartbeat(self, leases: Sequence[Lease], ttl: float) -> Heartbeat:
        beat = Heartbeat(set(), {})
        for lease in leases:
            job = self.jobs.get(lease.job_id)
            if job is None or not job.holds(lease):
                beat.lost.add(lease.job_id)
                continue
            job.lease_expires_at = self.now + ttl
            if job.control is not None:
                beat.control[job.id] = job.control
        return beat

    # -- writes ------------------------------------------------------------------------------

    def commit(self, lease: Lease, commit: Commit) -> Refusal:
        """A fenced write: the lease first, then the head, then the rows it changes."""
        job = self.jobs.get(lease.job_id)
        if job is None or not job.holds(lease):
            return LeaseLost
        if commit.head is not None and commit.head.count != len(job.journal):
            return Conflict
        refusal = self._refusal(job, commit)
        if refusal is None:
            self._write(job, commit)
        return refusal

    def apply(self, job_id: str, commit: Commit, guard: Guard) -> Refusal:
        """A control-plane write: guarded by status, it fences out any lease holder."""
        job = self.jobs.get(job_id)
        if job is None:
            return JobNotFound
        if job.status not in guard.statuses:
            return Conflict
        if guard.park_reasons is not None and job.park_reason not in guard.park_reasons:
            return Conflict
        refusal = self._refusal(job, commit)
        if refusal is None:
            job.lease_epoch, job.lease_owner = job.lease_epoch + 1, None
            self._write(job, commit)
        return refusal

    def _refusal(self, job: MJob, commit: Commit) -> Refusal:
        """Conflict when a ledger row or a signal is not in the state the commit expects.

        Two writes of one ledger row, or two receipts of one signal, in one commit are refused
        too: a commit is one transaction, and the second would contradict the first.
        """
        positions = [w.position for w in commit.effects]
        seqs = [seq for seq, _ in commit.consume]
        if len(set(positions)) < len(positions) or len(set(seqs)) < len(seqs):
            return Conflict
        for write in commit.effects:
            current = self.effects.get((job.id, write.position))
            if write.expect is None and current is not None:
                return Conflict
            if write.expect is not None and (current is None or current.state != write.expect):
                return Conflict
        pending = {s.seq for s in self.signals[job.id] if s.consumed_position is None}
        if not set(seqs) <= pending:
            return Conflict
        return None

    def _write(self, job: MJob, commit: Commit) -> None:
        for write in commit.effects:
            self._write_effect(job.id, write)
        for seq, position in commit.consume:
            self._signal(job.id, seq).consumed_position = position
        if commit.status is not None:
            self._set_status(job, commit.status)
        for other, wake_on in commit.wake:
            self._wake(other, wake_on)
        job.journal.extend(draft.type for draft in commit.events)
        if commit.status is not None and commit.status.status is JobStatus.PARKED:
            self._no_sleeping_on_what_is_there(job)

    def _write_effect(self, job_id: str, write: EffectWrite) -> None:
        current = self.effects.get((job_id, write.position))
        if current is None:
            self.effects[(job_id, write.position)] = MEffect(
                write.tool,
                write.effect.value,
                write.args_hash,
                write.idempotency_key,
                write.state,
                write.result,
                dict(write.error) if write.error is not None else None,
                write.attempt,
            )
            return
        current.state, current.result, current.attempt = write.state, write.result, write.attempt
        current.error = dict(write.error) if write.error is not None else None

    def _set_status(self, job: MJob, write: StatusWrite) -> None:
        job.status, job.park_reason = write.status, write.park_reason
        job.result, job.error = write.result, dict(write.error) if write.error else None
        job.run_at = write.run_at if write.run_at is not None else self.now
        job.wake_on, job.wake_at = write.wake_on, write.wake_at
        if write.status.terminal:
            job.control = None
        if write.status is not JobStatus.RUNNING:
            job.lease_owner, job.lease_expires_at = None, None

    def _wake(self, job_id: str, wake_on: str) -> None:
        """Unpark a job waiting for ``wake_on`` (its park reason stays, as a record)."""
        job = self.jobs.get(job_id)
        if job is not None and job.status is JobStatus.PARKED and job.wake_on == wake_on:
            self._unpark(job)

    def _unpark(self, job: MJob) -> None:
        job.status, job.run_at, job.wake_on, job.wake_at = JobStatus.PENDING, self.now, None, None

    def _no_sleeping_on_what_is_there(self, job: MJob) -> None:
        if job.wake_on is not None and self.waits_on_what_is_there(job):
            self._wake(job.id, job.wake_on)
        if job.status is JobStatus.PARKED and job.control is Control.CANCEL:
            self._unpark(job)

    def waits_on_what_is_there(self, job: MJob) -> bool:
        """Whether the signal or the child that ``job`` waits for is already there."""
        kind, _, name = (job.wake_on or "").partition(":")
        if kind == "signal":
            return any(s.name == name and s.consumed_position is None for s in self.signals[job.id])
        other = self.jobs.get(name)
        return kind == "job" and other is not None and other.status.terminal

    # -- signals -----------------------------------------------------------------------------

    def send_signal(
        self, job_id: str, name: str, payload: Any, signal_id: str
    ) -> tuple[Refusal, MSignal | None, bool]:
        """Deduplicated by signal id (even once the job ended); refused by an ended job."""
        job = self.jobs.get(job_id)
        if job is None:
            return JobNotFound, None, False
        for signal in self.signals[job_id]:
            if signal.signal_id == signal_id:
                return None, signal, False
        if job.status.terminal:
            return Conflict, None, False
        seq = 1 + max((s.seq for s in self.signals[job_id]), default=0)
        signal = MSignal(seq, name, signal_id, payload)
        self.signals[job_id].append(signal)
        self._wake(job_id, signal_wake(name))
        return None, signal, True

    def _signal(self, job_id: str, seq: int) -> MSignal:
        return next(s for s in self.signals[job_id] if s.seq == seq)

    def pending_signals(self, job_id: str) -> list[MSignal]:
        return [s for s in self.signals[job_id] if s.consumed_position is None]

    # -- control -----------------------------------------------------------------------------

    def control(self, job_id: str, action: Control) -> Refusal:
        """An operator's request: applied at once to a job no worker holds, else flagged."""
        job = self.jobs.get(job_id)
        if job is None:
            return JobNotFound
        if job.status.terminal:
            return Conflict
        handlers = {Control.CANCEL: self._cancel, Control.PAUSE: self._pause}
        return handlers.get(action, self._resume)(job)

    def _cancel(self, job: MJob) -> Refusal:
        if job.status is JobStatus.PENDING and job.attempts == 0:
            self._set_status(job, StatusWrite(JobStatus.CANCELLED))
            job.error = NOT_NONE
            job.journal.append(EventType.JOB_CANCELLED)
            self._wake(job.parent_id or "", job_wake(job.id))
        elif job.status is JobStatus.RUNNING:
            job.control = Control.CANCEL
        else:
            self._set_status(job, StatusWrite(JobStatus.PENDING))
            job.control = Control.CANCEL
            job.journal.append(EventType.CONTROL)
        for child in self.children(job.id):
            if not child.status.terminal:
                self._cancel(child)
        return None

    def _pause(self, job: MJob) -> Refusal:
        if job.control is Control.CANCEL:
            # A cancel is the stronger request: a pause must not take its place (the stores
            # let it, and lost the cancel, until the machine found it).
            return Conflict
        if job.status is JobStatus.PENDING:
            self._set_status(job, StatusWrite(JobStatus.PARKED, park_reason=ParkReason.PAUSED))
            job.control = None
            job.journal.append(EventType.JOB_PARKED)
            return None
        job.control = Control.PAUSE
        if job.status is not JobStatus.RUNNING:
            job.journal.append(EventType.CONTROL)
        return None

    def _resume(self, job: MJob) -> Refusal:
        if job.status is JobStatus.PARKED and job.park_reason is ParkReason.PAUSED:
            self._set_status(job, StatusWrite(JobStatus.PENDING))
            job.control = None
            job.journal.append(EventType.JOB_RESUMED)
            return None
        if job.control is not Control.PAUSE:
            return Conflict
        job.control = None
        if job.status is not JobStatus.RUNNING:
            job.journal.append(EventType.CONTROL)
        return None


def _ties(jobs: Iterable[MJob], key: Any) -> set[str]:
    ranked = list(jobs)
    best = min(key(j) for j in ranked)
    return {j.id for j in ranked if key(j) == best}
