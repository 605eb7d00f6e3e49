"""Fork a job: a new job of the same agent and input whose journal starts as the origin's did.

``fork(origin, at=N)`` copies the origin's first ``N`` journal entries, positions ``0`` to
``N - 1``: the ``op`` record of each (its result or error, exactly as recorded), a ``wait``
that began and has no result yet, the ledger rows of tool calls and the blobs of model calls.
Lifecycle events (claims, parks, releases, the end) are not copied: they are the origin's
history, not the fork's. With ``output``, entry ``N`` is copied too, with its result replaced
by ``output``; the record keeps the original (``edited: {"original": ..., "original_hash":
...}``). The fork then starts like any job: its first run is served those entries from its
journal (no tool dispatched, no model called again) and goes live after them, so ``N`` is
"how much of the origin to keep", and ``--output`` asks "what if entry N had answered this?".

Effects: ledger rows of copied tool calls are inherited as ``committed`` (or ``failed``) with
the origin's idempotency keys: they happened in the origin, and the fork never dispatches them
again. An effect with no recorded outcome (in doubt, or in flight) cannot be copied: the fork
would dispatch it again under a key of its own. Forking past one is refused; resolve it first
(``aetheris effects resolve``) or fork before it.

The link is in both journals: the fork's ``job_created`` names ``forked_from: {job, at}``,
and the origin gets a ``job_forked`` event naming the fork, in the same transaction (a
control-plane write, :meth:`~aetheris.store.port.Store.apply`). A running origin is refused:
that write fences out the lease holder, and a running journal may still change under the copy
(pause the job first, or fork it when it parks or ends). The guard is the origin's status as it
was read, so an origin that moved meanwhile is refused rather than forked from a stale view.
Not copied: the origin's deadline (it may have passed), its parent and idempotency key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.errors import Conflict, InvalidInput, JobNotFound
from aetheris.journal import (
    Event,
    EventDraft,
    EventType,
    OpRecord,
    canonical,
    sha256_hex,
    to_jsonable,
)
from aetheris.models import Budget
from aetheris.store.port import (
    Commit,
    Effect,
    EffectClass,
    EffectState,
    EffectWrite,
    ForkedJob,
    Guard,
    Job,
    JobStatus,
    Store,
)

UNSET: Any = object()  # ``output`` not given: entry ``at`` is not copied


@dataclass(frozen=True, slots=True)
class ForkPlan:
    """What a fork's journal holds: events by position, ledger rows, and the edited entry."""

    drafts: list[EventDraft]
    effects: list[EffectWrite]
    edited: int | None


async def fork_job(
    store: Store,
    origin_id: str,
    at: int,
    new_id: str,
    *,
    output: Any = UNSET,
    by: str | None = None,
) -> Job:
    """Create the fork ``new_id`` of ``origin_id`` at ``at`` (see the module's docstring)."""
    origin = await store.get_job(origin_id)
    if origin is None:
        raise JobNotFound(origin_id)
    if origin.status is JobStatus.RUNNING:
        raise Conflict(
            f"job {origin_id} is running: fork it when it parks or ends (or pause it first)"
        )
    if await store.get_job(new_id) is not None:
        raise Conflict(f"job id {new_id!r} already exists")
    events = await store.events(origin_id)
    plan = plan_fork(origin_id, events, await store.effects(job_id=origin_id), at, output)
    link: dict[str, Any] = {"job": origin_id, "at": at}
    if plan.edited is not None:
        link["edited"] = plan.edited
    created = events[0].data if events else {}
    blobs = await store.blobs(origin_id)  # model calls' messages and responses, by hash
    fork = ForkedJob(
        id=new_id,
        agent=origin.agent,
        input=origin.input,
        queue=origin.queue,
        priority=origin.priority,
        budget=Budget.of(created.get("budget")),
        tenant=origin.tenant,
        forked_from=link,
        journal=Commit(plan.drafts, plan.effects, blobs=list(blobs.items())),
    )
    note = {"fork": new_id, "at": at, "edited": plan.edited, "by": by}
    commit = Commit([EventDraft(EventType.JOB_FORKED, note)], create=[fork])
    await store.apply(origin_id, commit, Guard(frozenset({origin.status})))
    created_job = await store.get_job(new_id)
    assert created_job is not None
    return created_job


