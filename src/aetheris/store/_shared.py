"""Logic every store implementation shares, so the implementations differ only in persistence."""

from __future__ import annotations

from collections.abc import Sequence

from aetheris.errors import Conflict
from aetheris.journal import Event, EventDraft, EventType, seal, to_jsonable
from aetheris.store.port import Guard, Job, NewJob


def seal_all(
    job_id: str, first_seq: int, prev_hash: str, drafts: Sequence[EventDraft], now: float
) -> list[Event]:
    """Seal drafts into a contiguous run of chained events starting at ``first_seq``."""
    sealed: list[Event] = []
    for offset, draft in enumerate(drafts):
        event = seal(job_id, first_seq + offset, prev_hash, draft, now)
        sealed.append(event)
        prev_hash = event.hash
    return sealed


def created_draft(new: NewJob) -> EventDraft:
    return EventDraft(
        EventType.JOB_CREATED,
        {
            "agent": new.agent,
            "input": to_jsonable(new.input),
            "idempotency_key": new.idempotency_key,
            "queue": new.queue,
            "priority": new.priority,
        },
    )


def claimed_draft(owner: str, epoch: int, attempt: int, recovered_from: str | None) -> EventDraft:
    return EventDraft(
        EventType.JOB_CLAIMED,
        {"owner": owner, "epoch": epoch, "attempt": attempt, "recovered_from": recovered_from},
    )


def check_guard(job: Job, guard: Guard) -> None:
    """Raise :class:`Conflict` unless ``job`` satisfies a control-plane write's precondition."""
    if job.status not in guard.statuses:
        wanted = ", ".join(sorted(guard.statuses))
        raise Conflict(f"job {job.id} is {job.status}, expected one of: {wanted}")
    if guard.park_reasons is not None and job.park_reason not in guard.park_reasons:
        wanted = ", ".join(sorted(guard.park_reasons))
        raise Conflict(f"job {job.id} is parked for {job.park_reason}, expected: {wanted}")


def same_request(job: Job, new: NewJob) -> bool:
    """Whether an idempotent re-submission asks for the same thing as the job it found."""
    return job.agent == new.agent and job.input == to_jsonable(new.input)


def head_moved(job_id: str, expected: int, found: int) -> str:
    return f"journal of job {job_id} has {found} events, the writer expected {expected}"
