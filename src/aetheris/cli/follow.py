"""``aetheris trace ID --follow``: a job's trace, live, until the job ends.

At a terminal the table is redrawn in place as the journal grows (the newest rows that fit,
with a line saying how many earlier ones are above), then printed whole when the job has
ended. Piped, it prints nothing until the end but the final table; with ``--json`` it writes
each event as one JSON line as soon as it is journaled (a feed for scripts, ``jq`` and logs).
Both read the journal from where they were (``events(after=seq)``), on the database or
through a server.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

from rich.live import Live
from rich.text import Text

from aetheris.cli import render, trace_view
from aetheris.journal import Event
from aetheris.store.port import Job

POLL = 0.25  # seconds between looks at the journal
CHROME = 6  # lines of the screen that are not rows: title, header, rule, note, margins

Fetch = Callable[[int], Awaitable[tuple[Job, list[Event]]]]


async def follow(fetch: Fetch, *, wide: bool, as_json: bool) -> Job:
    """Follow the job that ``fetch(after)`` reads (the job, then its events after a seq)
    until it ends; the job then."""
    if as_json:
        return await _lines(fetch)
    if not sys.stdout.isatty():
        job, events = await _until_end(fetch, [], lambda job, events: None)
        render.show(trace_view.trace_table(job, events, wide=wide))
        return job
    console = render.console()
    with Live(console=console, auto_refresh=False, transient=True) as live:

        def draw(job: Job, events: list[Event]) -> None:
            live.update(_tail(job, events, console.height, wide), refresh=True)

        job, events = await _until_end(fetch, [], draw)
    render.show(trace_view.trace_table(job, events, wide=wide))
    return job


async def _until_end(
    fetch: Fetch, events: list[Event], seen: Callable[[Job, list[Event]], None]
) -> tuple[Job, list[Event]]:
    status = None
    while True:
        job, new = await fetch(events[-1].seq if events else -1)
        events.extend(new)
        if new or job.status != status:
            seen(job, events)
            status = job.status
        if job.status.terminal and job.event_count <= len(events):
            return job, events
        await asyncio.sleep(POLL)


async def _lines(fetch: Fetch) -> Job:
    def emit(_job: Job, events: list[Event]) -> None:
        while printed[0] < len(events):
            print(json.dumps(render.event_json(events[printed[0]])), flush=True)
            printed[0] += 1

    printed = [0]
    job, _ = await _until_end(fetch, [], emit)
    return job


def _tail(job: Job, events: list[Event], height: int, wide: bool) -> render.View:
    """The trace's newest rows that fit in ``height`` lines, noting those left out above."""
    room = max(height - CHROME, 3)
    view = trace_view.trace_table(job, events[-room:], wide=wide)
    hidden = len(events) - room
    if hidden > 0:
        view.title = Text.assemble(view.title, Text(f"  (… {hidden} earlier)", style="dim"))
    return view


__all__ = ["follow"]