def plan_fork(
    origin_id: str, events: Sequence[Event], effects: Sequence[Effect], at: int, output: Any
) -> ForkPlan:
    """The fork's entries: positions ``< at``, and ``at`` edited when ``output`` is given."""
    ops: dict[int, Event] = {}
    waits: dict[int, Event] = {}  # no result yet: an effect's intent, else a wait
    for event in events:
        if event.position is None:
            continue
        if event.type is EventType.OP:
            ops[event.position] = event
        elif event.type is EventType.INTENT:
            waits[event.position] = event
        elif event.type is EventType.WAIT:
            waits.setdefault(event.position, event)
    positions = sorted(set(ops) | set(waits))
    end = positions[-1] + 1 if positions else 0
    _check_at(origin_id, at, end, output is not UNSET, ops)
    rows = {row.position: row for row in effects}
    drafts: list[EventDraft] = []
    writes: list[EffectWrite] = []
    for position in range(at):
        if position in ops:
            drafts.append(EventDraft(EventType.OP, ops[position].data, position))
            _inherit(rows.get(position), writes)
        elif position in waits:
            _check_wait(origin_id, waits[position], rows.get(position))
            drafts.append(EventDraft(EventType.WAIT, waits[position].data, position))
    if output is UNSET:
        return ForkPlan(drafts, writes, None)
    record = edit(OpRecord.from_data(ops[at].data), output)
    drafts.append(record.draft(at))
    _inherit(rows.get(at), writes, record)
    return ForkPlan(drafts, writes, at)


def _check_at(origin_id: str, at: int, end: int, editing: bool, ops: Mapping[int, Event]) -> None:
    if isinstance(at, bool) or not isinstance(at, int) or at < 0:
        raise InvalidInput(f"fork position must be a whole number >= 0, got {at!r}")
    if editing and at not in ops:
        held = f"positions 0..{end - 1}" if end else "no positions"
        raise InvalidInput(
            f"job {origin_id} has no recorded result at position {at} to replace "
            f"(its journal holds {held})"
        )
    if at > end:
        raise InvalidInput(
            f"fork position {at} is out of range: job {origin_id}'s journal holds "
            f"{end} entries (fork at 0..{end})"
        )


def _check_wait(origin_id: str, event: Event, row: Effect | None) -> None:
    """A position with no result: a wait is copied; an effect without outcome is refused."""
    if event.type is EventType.WAIT:
        return
    name, position = event.data.get("name"), event.position
    doubt = row is not None and row.effect is EffectClass.AT_MOST_ONCE
    how = "at_most_once, in doubt" if doubt else "in flight or in doubt"
    raise Conflict(
        f"job {origin_id}: effect {name!r} at position {position} has no recorded outcome "
        f"({how}); the fork would dispatch it again. Resolve it (aetheris effects resolve "
        f"{origin_id} {position}) or fork at {position} or earlier"
    )


def _inherit(row: Effect | None, writes: list[EffectWrite], edited: OpRecord | None = None) -> None:
    """The origin's ledger row at a copied position, as the fork's: it happened there."""
    if row is None:
        return
    failed = row.state is EffectState.FAILED and edited is None
    state = EffectState.FAILED if failed else EffectState.COMMITTED
    result = edited.result if edited is not None else row.result
    error = None if edited is not None else row.error
    writes.append(
        EffectWrite(
            row.position,
            row.tool,
            row.effect,
            row.args_hash,
            row.idempotency_key,
            state,
            result=result,
            error=error,
            attempt=row.attempt,
        )
    )


def edit(record: OpRecord, output: Any) -> OpRecord:
    """``record`` with its result replaced by ``output``; the original kept beside it."""
    value = to_jsonable(output)
    original: dict[str, Any] = (
        {"error": dict(record.error)} if record.error is not None else {"result": record.result}
    )
    note = {"original": original, "original_hash": sha256_hex(canonical(original))}
    outcome = "pure" if record.effect == EffectClass.PURE.value else "side_effect_committed"
    return OpRecord(
        kind=record.kind,
        name=record.name,
        ordinal=record.ordinal,
        args_hash=record.args_hash,
        effect=record.effect,
        outcome=outcome,
        result=value,
        attempts=record.attempts,
        started_at=record.started_at,
        duration_ms=record.duration_ms,
        idempotency_key=record.idempotency_key,
        retries=record.retries,
        extra={**record.extra, "edited": note},
    )
