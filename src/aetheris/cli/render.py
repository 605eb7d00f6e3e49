"""Stable JSON views (the ``--json`` schema) and tables for people."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from aetheris.journal import Event
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
        "control_by": job.control_by,
        "deadline": iso(job.deadline),
        "lease_epoch": job.lease_epoch,
        "lease_owner": job.lease_owner,
        "lease_expires_at": iso(job.lease_expires_at),
        "attempts": job.attempts,
        "events": job.event_count,
        "code_version": job.code_version,
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


# -- tables for people ------------------------------------------------------------------------
#
# Stored data (inputs, results, error messages, agent and tool names) is only ever put on the
# screen as ``rich.text.Text``: never as a markup string, so ``[/x]`` prints as ``[/x]``. Control
# characters in it are shown escaped, so stored data cannot move the cursor or change colours.
#
# A table is laid out for the width it is printed at: the columns a row is known by (a job's id
# and status, an event's seq, position, kind and name) are never wrapped, cut or dropped; the
# others wrap, and the least useful are dropped when even wrapped they would not fit. ``wide``
# shows every column in full whatever the width (the lines are then as long as they need be).

PIPE_WIDTH = 160  # columns of output that goes to a pipe or a file when COLUMNS is not set
GAP = 2  # spaces between two columns

OUTCOME_STYLE = {
    "pure": "dim",
    "permanent_failure": "red",
    "in_doubt": "yellow",
    "side_effect_committed": "blue",
    "committed": "blue",
    "compensated": "magenta",
    "failed": "red",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    """``text`` with control characters other than newline and tab shown escaped (``\\x1b``)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _one_line(text: str) -> str:
    """``text`` on one line: line breaks shown as ``⏎``, tabs as spaces."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return _clean(" ⏎ ".join(line for line in lines if line).replace("\t", " "))


def _cut(text: str, limit: int | None) -> str:
    """``text`` shortened to ``limit`` characters (``None``: in full)."""
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any, limit: int | None = 48) -> str:
    """A stored value as one line of JSON, shortened to ``limit`` characters."""
    if value is None:
        return ""
    return _cut(_one_line(json.dumps(value, ensure_ascii=False, sort_keys=True)), limit)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def outcome_text(outcome: str) -> Text:
    return Text(outcome, style=OUTCOME_STYLE.get(outcome, ""))


def styled_status(status: str) -> Text:
    """A job's status, coloured (kept for callers of the earlier markup-string version)."""
    return status_text(status)


def error_summary(error: dict[str, Any] | None, limit: int | None = 60) -> str:
    """``Type: message`` of a stored error, on one line, shortened to ``limit`` characters."""
    if not error:
        return ""
    kind = str(error.get("type") or "error")
    message = _one_line(str(error.get("message") or ""))
    return _cut(_clean(f"{kind}: {message}" if message else kind), limit)


def _when(ts: float | None) -> str:
    """A moment in a trace: ISO 8601 in UTC, to the millisecond (``2025-01-31T12:00:00.000Z``)."""
    return (iso(ts) or "").replace("+00:00", "Z")


