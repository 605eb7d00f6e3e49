"""Logic every store implementation shares, so the implementations differ only in persistence."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.anchor import SigningKey
from aetheris.errors import Conflict, IdempotencyConflict, LeaseLost, StoreError
from aetheris.journal import Event, EventDraft, EventType, decode, seal, to_jsonable
from aetheris.store.port import (
    Budget,
    Claim,
    ClaimFilter,
    Commit,
    Control,
    EffectState,
    EffectWrite,
    ForkedJob,
    Guard,
    Job,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    StatusWrite,
    Summary,
    WorkerInfo,
)


def seal_all(
    job_id: str,
    first_seq: int,
    prev_hash: str,
    drafts: Sequence[EventDraft],
    now: float,
    signer: SigningKey | None = None,
) -> list[Event]:
    """Seal drafts into a contiguous run of chained events starting at ``first_seq``; with a
    ``signer``, the last one carries the anchor of the job's new head (one signature a write:
    its hash chains the others)."""
    sealed: list[Event] = []
    for offset, draft in enumerate(drafts):
        event = seal(job_id, first_seq + offset, prev_hash, draft, now)
        sealed.append(event)
        prev_hash = event.hash
    if signer is not None and sealed:
        last = sealed[-1]
        sealed[-1] = dataclasses.replace(last, anchor=signer.anchor(job_id, last.seq, last.hash))
    return sealed


def with_created_budget(claim: Claim, body: bytes | None) -> Claim:
    """``claim`` with the budget its job was created with, from the stored bytes of its
    ``job_created`` event (``None``: not read)."""
    if body is None:
        return claim
    try:
        budget = Budget.of(decode(body)["data"].get("budget"))
    except (ValueError, TypeError, KeyError):  # the run reads it and fails as it always did
        return claim
    return dataclasses.replace(claim, budget_read=True, budget=budget)


def created_draft(new: NewJob) -> EventDraft:
    """The first event of a job: what it was created as. ``tenant`` (and ``parent_id`` and
    ``deadline`` when set) are there so that a verifier can hold the job's row to them."""
    return EventDraft(
        EventType.JOB_CREATED,
        {
            "agent": new.agent,
            "input": to_jsonable(new.input),
            "idempotency_key": new.idempotency_key,
            "queue": new.queue,
            "priority": new.priority,
            "tenant": new.tenant,
            **({"budget": new.budget.to_data()} if new.budget is not None else {}),
            **({"parent_id": new.parent_id} if new.parent_id is not None else {}),
            **({"deadline": new.deadline} if new.deadline is not None else {}),
            **({"forked_from": dict(new.forked_from)} if isinstance(new, ForkedJob) else {}),
        },
    )


def claimed_draft(
    owner: str, epoch: int, attempt: int, recovered_from: str | None, code: str | None = None
) -> EventDraft:
    """The ``job_claimed`` event: who runs the job now, and (``code``) which agent version."""
    data: dict[str, Any] = {
        "owner": owner,
        "epoch": epoch,
        "attempt": attempt,
        "recovered_from": recovered_from,
    }
    if code is not None:
        data["code"] = code
    return EventDraft(EventType.JOB_CLAIMED, data)


def claim_versions(where: ClaimFilter) -> str | None:
    """The versions a claim must match, as JSON for the SQL stores (``None``: any)."""
    return json.dumps(dict(where.versions), sort_keys=True) if where.matching_only else None


def claimable_version(job: Job, where: ClaimFilter) -> bool:
    """Whether ``where`` may take ``job`` as far as code versions go (the memory store's
    form of the SQL stores' filter)."""
    if not where.matching_only or job.code_version is None:
        return True
    return where.versions.get(job.agent) == job.code_version


def worker_info(
    owner: str, agents: Sequence[str], queues: Sequence[str] | None, now: float
) -> WorkerInfo:
    """The row a worker registers: what it serves, and the calling process's host and pid."""
    served = None if queues is None else tuple(queues)
    return WorkerInfo(
        owner, tuple(agents), served, socket.gethostname(), os.getpid(), now, now, True
    )


