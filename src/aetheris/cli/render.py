"""Stable JSON views (the ``--json`` schema) and tables for people."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from aetheris.journal import Event, EventType
from aetheris.store.port import Effect, Job, Signal

STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "compensated": "magenta",
    "cancelled": "red",
    "parked": "yellow",
    "running": "cyan",
    "pending": "white",
}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "agent": job.agent,
        "status": job.status.value,
        "park_reason": job.park_reason.value if job.park_reason else None,
        "park_detail": job.park_detail,
        "input": job.input,
        "result": job.result,
        "error": job.error,
        "idempotency_key": job.idempotency_key,
        "queue": job.queue,
        "priority": job.priority,
        "wake_on": job.wake_on,
        "wake_at": iso(job.wake_at),
        "parent_id": job.parent_id,
        "control": job.control.value if job.control else None,
        "deadline": iso(job.deadline),
        "lease_epoch": job.lease_epoch,
        "lease_owner": job.lease_owner,
        "lease_expires_at": iso(job.lease_expires_at),
        "attempts": job.attempts,
        "events": job.event_count,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "type": event.type.value,
        "position": event.position,
        "at": iso(event.at),
        "data": event.data,
        "hash": event.hash,
        "prev_hash": event.prev_hash,
    }


def effect_json(effect: Effect) -> dict[str, Any]:
    return {
        "job_id": effect.job_id,
        "position": effect.position,
        "tool": effect.tool,
        "effect": effect.effect.value,
        "state": effect.state.value,
        "idempotency_key": effect.idempotency_key,
        "args_hash": effect.args_hash,
        "attempt": effect.attempt,
        "result": effect.result,
        "error": effect.error,
        "created_at": iso(effect.created_at),
        "updated_at": iso(effect.updated_at),
    }


def signal_json(signal: Signal) -> dict[str, Any]:
    return {
        "job_id": signal.job_id,
        "seq": signal.seq,
        "name": signal.name,
        "signal_id": signal.signal_id,
        "payload": signal.payload,
        "sender": signal.sender,
        "created_at": iso(signal.created_at),
        "consumed_position": signal.consumed_position,
    }


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


# Stored data (inputs, results, error messages, agent and tool names) is only ever put on the
# screen as ``rich.text.Text``, never as a markup string: ``[/x]`` prints as ``[/x]``. Control
# characters in it are shown escaped, so stored data cannot move the cursor or change colours.

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    """``text`` with control characters other than newline and tab shown escaped (``\\x1b``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _text(value: str) -> Text:
    """Stored data as text for a cell: printed as it is, never read as markup."""
    return Text(_clean(value))


def styled_status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, "white"))


def jobs_table(jobs: Sequence[Job]) -> Table:
    table = Table(title=f"{len(jobs)} job(s)", title_justify="left")
    for column in ("id", "agent", "status", "reason", "attempts", "events", "created"):
        table.add_column(column, no_wrap=column in ("id", "created"))
    for job in jobs:
        table.add_row(
            Text(job.id),
            _text(job.agent),
            styled_status(job.status.value),
            Text(job.park_reason.value if job.park_reason else ""),
            Text(str(job.attempts)),
            Text(str(job.event_count)),
            Text((iso(job.created_at) or "")[:23]),
        )
    return table


def _short(value: Any, width: int = 48) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True) if value is not None else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _describe(event: Event) -> tuple[str, str, str, str, str]:
    """(kind, name, outcome, duration, detail) of one event for the trace table."""
    d = event.data
    if event.type is EventType.OP and d["kind"] in ("approval", "signal", "child", "sleep"):
        return _describe_wait(d)
    if event.type is EventType.OP:
        name = f"{d['name']}#{d.get('ordinal', 1)}"
        duration = f"{d['duration_ms']:.1f} ms" if "duration_ms" in d else ""
        detail = _short(d.get("error") or d.get("result"))
        if d.get("attempts", 1) > 1:
            detail = f"{d['attempts']} attempts; {detail}"
        if d.get("resolved_by"):
            detail = f"resolved by {d['resolved_by']}; {detail}"
        return d["kind"], name, d.get("outcome", ""), duration, detail
    if event.type is EventType.INTENT:
        again = f"attempt {d['attempt']}; " if d.get("attempt", 1) > 1 else ""
        name = f"{d['name']}#{d.get('ordinal', 1)}"
        return d["kind"], name, "intent", "", again + d["idempotency_key"]
    if event.type is EventType.JOB_CLAIMED:
        recovered = f" (recovered from {d['recovered_from']})" if d.get("recovered_from") else ""
        return "", "", "", "", f"{d['owner']} epoch {d['epoch']}{recovered}"
    if event.type is EventType.EFFECT_IN_DOUBT:
        return "tool", d["name"], "in_doubt", "", d["idempotency_key"]
    if event.type is EventType.EFFECT_RESOLVED:
        return "tool", d["name"], d["resolution"], "", f"by {d['by']}"
    if event.type is EventType.JOB_PARKED:
        parked: dict[str, Any] = d.get("detail") or {}
        return "", "", d["reason"], "", str(parked.get("message") or _short(parked, 60))
    if event.type is EventType.WAIT:
        return "", "", "", "", f"deadline {iso(d.get('deadline'))}"
    if event.type in (EventType.JOB_FAILED, EventType.JOB_COMPENSATED):
        error = d.get("error") or {}
        return "", "", "", "", f"{error.get('type')}: {error.get('message')}"[:80]
    if event.type is EventType.JOB_CREATED:
        return "", "", "", "", f"agent {d['agent']} input {_short(d.get('input'), 60)}"
    if event.type is EventType.JOB_SUCCEEDED:
        return "", "", "", "", _short(d.get("result"))
    return "", "", "", "", _short(d, 60)


