"""The journal of a job as a table (``aetheris trace``), and what its model calls spent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from aetheris.cli.render import (
    Column,
    View,
    _clean,
    _cut,
    _one_line,
    _short,
    _when,
    error_summary,
    outcome_text,
    status_text,
)
from aetheris.journal import Event, EventType
from aetheris.store.port import Job
from aetheris.timeline import WAIT_KINDS, model_spend


@dataclass(frozen=True, slots=True)
class Row:
    """What the trace table shows of one event besides its seq, position and type."""

    kind: str = ""
    name: str = ""
    outcome: str = ""
    duration: str = ""
    detail: str = ""


class _Describer:
    """Describes the events of one journal (a wait's ordinal comes from the events before it)."""

    def __init__(self, events: Sequence[Event], *, wide: bool) -> None:
        self.wide = wide
        self.names: dict[int, str] = {}
        for event in events:
            if event.position is not None and event.type in (
                EventType.OP,
                EventType.INTENT,
                EventType.WAIT,
            ):
                self.names.setdefault(event.position, str(event.data.get("name", "")))

    def short(self, value: Any, limit: int) -> str:
        return _short(value, None if self.wide else limit)

    def cut(self, text: str, limit: int) -> str:
        return _cut(_one_line(text), None if self.wide else limit)

    def ordinal_name(self, d: dict[str, Any], position: int | None) -> str:
        name = str(d.get("name", ""))
        ordinal = d.get("ordinal")
        if ordinal is None and position is not None:
            # A wait's event names no ordinal: count the operations of that name before it.
            ordinal = 1 + sum(1 for p, n in self.names.items() if p < position and n == name)
        return f"{name}#{ordinal or 1}"

    def __call__(self, event: Event) -> Row:
        d = event.data
        kind = str(d.get("kind", ""))
        if event.type is EventType.OP and kind in WAIT_KINDS:
            return self.wait_op(d, event.position)
        if event.type is EventType.OP and kind == "llm":
            return self.llm(d, event.position)
        if event.type is EventType.OP:
            return self.op(d, event.position)
        if event.type is EventType.WAIT:
            return self.wait(d, event.position)
        if event.type is EventType.INTENT:
            again = f"attempt {d['attempt']}; " if d.get("attempt", 1) > 1 else ""
            name = self.ordinal_name(d, event.position)
            return Row(kind, name, "intent", detail=again + str(d.get("idempotency_key", "")))
        if event.type is EventType.JOB_CLAIMED:
            recovered = (
                f" (recovered from {d['recovered_from']})" if d.get("recovered_from") else ""
            )
            who = f"{d.get('owner')} epoch {d.get('epoch')}{recovered}"
            return Row(detail=who + _code(d))
        if event.type is EventType.EFFECT_IN_DOUBT:
            return Row(
                "tool", str(d.get("name", "")), "in_doubt", detail=str(d.get("idempotency_key"))
            )
        if event.type is EventType.EFFECT_RESOLVED:
            return Row(
                "tool",
                str(d.get("name", "")),
                str(d.get("resolution", "")),
                detail=f"by {d.get('by')}",
            )
        if event.type is EventType.JOB_PARKED:
            parked: dict[str, Any] = d.get("detail") or {}
            message = parked.get("message")
            if message is None and parked.get("until") is not None:
                message = f"until {_when(parked['until'])}"
            # The runtime's own message, with the command to run: in full, wrapped if need be.
            detail = _one_line(str(message)) if message else self.short(parked, 60)
            return Row(outcome=str(d.get("reason", "")), detail=detail)
        if event.type in (EventType.JOB_FAILED, EventType.JOB_COMPENSATED, EventType.JOB_CANCELLED):
            return Row(detail=error_summary(d.get("error"), None if self.wide else 80))
        if event.type is EventType.JOB_CREATED:
            return self.created(d)
        if event.type is EventType.JOB_FORKED:
            return Row(detail=f"forked to {_clean(str(d.get('fork')))} at {d.get('at')}")
        if event.type is EventType.JOB_SUCCEEDED:
            return Row(detail=self.short(d.get("result"), 48))
        return Row(detail=self.short(d, 60))

    def created(self, d: dict[str, Any]) -> Row:
        """The job's agent and input; a fork's, which job and position it was forked from."""
        origin = d.get("forked_from") or {}
        fork = f"forked from {_clean(str(origin['job']))} at {origin['at']}; " if origin else ""
        return Row(
            detail=f"{fork}agent {_clean(str(d.get('agent')))} "
            f"input {self.short(d.get('input'), 60)}"
        )

    def op(self, d: dict[str, Any], position: int | None) -> Row:
        kind = str(d.get("kind", ""))
        if kind == "patch":  # ctx.patched(): this run took the new branch
            return Row(kind, self.ordinal_name(d, position), "marker", detail="new branch")
        duration = f"{d['duration_ms']:.1f} ms" if "duration_ms" in d else ""
        result = d.get("result")
        if d.get("error"):
            detail = error_summary(d["error"], None if self.wide else 48)
        elif kind == "now" and isinstance(result, int | float):
            detail = _when(result)  # ctx.now() is journaled as seconds since the epoch
        elif kind in ("uuid", "random"):
            detail = _clean(str(result))
        else:
            detail = self.short(result, 48)
        if d.get("attempts", 1) > 1:
            detail = f"{d['attempts']} attempts; {detail}"
        if d.get("resolved_by"):
            detail = f"resolved by {_clean(str(d['resolved_by']))}; {detail}"
        if isinstance(d.get("proposed_by"), int):  # the model answer that asked for it
            detail = f"asked by pos {d['proposed_by']}; {detail}"
        outcome = str(d.get("outcome", ""))
        return Row(kind, self.ordinal_name(d, position), outcome, duration, detail)

    def llm(self, d: dict[str, Any], position: int | None) -> Row:
        """A model call: tokens in and out, cost, and the start of the answer."""
        duration = f"{d['duration_ms']:.1f} ms" if "duration_ms" in d else ""
        name = self.ordinal_name(d, position)
        if d.get("error"):
            detail = error_summary(d["error"], None if self.wide else 48)
            return Row("llm", name, str(d.get("outcome", "")), duration, detail)
        usage = d.get("usage") or {}
        spent = f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tokens, "
        spent += cost_text(d.get("cost"))
        answer = _answer(d.get("result"))
        detail = f"{spent}; {self.cut(answer, 40)}" if answer else spent
        return Row("llm", name, "answered", duration, detail)

    def wait(self, d: dict[str, Any], position: int | None) -> Row:
        """A wait began (a signal, an approval, a timer, a child): when it gives up."""
        kind = str(d.get("kind", ""))
        parts = []
        if d.get("deadline") is not None:
            parts.append(f"{'until' if kind == 'sleep' else 'deadline'} {_when(d['deadline'])}")
        if d.get("escalated"):
            parts.append(f"escalated to {_clean(str(d.get('to')))}")
        return Row(kind, self.ordinal_name(d, position), detail="; ".join(parts) or "no deadline")

    def wait_op(self, d: dict[str, Any], position: int | None) -> Row:
        """A wait ended: what it received, or its error."""
        kind = str(d.get("kind", ""))
        name = self.ordinal_name(d, position)
        error = d.get("error")
        if error is not None:
            message = self.cut(str(error.get("message", "")), 72)
            return Row(kind, name, str(error.get("type", "")), detail=message)
        result = d.get("result")
        if kind == "approval" and isinstance(result, dict):
            comment = f": {result['comment']}" if result.get("comment") else ""
            return Row(
                kind, name, "approved", detail=self.cut(f"by {result.get('by')}{comment}", 72)
            )
        sender = f" from {_clean(str(d['sender']))}" if d.get("sender") else ""
        if kind == "child":
            detail = f"child {d.get('child')}: {self.short(result, 40)}"
            return Row(kind, name, "succeeded", detail=detail)
        if kind == "sleep":
            until = d.get("until")
            return Row(kind, name, "done", detail=f"until {_when(until)}" if until else "")
        if kind == "budget" and isinstance(result, dict):
            raised = ", ".join(f"{k} {v}" for k, v in sorted(result.items()))
            return Row(kind, name, "raised", detail=f"to {raised}{sender}")
        outcome = "received" if kind == "signal" else "done"
        return Row(kind, name, outcome, detail=self.short(result, 56) + sender)


def _code(d: dict[str, Any]) -> str:
    """The agent version that wrote an entry or runs a claim, if it says."""
    return f"; code {_clean(str(d['code']))}" if d.get("code") else ""


def describe(event: Event) -> tuple[str, str, str, str, str]:
    """(kind, name, outcome, duration, detail) of one event seen alone (as a live feed sees it)."""
    row = _Describer([event], wide=False)(event)
    return row.kind, row.name, row.outcome, row.duration, row.detail


def trace_table(job: Job, events: Sequence[Event], *, wide: bool = False) -> View:
    describe = _Describer(events, wide=wide)
    rows = [describe(event) for event in events]
    texts = [
        Column("seq", [Text(str(e.seq)) for e in events], justify="right"),
        Column(
            "pos",
            [Text("" if e.position is None else str(e.position)) for e in events],
            justify="right",
        ),
        Column("event", [Text(e.type.value) for e in events]),
        Column("kind", [Text(_clean(r.kind)) for r in rows]),
        Column("name", [Text(_clean(r.name)) for r in rows]),
    ]
    outcomes = [outcome_text(_clean(r.outcome)) for r in rows]
    details = [Text(_clean(r.detail)) for r in rows]
    duration = Column("duration", [Text(r.duration) for r in rows], drop=1, justify="right")
    outcome = Column("outcome", outcomes)
    detail = Column("detail", details, fold=20, want=32)
    # Narrower: the outcome heads the detail, in one column that wraps after it (and, when
    # even that is too narrow, through it: the columns on its left are never cut).
    both = Column(
        "outcome / detail",
        [
            Text.assemble(o, "  " if o and d else "", d)
            for o, d in zip(outcomes, details, strict=True)
        ],
        fold=12,
        want=40,
    )
    title = Text.assemble(
        "job ", job.id, "  agent ", _clean(job.agent), "  ", status_text(job.status.value)
    )
    if job.code_version:
        title.append(f"  code {_clean(job.code_version)}")
    spent = model_spend(events)
    if spent["calls"]:
        title.append(f"  model calls {spent['calls']}: {spend_text(spent)}")
    return View(title, [[*texts, outcome, duration, detail], [*texts, duration, both]], wide=wide)


def cost_text(cost: float | None) -> str:
    """A cost in dollars, or "cost unknown" (a model without a price is not free)."""
    if cost is None:
        return "cost unknown"
    return f"${cost:.6f}" if cost < 0.01 else f"${cost:.4f}"


def _answer(result: Any) -> str:
    """The text of a recorded chat completion (or what it called), if it has that shape."""
    if not isinstance(result, dict):
        return ""
    if "$blob" in result:
        return "(answer in a blob)"
    choices = result.get("choices")
    message = choices[0].get("message") if isinstance(choices, list) and choices else None
    if not isinstance(message, dict):
        message = result.get("message") if isinstance(result.get("message"), dict) else None
    if message is None:
        return ""
    if message.get("content"):
        return str(message["content"])
    calls = message.get("tool_calls") or []
    names = [str((c.get("function") or {}).get("name", "?")) for c in calls if isinstance(c, dict)]
    return f"calls {', '.join(names)}" if names else ""


def spend_text(spent: dict[str, Any]) -> str:
    return f"{spent['input_tokens']}+{spent['output_tokens']} tokens, {cost_text(spent['cost'])}"