def check_guard(job: Job, guard: Guard) -> None:
    """Raise :class:`Conflict` unless ``job`` satisfies a control-plane write's precondition."""
    if job.status not in guard.statuses:
        wanted = ", ".join(sorted(guard.statuses))
        raise Conflict(f"job {job.id} is {job.status}, expected one of: {wanted}")
    if guard.park_reasons is not None and job.park_reason not in guard.park_reasons:
        wanted = ", ".join(sorted(guard.park_reasons))
        raise Conflict(f"job {job.id} is parked for {job.park_reason}, expected: {wanted}")


def check_commit(job_id: str, commit: Commit) -> None:
    """Refuse a commit that names one ledger row, or one signal, twice: one transaction writes
    each at most once (stores would otherwise each keep a different one of the two). A fork it
    creates is checked too, before anything is written."""
    for new in commit.create:
        if isinstance(new, ForkedJob):
            check_commit(new.id, new.journal)
    if len(commit.effects) < 2 and len(commit.consume) < 2:
        return  # the usual commit: nothing can be named twice
    positions = [write.position for write in commit.effects]
    if len(set(positions)) != len(positions):
        twice = sorted({p for p in positions if positions.count(p) > 1})
        raise Conflict(f"a commit to job {job_id} writes the ledger row at {twice} twice")
    seqs = [seq for seq, _ in commit.consume]
    if len(set(seqs)) != len(seqs):
        raise Conflict(f"a commit to job {job_id} receives one signal twice")


def same_request(job: Job, new: NewJob) -> bool:
    """Whether an idempotent re-submission asks for the same thing as the job it found."""
    return job.agent == new.agent and job.input == to_jsonable(new.input)


def existing_job(new: NewJob, found: Job | None) -> Job:
    """What a create that found its id or key taken returns: the job with that key when it asks
    for the same thing; otherwise an error naming the clash."""
    if found is None:
        raise Conflict(f"job id {new.id!r} already exists")
    if not same_request(found, new):
        raise IdempotencyConflict(
            f"idempotency key {new.idempotency_key!r} belongs to job {found.id} "
            "with a different agent or input"
        )
    return found


def op_name(drafts: Sequence[EventDraft]) -> str | None:
    """The operation a write is about (for crash points that name one)."""
    for draft in drafts:
        name = draft.data.get("name")
        if isinstance(name, str):
            return name
    return None


def refusal(
    lease: Lease, commit: Commit, job: Job | None, effects: Mapping[int, str]
) -> BaseException:
    """Why a fenced commit wrote nothing, from the job and its ledger states read after it."""
    if job is None or job.lease_epoch != lease.epoch or job.status is not JobStatus.RUNNING:
        return LeaseLost(lease.job_id, lease.epoch)
    if commit.head is not None and job.event_count != commit.head.count:
        return Conflict(head_moved(job.id, commit.head.count, job.event_count))
    for write in commit.effects:
        state = effects.get(write.position)
        if write.expect is None and state is not None:
            return Conflict(effect_exists(job.id, write.position))
        if write.expect is not None and state != write.expect:
            return Conflict(effect_not_expected(job.id, write, state))
    return StoreError(f"commit to job {job.id} was refused for no reason found")


# -- messages: one wording for every store ------------------------------------------------


def head_moved(job_id: str, expected: int, found: int) -> str:
    return f"journal of job {job_id} has {found} events, the writer expected {expected}"


def effect_exists(job_id: str, position: int) -> str:
    return f"effect at position {position} of job {job_id} already exists"


def effect_not_expected(job_id: str, write: EffectWrite, found: str | None) -> str:
    return (
        f"effect at position {write.position} of job {job_id} is "
        f"{found or 'missing'}, expected {write.expect}"
    )


def signal_taken(job_id: str, seq: int) -> str:
    return f"signal {seq} of job {job_id} was already received"


def key_taken(job_id: str, name: str, key: str, holder: str | None) -> str:
    return (
        f"job {job_id} cannot take key {key!r} of signal {name!r}: job {holder} holds it "
        "until it ends"
    )


@dataclass(frozen=True, slots=True)
class ControlPlan:
    """What a control action does to a job that is not held by a worker, or to its flag."""

    control: Control | None
    status: StatusWrite | None = None
    event: EventDraft | None = None
    cascade: bool = False
    by: str | None = None  # who asked: kept with a flag, for the worker that honours it


def plan_control(job: Job, action: Control, by: str | None = None) -> ControlPlan:
    """Decide what ``action`` does to ``job`` (raises :class:`Conflict` when it cannot apply)."""
    return dataclasses.replace(_plan_control(job, action, by), by=by)


