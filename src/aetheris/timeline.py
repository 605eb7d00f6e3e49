"""A job's timeline, computed from its journal alone: what ran when and for how long, and what
the job went through between (queued, running on a worker, parked, recovering from a dead one).

Two views of one list of events, both in seconds from the job's creation:

* **steps**, one per journal position: its kind and ``name#ordinal``, when it began (its first
  intent, the start of its wait, or the start of its last dispatch), when it ended (the end of
  that dispatch, or when the wait's answer was recorded), its outcome, tries and errors. A
  position with no outcome yet is open (``end`` ``None``): running, waiting or in doubt. A
  running job with no open position is in an operation not journaled until it returns (a
  step, a model call): a last step of kind ``next`` stands for it, from the last write on.
* **phases**, back to back from creation to the end: ``pending``, ``run`` (one claim: its
  fencing epoch), ``parked`` (with the reason), ``recovery`` (a worker's last write to the claim
  that took its job over: the lease running out).

Durations come from the journal as the CLI's trace shows them: ``duration_ms`` of a dispatch is
its ``busy`` time; the span from ``start`` to ``end`` adds what came before the last dispatch
(retries after a crash, the wait for a person). Nothing here reads a store or a clock: the
caller passes ``now``, so the web UI and the terminal draw the same timeline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aetheris.journal import Event, EventType

WAIT_KINDS = ("approval", "signal", "child", "sleep", "budget")
_ENDS = {
    EventType.JOB_SUCCEEDED: "succeeded",
    EventType.JOB_FAILED: "failed",
    EventType.JOB_COMPENSATED: "compensated",
    EventType.JOB_CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class Step:
    """One journal position. ``state``: ``done``, ``failed`` (its error is recorded),
    ``running`` (dispatched, no outcome yet), ``waiting``, ``in_doubt``, or ``interrupted``
    (the job ended first). ``attempts``: tries in its last dispatch; ``dispatches``: intents
    written (more than one after a crash); ``retries``: the errors of failed tries."""

    position: int
    seq: int
    kind: str
    name: str
    start: float
    end: float | None
    state: str
    outcome: str
    busy: float | None = None
    attempts: int = 1
    dispatches: int = 0
    retries: tuple[dict[str, Any], ...] = ()
    error: str | None = None
    effect: str | None = None
    model: str | None = None
    tokens: tuple[int, int] | None = None
    cost: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True, slots=True)
class Phase:
    """A stretch of the job's life: ``kind`` ``pending``, ``run``, ``parked`` or ``recovery``;
    ``label`` the epoch of a run or the reason of a park."""

    kind: str
    label: str
    start: float
    end: float | None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True, slots=True)
class Timeline:
    """Steps and phases of one job, in seconds from ``created_at`` (Unix seconds); ``end``: when
    it ended (``None``: not yet); ``now``: where open bars stop (the caller's present, or the
    end of an ended job); ``status``: how it ended, if it has."""

    created_at: float
    end: float | None
    now: float
    status: str | None
    steps: list[Step] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)


def timeline(events: Sequence[Event], *, now: float) -> Timeline:
    """The timeline of a job's journal (its events in order, from ``job_created``)."""
    if not events:
        return Timeline(now, None, 0.0, None)
    origin = events[0].at
    ends = [e for e in events if e.type in _ENDS]
    end = ends[-1].at - origin if ends else None
    status = _ENDS[ends[-1].type] if ends else None
    steps = _Steps(events, origin, end).all()
    phases = _phases(events, origin)
    if phases and phases[-1].kind == "run" and phases[-1].end is None:
        steps += _in_progress(steps, events[-1], origin)
    present = end if end is not None else max(0.0, now - origin)
    return Timeline(origin, end, present, status, steps, phases)


class _Steps:
    """Folds the events of each position into a :class:`Step`."""

    def __init__(self, events: Sequence[Event], origin: float, end: float | None) -> None:
        self.origin, self.end = origin, end
        self.by_position: dict[int, list[Event]] = defaultdict(list)
        for event in events:
            if event.position is not None:
                self.by_position[event.position].append(event)

    def all(self) -> list[Step]:
        names: dict[str, int] = defaultdict(int)
        steps = []
        for position in sorted(self.by_position):
            step = self.step(position, self.by_position[position], names)
            if step is not None:
                steps.append(step)
        return steps

    def step(self, position: int, events: list[Event], names: dict[str, int]) -> Step | None:
        found = {e.type: e for e in events}  # the last event of each type at this position
        firsts = [e for e in events if e.type in (EventType.INTENT, EventType.WAIT, EventType.OP)]
        if not firsts:
            return None
        op, head = found.get(EventType.OP), firsts[0]
        data = op.data if op is not None else head.data
        name = str(data.get("name", ""))
        names[name] += 1
        ordinal = data.get("ordinal") or names[name]
        starts = [head.at - self.origin]
        if op is not None and op.data.get("started_at") is not None:
            starts.append(float(op.data["started_at"]) - self.origin)
        start = max(0.0, min(starts))
        intents = sum(1 for e in events if e.type is EventType.INTENT)
        common: dict[str, Any] = {
            "position": position,
            "seq": (op or events[-1]).seq,
            "kind": str(data.get("kind", "")),
            "name": f"{name}#{ordinal}",
            "start": start,
            "dispatches": intents,
            "effect": data.get("effect"),
        }
        if op is None:
            return self.open_step(common, found)
        return Step(**common, **_settled(op.data, op.at - self.origin, start, self.origin))

    def open_step(self, common: dict[str, Any], found: dict[EventType, Event]) -> Step:
        doubt = found.get(EventType.EFFECT_IN_DOUBT)
        resolved = found.get(EventType.EFFECT_RESOLVED)
        if doubt is not None and (resolved is None or resolved.seq < doubt.seq):
            state = "in_doubt"
        elif EventType.WAIT in found and EventType.INTENT not in found:
            state = "waiting"
        else:
            state = "running"
        if self.end is not None:
            return Step(**common, end=self.end, state="interrupted", outcome=state)
        return Step(**common, end=None, state=state, outcome=state)