def _describe_wait(d: dict[str, Any]) -> tuple[str, str, str, str, str]:
    name = f"{d['name']}#{d.get('ordinal', 1)}"
    error = d.get("error")
    if error is not None:
        return d["kind"], name, error["type"], "", str(error.get("message", ""))[:72]
    result = d.get("result")
    if d["kind"] == "approval" and isinstance(result, dict):
        comment = f": {result['comment']}" if result.get("comment") else ""
        return d["kind"], name, "approved", "", f"by {result.get('by')}{comment}"
    sender = f" from {d['sender']}" if d.get("sender") else ""
    if d["kind"] == "child":
        return d["kind"], name, "succeeded", "", f"child {d.get('child')}: {_short(result, 40)}"
    return (
        d["kind"],
        name,
        "received" if d["kind"] == "signal" else "done",
        "",
        (_short(result, 56) + sender),
    )


def trace_table(job: Job, events: Sequence[Event]) -> Table:
    title = Text.assemble(
        "job ", job.id, "  agent ", _clean(job.agent), "  ", styled_status(job.status.value)
    )
    table = Table(title=title, title_justify="left")
    for column in ("seq", "pos", "event", "kind", "name", "outcome", "duration"):
        justify: Literal["left", "right"] = (
            "right" if column in ("seq", "pos", "duration") else "left"
        )
        table.add_column(column, justify=justify, no_wrap=True)
    table.add_column("detail", overflow="ellipsis", no_wrap=True, max_width=72)
    for event in events:
        kind, name, outcome, duration, detail = _describe(event)
        position = "" if event.position is None else str(event.position)
        table.add_row(
            Text(str(event.seq)),
            Text(position),
            Text(event.type.value),
            _text(kind),
            _text(name),
            _outcome_style(_clean(outcome)),
            Text(duration),
            _text(detail),
        )
    return table


def _outcome_style(outcome: str) -> Text:
    styles = {
        "permanent_failure": "red",
        "in_doubt": "yellow",
        "side_effect_committed": "blue",
        "compensated": "magenta",
        "failed": "red",
    }
    style = styles.get(outcome)
    return Text(outcome, style=style or "")


def effects_table(effects: Sequence[Effect]) -> Table:
    table = Table(title=f"{len(effects)} effect(s)", title_justify="left")
    for column in ("job", "pos", "tool", "effect", "state", "attempt", "idempotency key"):
        table.add_column(column)
    for e in effects:
        table.add_row(
            Text(e.job_id),
            Text(str(e.position)),
            _text(e.tool),
            Text(e.effect.value),
            _outcome_style(e.state.value),
            Text(str(e.attempt)),
            _text(e.idempotency_key),
        )
    return table


def job_details(job: Job) -> Table:
    """``jobs show``: one field per row; values are shown as text, never as markup."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold")
    table.add_column()
    for key, value in job_json(job).items():
        if key not in ("park_detail", "error"):
            table.add_row(key, _text(json.dumps(value, ensure_ascii=False)))
    if job.park_detail:
        diff = job.park_detail.get("diff")
        table.add_row("park detail", _text(diff or json.dumps(job.park_detail, indent=2)))
    if job.error:
        error = job.error
        text = f"{error.get('type')}: {error.get('message')}"
        if error.get("compensated"):
            text += f" (compensated: {', '.join(error['compensated'])})"
        table.add_row("error", _text(text))
    return table


def console() -> Console:
    """A console that is wide enough for traces even when output goes to a pipe or a file."""
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    # markup off: a plain string that reaches the console is printed as it is, too.
    return Console(highlight=False, markup=False, emoji=False, soft_wrap=False, width=width)