def _plan_control(job: Job, action: Control, by: str | None) -> ControlPlan:
    """What ``action`` does to ``job``.

    A running job is only flagged (its worker honours the flag at the next durable operation,
    and a heartbeat interrupts a tool in flight on cancel): nothing is appended to a journal
    that a lease holder is writing. A job no worker holds changes at once; the event that
    says so names ``by``, who asked (when known).
    """
    if job.status.terminal:
        raise Conflict(f"job {job.id} has already ended ({job.status})")
    running = job.status is JobStatus.RUNNING
    who = {} if by is None else {"by": by}
    requested = EventDraft(EventType.CONTROL, {"action": action.value, **who})
    if action is Control.CANCEL:
        if job.status is JobStatus.PENDING and job.attempts == 0:
            error = {"type": "Cancelled", "message": "cancelled before it started"}
            return ControlPlan(
                None,
                StatusWrite(JobStatus.CANCELLED, error=error),
                EventDraft(EventType.JOB_CANCELLED, {"error": error, "compensated": [], **who}),
                cascade=True,
            )
        if running:
            return ControlPlan(Control.CANCEL, cascade=True)
        return ControlPlan(Control.CANCEL, StatusWrite(JobStatus.PENDING), requested, True)
    if action is Control.PAUSE:
        if job.control is Control.CANCEL:
            # A cancel is the stronger request: a pause must not take its place.
            raise Conflict(f"job {job.id} is being cancelled; it cannot be paused")
        if job.status is JobStatus.PENDING:
            detail = {"message": "paused by an operator: `aetheris resume` to continue"}
            parked = StatusWrite(
                JobStatus.PARKED, park_reason=ParkReason.PAUSED, park_detail=detail
            )
            return ControlPlan(
                None,
                parked,
                EventDraft(EventType.JOB_PARKED, {"reason": "paused", "detail": detail, **who}),
            )
        return ControlPlan(Control.PAUSE, event=None if running else requested)
    if job.status is JobStatus.PARKED and job.park_reason is ParkReason.PAUSED:
        return ControlPlan(
            None, StatusWrite(JobStatus.PENDING), EventDraft(EventType.JOB_RESUMED, who)
        )
    if job.control is Control.PAUSE:
        return ControlPlan(None, event=None if running else requested)
    raise Conflict(f"job {job.id} is not paused (it is {job.status})")


def signal_refusal(job: Job) -> Conflict:
    return Conflict(f"job {job.id} has ended ({job.status}): it takes no more signals")


# Greater than any character a key holds: a prefix's keys lie in [prefix, prefix + _TOP).
_TOP = "\U0010ffff"


def key_range(prefix: str, below: str | None = None) -> tuple[str, str]:
    """The half-open range ``[low, high)`` of the keys that start with ``prefix`` (and are
    less than ``below``), in code point order."""
    high = prefix + _TOP
    if below is not None and below < high:
        high = below
    return prefix, high


def summarize(
    counts: Sequence[tuple[str, JobStatus, int]],
    oldest_pending_at: float | None,
    effects: Mapping[EffectState, int],
) -> Summary:
    """A :class:`Summary` from job counts by (tenant, status) and effect counts by state, as
    every store reads them: one grouped count each, totalled here."""
    jobs: dict[JobStatus, int] = {}
    by_tenant: dict[str, dict[JobStatus, int]] = {}
    for tenant, status, n in counts:
        if n:
            jobs[status] = jobs.get(status, 0) + n
            by_tenant.setdefault(tenant, {})[status] = n
    found = {state: n for state, n in effects.items() if n}
    return Summary(jobs, oldest_pending_at, found.get(EffectState.IN_DOUBT, 0), by_tenant, found)


class LocalRateLimits:
    """:meth:`~aetheris.store.port.Store.take_token` within one process (the memory and SQLite
    stores): a token bucket per name, with the reservation semantics of the PostgreSQL one."""

    _clock: Callable[[], float]

    async def take_token(self, name: str, rate: float, burst: float) -> float:
        state = self.__dict__.setdefault("_token_buckets", ({}, threading.Lock()))
        buckets: dict[str, tuple[float, float]] = state[0]
        with state[1]:
            now = self._clock()
            tokens, at = buckets.get(name, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - at) * rate) - 1
            buckets[name] = (tokens, max(now, at))
        return max(0.0, -tokens / rate)
