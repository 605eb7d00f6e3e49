"""``aetheris top``: jobs by status and how fast they go, refreshed in place.

Each look is one summary (``Store.summary``, or ``GET /v1/summary`` through a server: the
key's tenant only). Rates come from the difference between looks over the last minute: jobs
made per minute (the total grows) and jobs ended per minute (the ended statuses grow), so the
first look has none yet. Piped, or with ``--once`` or ``--json``, it looks once and prints.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from aetheris.cli import render
from aetheris.store.port import JobStatus, Summary

WINDOW = 60.0  # seconds of looks the rates are taken over


@dataclass(frozen=True, slots=True)
class Look:
    at: float
    summary: Summary

    @property
    def made(self) -> int:
        return sum(self.summary.jobs.values())

    @property
    def ended(self) -> int:
        return sum(n for s, n in self.summary.jobs.items() if s.terminal)


class Rates:
    """Looks over the last :data:`WINDOW` seconds, and the rates they give."""

    def __init__(self) -> None:
        self.looks: collections.deque[Look] = collections.deque()

    def add(self, look: Look) -> None:
        self.looks.append(look)
        while len(self.looks) > 2 and look.at - self.looks[0].at > WINDOW:
            self.looks.popleft()

    def per_minute(self, count: Callable[[Look], int]) -> float | None:
        first, last = self.looks[0], self.looks[-1]
        if last.at - first.at < 0.5:
            return None
        return (count(last) - count(first)) / (last.at - first.at) * 60


def snapshot(look: Look, rates: Rates | None = None) -> dict[str, object]:
    """One look as JSON (``--json``)."""
    summary = look.summary
    return {
        "at": render.iso(look.at),
        "jobs": {s.value: summary.jobs.get(s, 0) for s in JobStatus},
        "oldest_pending_at": render.iso(summary.oldest_pending_at),
        "effects_in_doubt": summary.in_doubt,
        "made_per_minute": rates.per_minute(lambda x: x.made) if rates else None,
        "ended_per_minute": rates.per_minute(lambda x: x.ended) if rates else None,
    }


def view(look: Look, rates: Rates, where: str, interval: float | None) -> Group:
    """The screen; ``interval`` ``None``: one look, printed once (no rates to show)."""
    summary = look.summary
    table = Table(box=None, padding=(0, 2, 0, 0), header_style="bold")
    table.add_column("status")
    table.add_column("jobs", justify="right")
    for status in JobStatus:
        n = summary.jobs.get(status, 0)
        table.add_row(render.status_text(status.value), Text(str(n), style="" if n else "dim"))
    made, ended = rates.per_minute(lambda x: x.made), rates.per_minute(lambda x: x.ended)
    pending = summary.jobs.get(JobStatus.PENDING, 0)
    oldest = (
        f", the oldest waiting {look.at - summary.oldest_pending_at:.0f} s"
        if summary.oldest_pending_at is not None
        else ""
    )
    doubt = Text(
        f"effects in doubt: {summary.in_doubt}",
        style="bold red" if summary.in_doubt else "",
    )
    every = f"  every {interval:g} s (Ctrl-C leaves)" if interval is not None else ""
    lines: list[RenderableType] = [
        Text(f"aetheris top  {where}{every}", style="bold"),
        Text(""),
        table,
        Text(""),
    ]
    if interval is not None:
        lines.append(Text(f"made   {_rate(made)}   ended {_rate(ended)}"))
    return Group(*lines, Text(f"queue  {pending} pending{oldest}"), doubt)


def _rate(value: float | None) -> str:
    return "—/min (after the next look)" if value is None else f"{value:.1f}/min"


async def top(
    summarize: Callable[[], Awaitable[Summary]],
    where: str,
    *,
    interval: float,
    once: bool,
    as_json: bool,
) -> None:
    rates = Rates()
    look = Look(time.time(), await summarize())
    rates.add(look)
    if as_json:
        render.print_json(snapshot(look))
        return
    if once or not sys.stdout.isatty():
        render.console().print(view(look, rates, where, None))
        return
    leave = asyncio.Event()  # Ctrl-C: the way out, not an error
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, leave.set)
    first = view(look, rates, where, interval)
    with Live(first, console=render.console(), auto_refresh=False) as live:
        while not leave.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(leave.wait(), interval)
                break
            look = Look(time.time(), await summarize())
            rates.add(look)
            live.update(view(look, rates, where, interval), refresh=True)


def check_interval(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    if value < 0.2:
        raise click.BadParameter("must be at least 0.2 seconds")
    return value


__all__ = ["Look", "Rates", "snapshot", "top", "view"]
