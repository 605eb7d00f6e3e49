"""What a job's journal says its row and its ledger must hold (the last two checks of
:func:`aetheris.audit.audit`).

The journal is the source of truth, and the anchors prove it; the job row and the ledger are
what people are shown and what the runtime acts on. Each rule below restates how the runtime
writes both in one transaction (the runner's end and park, the ledger's intent and outcome,
an operator's resolution, a compensation), so that any row edited afterwards stands out.
Values are compared as canonical JSON, so a PostgreSQL ``jsonb`` column that reorders keys
is not a difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from aetheris.journal import Event, EventType, canonical
from aetheris.models import Effect, Job, JobStatus

ENDS = {
    EventType.JOB_SUCCEEDED: JobStatus.SUCCEEDED,
    EventType.JOB_FAILED: JobStatus.FAILED,
    EventType.JOB_COMPENSATED: JobStatus.COMPENSATED,
    EventType.JOB_CANCELLED: JobStatus.CANCELLED,
}
_RUNS = frozenset({EventType.JOB_CLAIMED, EventType.JOB_RESUMED, EventType.JOB_RELEASED})
# What may follow a job's end: an operator settling an effect left in doubt, and the note that
# a fork was made of it. Any other event there would mean a write to a job that had ended.
AFTER_END = frozenset({EventType.EFFECT_RESOLVED, EventType.JOB_FORKED})
_UNKNOWN: Any = object()  # a value the journal does not record (older journals): not compared


def same(a: Any, b: Any) -> bool:
    """Equal as canonical JSON."""
    return canonical(a) == canonical(b)


def check_job(job: Job, events: Sequence[Event]) -> tuple[int, str] | None:
    """The first fact of the job's row that its journal contradicts: (seq, problem)."""
    if not events or events[0].type is not EventType.JOB_CREATED:
        return 0, "the journal does not begin with the job's creation"
    created = _check_created(job, events[0])
    if created is not None:
        return 0, created
    end = next((e for e in events if e.type in ENDS), None)
    if end is not None:
        return _check_end(job, events, end)
    last = len(events) - 1
    if job.status.terminal:
        return last, f"the job is {job.status}, but its journal records no end"
    for name in ("result", "error"):
        if getattr(job, name) is not None:
            return (
                last,
                f"the job shows a {name} that its journal does not record",
            )
    if job.status is JobStatus.PARKED:
        return _check_parked(job, events)
    return None


def _check_created(job: Job, created: Event) -> str | None:
    data = created.data
    names = ["agent", "input", "idempotency_key", "queue", "priority"]
    if "tenant" in data:  # recorded since anchors exist; older journals do not say
        names += ["tenant", "parent_id", "deadline"]
    for name in names:
        if not same(getattr(job, name), data.get(name)):
            return f"the job's {name} is not what its journal recorded when it was created"
    return None


def _check_end(job: Job, events: Sequence[Event], end: Event) -> tuple[int, str] | None:
    status = ENDS[end.type]
    if job.status is not status:
        return end.seq, f"the job's status is {job.status}; its journal ended it {status}"
    for name in ("result", "error"):
        if not same(getattr(job, name), end.data.get(name)):
            return end.seq, f"the job's {name} is not the one its journal recorded at its end"
    for later in events[end.seq + 1 :]:
        if later.type not in AFTER_END:
            return later.seq, f"a {later.type} event follows the job's end"
    return None


def _check_parked(job: Job, events: Sequence[Event]) -> tuple[int, str] | None:
    parked: Event | None = None
    for event in events:
        if event.type is EventType.JOB_PARKED:
            parked = event
        elif event.type in _RUNS:
            parked = None
    last = len(events) - 1
    if parked is None:
        return last, "the job is shown parked, but its journal does not park it"
    reason = parked.data.get("reason")
    if job.park_reason is None or job.park_reason.value != reason:
        return (
            parked.seq,
            f"the job is shown parked for {job.park_reason}; its journal says {reason}",
        )
    if not same(job.park_detail, parked.data.get("detail")):
        return parked.seq, "what the job is shown parked on is not what its journal recorded"
    return None


# -- the ledger ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expected:
    """A ledger row as the journal makes it, and the seq of the last event that did."""

    tool: str
    effect: str
    args_hash: str
    idempotency_key: str
    state: str
    attempt: int
    result: Any
    error: Any
    seq: int
    states: frozenset[str] = frozenset()  # other states the same events allow


