"""Operator resolution of an in-doubt effect: it happened (with a result), did not, or failed.

An ``at_most_once`` effect whose outcome was never recorded is never re-run on a guess; a
person (or a tool's ``reconcile``) says what happened. This is the operator's path, beside the
:class:`~aetheris.App` facade: a control-plane write (:meth:`Store.apply`) that fences out any
worker, records who resolved it and why, and resumes a job parked on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aetheris.errors import ConfigurationError, Conflict, JobNotFound
from aetheris.journal import EventDraft, EventType, OpRecord, to_jsonable
from aetheris.store.port import (
    Commit,
    Effect,
    EffectState,
    EffectWrite,
    Guard,
    Job,
    JobStatus,
    ParkReason,
    StatusWrite,
    Store,
)


@dataclass(frozen=True, slots=True)
class Resolution:
    """An operator's answer for an in-doubt effect: exactly one of the three."""

    committed: bool = False
    result: Any = None
    not_executed: bool = False
    fail: bool = False
    reason: str | None = None
    by: str | None = None

    def __post_init__(self) -> None:
        if sum((self.committed, self.not_executed, self.fail)) != 1:
            raise ConfigurationError("resolve with exactly one of committed, not_executed, fail")

    @property
    def label(self) -> str:
        if self.committed:
            return "committed"
        return "not_executed" if self.not_executed else "failed"


async def resolve_effect(
    store: Store, job_id: str, position: int, resolution: Resolution, now: float
) -> Job:
    """Apply an operator's resolution of an in-doubt effect.

    A job parked on it becomes pending and resumes. A job that has ended (cancelled or failed
    while the effect was in doubt) keeps its status: the ledger records what really happened.
    """
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    row = await _in_doubt(store, job_id, position)
    intents = [
        e
        for e in await store.events(job_id)
        if e.type is EventType.INTENT and e.position == position
    ]
    recorded = intents[-1].data if intents else {}
    by = resolution.by or "operator"
    events = _resolution_events(job, row, recorded, resolution, by, now)
    state, result, error = _resolved_state(resolution)
    write = EffectWrite(
        position,
        row.tool,
        row.effect,
        row.args_hash,
        row.idempotency_key,
        state,
        result=result,
        error=error,
        attempt=row.attempt,
        expect=EffectState.IN_DOUBT,
    )
    if job.status.terminal:
        guard = Guard(frozenset({job.status}))
        return await store.apply(job_id, Commit(events, [write]), guard)
    guard = Guard(frozenset({JobStatus.PARKED}), frozenset({ParkReason.EFFECT_IN_DOUBT}))
    return await store.apply(
        job_id,
        Commit(
            [*events, EventDraft(EventType.JOB_RESUMED, {"by": by})],
            [write],
            StatusWrite(JobStatus.PENDING),
        ),
        guard,
    )


async def _in_doubt(store: Store, job_id: str, position: int) -> Effect:
    rows = await store.effects(job_id=job_id)
    row = next((r for r in rows if r.position == position), None)
    if row is None:
        raise ConfigurationError(f"job {job_id} has no effect at position {position}")
    if row.state is not EffectState.IN_DOUBT:
        raise Conflict(
            f"effect at position {position} of job {job_id} is {row.state}, not in doubt: "
            "there is nothing to resolve"
        )
    return row


def _resolution_events(
    job: Job,
    row: Effect,
    recorded: Mapping[str, Any],
    resolution: Resolution,
    by: str,
    now: float,
) -> list[EventDraft]:
    """Who resolved the effect, how and why; for a job that goes on, the outcome it finds."""
    base: dict[str, Any] = {
        "name": row.tool,
        "by": by,
        "reason": resolution.reason,
        "idempotency_key": row.idempotency_key,
        "resolution": resolution.label,
    }
    # What the operator says happened is in the journal, as the ledger row will hold it.
    _, result, error = _resolved_state(resolution)
    if resolution.committed:
        base["result"] = result
    if resolution.fail:
        base["error"] = error
    events = [EventDraft(EventType.EFFECT_RESOLVED, base, row.position)]
    if resolution.not_executed or job.status.terminal:
        return events
    # The resumed run finds this outcome at the position, as if the tool had returned it.
    op = OpRecord(
        kind=recorded.get("kind", "tool"),
        name=row.tool,
        ordinal=recorded.get("ordinal", 1),
        args_hash=row.args_hash,
        effect=row.effect.value,
        outcome="side_effect_committed" if resolution.committed else "permanent_failure",
        result=result,
        error=error,
        attempts=row.attempt,
        started_at=now,
        duration_ms=0.0,
        idempotency_key=row.idempotency_key,
        extra={"resolved_by": by},
    )
    return [*events, op.draft(row.position)]


def _resolved_state(resolution: Resolution) -> tuple[EffectState, Any, dict[str, Any] | None]:
    if resolution.not_executed:
        return EffectState.NOT_EXECUTED, None, None
    if resolution.committed:
        return EffectState.COMMITTED, to_jsonable(resolution.result), None
    message = resolution.reason or "an operator resolved the in-doubt effect as failed"
    return EffectState.FAILED, None, {"type": "ResolvedAsFailed", "message": message}
