"""Time travel: ``fork`` a job at a journal position (optionally with an edited output), and
``diff`` two runs (where they differ: the first divergence, then the changed outputs)."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.text import Text

from aetheris.cli import render
from aetheris.cli.backend import Backend, with_backend
from aetheris.cli.base import json_option, main, parse_json, who
from aetheris.cli.render import Column, View, _clean, _short
from aetheris.diffing import Entry, RunDiff, diff_runs
from aetheris.forking import UNSET


@main.command()
@click.argument("job_id")
@click.option(
    "--at",
    "at",
    type=int,
    required=True,
    metavar="N",
    help="Keep the first N journal entries (positions 0..N-1); the fork goes live after them.",
)
@click.option(
    "--output",
    "output_json",
    metavar="JSON",
    help="Also keep entry N, its result replaced by this JSON (@FILE, or - for standard input).",
)
@click.option("--by", default=who, show_default="$USER", help="Recorded in the origin's journal.")
@json_option
@with_backend(writes=True)
async def fork(
    backend: Backend, job_id: str, at: int, output_json: str | None, by: str | None, as_json: bool
) -> None:
    """Start a new job that replays JOB_ID's first N entries for free, then runs live.

    The origin must not be running (pause it first). Prints the new job's id.
    """
    output = UNSET if output_json is None else parse_json(output_json, "--output")
    new_id = await backend.fork(job_id, at, output, by)
    if as_json:
        link: dict[str, Any] = {"job": job_id, "at": at}
        if output_json is not None:
            link["edited"] = at
        render.print_json({"id": new_id, "forked_from": link})
    else:
        click.echo(new_id)


@main.command()
@click.argument("a")
@click.argument("b")
@json_option
@with_backend()
async def diff(backend: Backend, a: str, b: str, as_json: bool) -> None:
    """Where runs A and B differ; exit 0 when they are the same, 1 when they differ."""
    await backend.get_job(a)  # an unknown job is an error, not an empty run
    await backend.get_job(b)
    found = diff_runs(a, await backend.events(a), b, await backend.events(b))
    if as_json:
        render.print_json(found.to_json())
    else:
        _show(found)
    if not found.same:
        sys.exit(1)


def _show(found: RunDiff) -> None:
    if found.same:
        click.echo(f"{found.a} and {found.b} are the same run (same operations, outputs and end)")
        return
    first = found.divergence
    if first is not None:
        click.echo(
            f"first divergence at position {first.position}: "
            f"A {_name(first.a)}  vs  B {_name(first.b)}"
        )
    changed = [r.position for r in found.rows if r.differs == "output"]
    if changed:
        click.echo(f"same operation, other output at position(s) {changed}")
    if found.rows:
        render.show(_table(found))
    if found.end_a != found.end_b:
        click.echo(f"end: A {_short(found.end_a, 80)}")
        click.echo(f"     B {_short(found.end_b, 80)}")


def _name(entry: Entry | None) -> str:
    if entry is None:
        return "(nothing)"
    return f"{_clean(entry.kind)} {_clean(entry.name)} (args {entry.args_hash[:12]})"


def _table(found: RunDiff) -> View:
    rows = found.rows

    def side(pick: str) -> list[Text]:
        entries = [getattr(r, pick) for r in rows]
        return [Text(_short(e.output, 60) if e else "(nothing)") for e in entries]

    columns = [
        Column("pos", [Text(str(r.position)) for r in rows], justify="right"),
        Column("differs", [Text(r.differs) for r in rows]),
        Column("A", [Text(_name(r.a)) for r in rows], fold=12, want=32),
        Column("B", [Text(_name(r.b)) for r in rows], fold=12, want=32, drop=2),
        Column("A output", side("a"), fold=12, want=40),
        Column("B output", side("b"), fold=12, want=40),
    ]
    return View(Text(f"{len(rows)} position(s) differ"), [columns])