def _stamp(ts: float | None) -> str:
    """A time for a table: ``2025-01-31 12:00:00`` in UTC."""
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table and its cells.

    ``fold`` 0: the cells are never wrapped; else they may wrap down to ``fold`` columns, and
    get up to ``want`` columns (0: all they need) before any column that may be dropped is
    shown. ``drop`` ``None``: the column is always shown; else it is shown when there is room,
    the highest ``drop`` first (an empty column last).
    """

    header: str
    cells: Sequence[Text]
    fold: int = 0
    want: int = 0
    drop: int | None = None
    justify: Literal["left", "right"] = "left"

    @property
    def natural(self) -> int:
        """Its width when nothing in it wraps."""
        lines = [line for cell in self.cells for line in cell.plain.splitlines()]
        return max([cell_len(self.header), *(cell_len(line) for line in lines)])

    @property
    def least(self) -> int:
        """The narrowest it may be."""
        return min(self.natural, self.fold) if self.fold else self.natural

    @property
    def wanted(self) -> int:
        """The width it gets before the columns that may be dropped."""
        return max(self.least, min(self.natural, self.want)) if self.want else self.natural

    @property
    def empty(self) -> bool:
        return not any(cell.plain for cell in self.cells)


Layout = list[tuple[Column, int]]


def _span(widths: Iterable[int]) -> int:
    widths = list(widths)
    return sum(widths) + GAP * max(len(widths) - 1, 0)


def fit(columns: Sequence[Column], width: int) -> tuple[Layout, bool, bool]:
    """The columns to show at ``width`` and the width of each.

    Also whether the columns always shown fit at all (else they are laid out at their least
    width, wider than ``width``), and whether they fit at the width they want. The columns
    always shown come first, wrapped if need be; then those that may be dropped, where they
    fit; what is left goes to the columns that wrap, leftmost first.
    """
    widths = {i: c.least for i, c in enumerate(columns) if c.drop is None}
    if _span(widths.values()) > width:
        return [(columns[i], w) for i, w in widths.items()], False, False

    def grow(to: Callable[[Column], int]) -> None:
        for i in sorted(widths):
            spare = width - _span(widths.values())
            widths[i] += max(0, min(spare, to(columns[i]) - widths[i]))

    grow(lambda c: c.wanted)
    comfortable = all(widths[i] >= columns[i].wanted for i in widths)
    optional = sorted(
        (i for i, c in enumerate(columns) if c.drop is not None),
        key=lambda i: (columns[i].empty, -(columns[i].drop or 0)),
    )
    for i in optional:
        if _span([*widths.values(), columns[i].least]) <= width:
            widths[i] = columns[i].least
    grow(lambda c: c.natural)
    return [(columns[i], widths[i]) for i in sorted(widths)], True, comfortable


class View:
    """A table (and a title above it) that is laid out for the width it is printed at.

    ``candidates`` are the column sets to try in order of preference (for instance, two
    columns, else the two merged into one that can wrap): the first whose columns fit at the
    width they want, else the last. ``wide``: every column of the first, in full.
    """

    def __init__(
        self, title: Text, candidates: Sequence[Sequence[Column]], *, wide: bool = False
    ) -> None:
        self.title = title
        self.candidates = candidates
        self.wide = wide

    def layout(self, width: int) -> Layout:
        if self.wide:
            return [(c, c.natural) for c in self.candidates[0]]
        for columns in self.candidates[:-1]:
            layout, _, comfortable = fit(columns, width)
            if comfortable:
                return layout
        return fit(self.candidates[-1], width)[0]

    def width(self, layout: Layout) -> int:
        """The width it needs: its table's, and at least its title's longest word."""
        words = [cell_len(word) for word in self.title.plain.split()]
        return max(_span([w for _, w in layout]), *words, 1)

    def render(self, width: int) -> tuple[RenderableType, int]:
        """What to print at ``width``, and the width that takes (more if it cannot fit)."""
        layout = self.layout(width)
        table = Table(
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            padding=(0, 1, 0, 0),
            header_style="bold",
        )
        for column, w in layout:
            table.add_column(
                Text(column.header),
                justify=column.justify,
                width=w,
                no_wrap=not column.fold,
                overflow="fold",
            )
        rows = len(layout[0][0].cells) if layout else 0
        for i in range(rows):
            table.add_row(*(column.cells[i] for column, _ in layout))
        return Group(self.title, table), self.width(layout)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.render(options.max_width)[0]


def show(view: View) -> None:
    """Print a view at the terminal's width, or wider when what must be whole needs more."""
    out = console()
    body, width = view.render(out.width)
    if width > out.width:
        out = console(width)
    out.print(body)