def expected_ledger(events: Sequence[Event]) -> dict[int, Expected]:
    """The ledger rows the journal's intent, outcome and resolution events make."""
    rows: dict[int, Expected] = {}
    for event in events:
        position, data = event.position, event.data
        if position is None:
            continue
        if event.type is EventType.INTENT:
            rows[position] = Expected(
                data["name"], data["effect"], data["args_hash"], data["idempotency_key"],
                "intent", data.get("attempt", 1), None, None, event.seq,
            )  # fmt: skip
            continue
        row = rows.get(position)
        if event.type is EventType.OP:
            _compensation(rows, event)
        if row is None:
            continue
        if event.type is EventType.OP:
            rows[position] = _outcome(row, event)
        elif event.type is EventType.EFFECT_IN_DOUBT:
            rows[position] = replace(row, state="in_doubt", seq=event.seq, states=frozenset())
        elif event.type is EventType.EFFECT_RESOLVED:
            rows[position] = _resolved(row, event)
    return rows


def _outcome(row: Expected, event: Event) -> Expected:
    error = event.data.get("error")
    if error is None:
        return replace(
            row, state="committed", result=event.data.get("result"), error=None,
            seq=event.seq, states=frozenset(),
        )  # fmt: skip
    # A tool that ran but whose result could not be recorded is committed, with the error.
    return replace(
        row, state="failed", result=None, error=error, seq=event.seq,
        states=frozenset({"committed"}),
    )  # fmt: skip


def _compensation(rows: dict[int, Expected], event: Event) -> None:
    """A compensation that succeeded marks the row it undid ``compensated``."""
    undone = event.data.get("compensates")
    if event.data.get("outcome") != "compensated" or not isinstance(undone, int):
        return
    row = rows.get(undone)
    if row is not None:
        rows[undone] = replace(
            row, state="compensated", attempt=1, error=None, seq=event.seq, states=frozenset()
        )


def _resolved(row: Expected, event: Event) -> Expected:
    data = event.data
    resolution, seq = data.get("resolution"), event.seq
    if resolution == "not_executed" and data.get("by") == "reconcile":
        # reconcile said it did not happen: the next attempt's intent, at once
        return replace(row, state="intent", attempt=row.attempt + 1, seq=seq, states=frozenset())
    if resolution == "not_executed":
        return replace(row, state="not_executed", result=None, error=None, seq=seq)
    if resolution == "committed":
        result = data.get("result", _UNKNOWN)
        return replace(row, state="committed", result=result, error=None, seq=seq)
    error = data.get("error", _UNKNOWN)
    return replace(row, state="failed", result=None, error=error, seq=seq, states=frozenset())


def check_ledger(
    events: Sequence[Event], effects: Sequence[Effect]
) -> tuple[int, int | None, str] | None:
    """The first ledger position (its last event's seq, and the problem) where the ledger is
    not what the journal makes it."""
    expected = expected_ledger(events)
    actual = {e.position: e for e in effects}
    for position in sorted({*expected, *actual}):
        want, got = expected.get(position), actual.get(position)
        if want is None:
            return (
                position,
                None,
                f"the ledger has a row at position {position} that no intent in the journal made",
            )
        if got is None:
            return (
                position,
                want.seq,
                f"the journal records an effect at position {position}; the ledger has no row",
            )
        problem = _row_problem(want, got)
        if problem is not None:
            return position, want.seq, f"the ledger row at position {position}: {problem}"
    return None


def _row_problem(want: Expected, got: Effect) -> str | None:
    fields: Mapping[str, tuple[Any, Any]] = {
        "tool": (want.tool, got.tool),
        "effect class": (want.effect, got.effect.value),
        "arguments' hash": (want.args_hash, got.args_hash),
        "idempotency key": (want.idempotency_key, got.idempotency_key),
        "attempt": (want.attempt, got.attempt),
    }
    for name, (a, b) in fields.items():
        if a != b:
            return f"its {name} is {b!r}, the journal says {a!r}"
    state = got.state.value
    if state != want.state and state not in want.states:
        return f"it is {state}, the journal makes it {want.state}"
    if want.result is not _UNKNOWN and not same(want.result, got.result):
        return "its result is not the one the journal recorded"
    if want.error is not _UNKNOWN and not same(want.error, got.error):
        return "its error is not the one the journal recorded"
    return None


__all__ = ["AFTER_END", "ENDS", "Expected", "check_job", "check_ledger", "expected_ledger", "same"]