def _in_progress(steps: list[Step], last: Event, origin: float) -> list[Step]:
    """The operation a running job is in now, when none is open in the journal: a step or a
    model call is journaled only when it returns, so all that is known is that something
    runs at the next position since the last write."""
    if any(s.end is None for s in steps):
        return []
    position = max((s.position for s in steps), default=-1) + 1
    start = last.at - origin
    return [Step(position, last.seq, "next", "(not journaled yet)", start, None, "running", "")]


def _settled(d: dict[str, Any], recorded: float, start: float, origin: float) -> dict[str, Any]:
    """What an ``op`` event (recorded ``recorded`` seconds in) tells of its step."""
    busy = d["duration_ms"] / 1000 if d.get("duration_ms") is not None else None
    end = recorded  # a wait ends when its answer is recorded
    if d.get("started_at") is not None and busy is not None and d.get("kind") not in WAIT_KINDS:
        end = min(recorded, d["started_at"] - origin + busy)  # a dispatch ends when it returns
    error = d.get("error")
    usage = d.get("usage") if d.get("kind") == "llm" else None
    return {
        "end": max(start, end),  # clocks of worker and database may differ a little
        "state": "failed" if error else "done",
        "outcome": _outcome(d),
        "busy": busy,
        "attempts": int(d.get("attempts") or 1),
        "retries": tuple(d.get("retries") or ()),
        "error": f"{error.get('type')}: {error.get('message')}" if error else None,
        "model": d.get("model") if d.get("kind") == "llm" else None,
        "tokens": (
            (int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0)))
            if isinstance(usage, dict)
            else None
        ),
        "cost": d.get("cost") if d.get("kind") == "llm" else None,
    }


def _outcome(d: dict[str, Any]) -> str:
    """The word for how a step ended: the recorded outcome, or what a wait received."""
    error, kind, result = d.get("error"), d.get("kind"), d.get("result")
    if error:
        return str(error.get("type", "error"))
    if kind == "approval":
        return "approved" if isinstance(result, dict) and result.get("approved") else "rejected"
    if kind == "signal":
        return "received"
    if kind in ("sleep", "budget", "child"):
        return {"sleep": "done", "budget": "raised", "child": "succeeded"}[kind]
    if kind == "llm":
        return "answered"
    return str(d.get("outcome", ""))


def _phases(events: Sequence[Event], origin: float) -> list[Phase]:
    """The job's life, back to back: pending, runs, parks and recoveries, to its end."""
    phases: list[Phase] = []
    kind, label, since = "pending", "", 0.0
    last = 0.0  # when the job's latest event was written

    def close(at: float) -> None:
        phases.append(Phase(kind, label, since, max(since, at)))

    for event in events[1:]:
        at = event.at - origin
        if event.type is EventType.JOB_CLAIMED:
            if kind == "run":  # its worker died: nothing more from it after its last write
                close(last)
                kind, label, since = "recovery", "lease expired", last
            close(at)
            kind, label, since = "run", f"epoch {event.data.get('epoch')}", at
        elif event.type is EventType.JOB_PARKED:
            close(at)
            kind, label, since = "parked", str(event.data.get("reason", "")), at
        elif event.type in (EventType.JOB_RESUMED, EventType.JOB_RELEASED):
            close(at)
            kind, label, since = "pending", "", at
        elif event.type in _ENDS:
            close(at)
            return phases
        last = at
    phases.append(Phase(kind, label, since, None))
    return phases


def model_spend(events: Sequence[Event]) -> dict[str, Any]:
    """What a job's recorded model calls spent: calls, tokens in and out, and cost (``None``
    when a model's price is unknown)."""
    calls = tokens_in = tokens_out = 0
    cost: float | None = 0.0
    for event in events:
        d = event.data
        if event.type is not EventType.OP or d.get("kind") != "llm":
            continue
        usage = d.get("usage") or {}
        calls += 1
        tokens_in += int(usage.get("input_tokens", 0))
        tokens_out += int(usage.get("output_tokens", 0))
        if d.get("error") is None:
            cost = None if cost is None or d.get("cost") is None else cost + d["cost"]
    return {"calls": calls, "input_tokens": tokens_in, "output_tokens": tokens_out, "cost": cost}