def jobs_table(jobs: Sequence[Job], *, wide: bool = False) -> View:
    limit = None if wide else 60
    reasons = [job.park_reason.value if job.park_reason else "" for job in jobs]
    errors = [error_summary(job.error, limit) for job in jobs]
    id_, agent, status = (
        Column("id", [Text(job.id) for job in jobs]),
        Column("agent", [Text(_clean(job.agent)) for job in jobs], fold=8, want=24),
        Column("status", [status_text(job.status.value) for job in jobs]),
    )
    reason = Column("reason", [Text(r, style="yellow") for r in reasons])
    error = Column("error", [Text(e, style="red") for e in errors], fold=12, want=48)
    # A job is parked for a reason or ended with an error, never both: one column holds either.
    either = Column(
        "reason / error",
        [
            Text(r, style="yellow") if r else Text(e, style="red")
            for r, e in zip(reasons, errors, strict=True)
        ],
        fold=12,
        want=48,
    )
    counts = (
        Column("runs", [Text(_runs(job)) for job in jobs], drop=3, justify="right"),
        Column("events", [Text(str(job.event_count)) for job in jobs], drop=2, justify="right"),
        Column("created (UTC)", [Text(_stamp(job.created_at)) for job in jobs], drop=1),
    )
    # Narrower still: each job's agent goes under its id.
    stacked = Column(
        "id\n  agent",
        [Text.assemble(job.id, "\n  ", (_clean(job.agent), "dim")) for job in jobs],
    )
    return View(
        Text(f"{len(jobs)} job(s)"),
        [
            [id_, agent, status, reason, error, *counts],
            [id_, agent, status, either, *counts],
            [stacked, status, either, *counts],
        ],
        wide=wide,
    )


def effects_table(effects: Sequence[Effect], *, wide: bool = False) -> View:
    columns = [
        Column("job", [Text(e.job_id) for e in effects]),
        Column("pos", [Text(str(e.position)) for e in effects], justify="right"),
        Column("tool", [Text(_clean(e.tool)) for e in effects], fold=8, want=20),
        Column("effect", [Text(e.effect.value) for e in effects], drop=2),
        Column("state", [outcome_text(e.state.value) for e in effects]),
        Column("attempt", [Text(str(e.attempt)) for e in effects], drop=1, justify="right"),
        Column(
            "idempotency key", [Text(_clean(e.idempotency_key)) for e in effects], fold=24, drop=3
        ),
    ]
    return View(Text(f"{len(effects)} effect(s)"), [columns], wide=wide)


def job_details(job: Job) -> RenderableType:
    """``jobs show``: one field per row, then the failure's traceback; all of it as text."""
    table = Table.grid(padding=(0, 2))
    table.add_column(justify="right", style="bold")
    table.add_column()
    for key, value in job_json(job).items():
        if key not in ("park_detail", "error"):
            table.add_row(key, Text(_clean(json.dumps(value, ensure_ascii=False))))
    if job.park_detail:
        diff = job.park_detail.get("diff")
        table.add_row(
            "park detail",
            Text(_clean(diff or json.dumps(job.park_detail, indent=2, ensure_ascii=False))),
        )
    if not job.error:
        return table
    error = job.error
    text = f"{error.get('type')}: {error.get('message')}"
    if error.get("compensated"):
        text += f" (compensated: {', '.join(map(str, error['compensated']))})"
    table.add_row("error", Text(_clean(text), style="red"))
    for key in (
        "position",
        "tool",
        "cause",
        "in_doubt",
        "not_compensated",
        "compensation_error",
        "last_failure",
    ):
        if error.get(key) is not None:
            table.add_row(
                key.replace("_", " "), Text(_clean(json.dumps(error[key], ensure_ascii=False)))
            )
    trace = error.get("traceback")
    if not trace:
        return table
    return Group(
        table, Text(""), Text("traceback:", style="bold"), Text(_clean(str(trace).rstrip()))
    )


def console(width: int | None = None) -> Console:
    """The console for people.

    Colours only when the output is a terminal, and never when ``NO_COLOR`` is set. A terminal
    is as wide as it is; a pipe or a file gets ``COLUMNS`` or 160 columns. ``width`` overrides
    either (a table whose ids would not fit otherwise is printed wider, and the terminal wraps).
    Markup is off: a plain string that reaches it is printed as it is.
    """
    if width is None and not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    plain = os.environ.get("NO_COLOR", "") != ""
    return Console(
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
        width=width,
        color_system=None if plain else "auto",
    )


def _runs(job: Job) -> str:
    """How many times a worker ran the job (a park and its resume are two runs), and how many
    of those a dead worker or a runtime failure cut short."""
    return f"{job.attempts} ({job.recoveries} recovered)" if job.recoveries else str(job.attempts)
