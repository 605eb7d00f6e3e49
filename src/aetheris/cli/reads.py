"""Read what happened: jobs, their journals and inboxes, replay, status (verification and
export: :mod:`.evidence`)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from typing import Any

import click

from aetheris.app import App
from aetheris.cli import follow as live
from aetheris.cli import render, trace_view
from aetheris.cli import top as top_view
from aetheris.cli.backend import Backend, with_backend
from aetheris.cli.base import (
    Env,
    database_option,
    json_option,
    load_app,
    main,
    open_for_reading,
    parse_since,
    pass_env,
    resolve_job_id,
    run,
    with_app,
)
from aetheris.journal import Event
from aetheris.recording import Replayer
from aetheris.replay import ReplayReport
from aetheris.replay import replay as replay_job
from aetheris.store import safe_url
from aetheris.store.port import Job, JobStatus
from aetheris.timeline import model_spend


@main.group()
def jobs() -> None:
    """List and inspect jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]))
@click.option("--agent", help="Only jobs of this agent.")
@click.option(
    "--since", metavar="WHEN", help="Only jobs created since: 30m, 2h, 7d or an ISO time."
)
@click.option("--error", "error_text", metavar="TEXT", help="Only jobs whose error mentions TEXT.")
@click.option("--limit", default=50, show_default=True)
@click.option("--wide", is_flag=True, help="Show every column in full, whatever the width.")
@json_option
@with_backend()
async def jobs_list(
    backend: Backend,
    status: str | None,
    agent: str | None,
    since: str | None,
    error_text: str | None,
    limit: int,
    wide: bool,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    found = await backend.list_jobs(
        JobStatus(status) if status else None,
        agent,
        parse_since(since) if since else None,
        limit if error_text is None else max(limit, 10_000),
    )
    if error_text is not None:
        needle = error_text.lower()
        found = [j for j in found if j.error and needle in json.dumps(j.error).lower()][:limit]
    if as_json:
        render.print_json([render.job_json(j) for j in found])
    else:
        render.show(render.jobs_table(found, wide=wide))
        click.echo(backend.where)


@jobs.command("show")
@click.argument("job_id")
@json_option
@with_backend()
async def jobs_show(backend: Backend, job_id: str, as_json: bool) -> None:
    """Show one job."""
    job = await backend.get_job(job_id)
    spent = model_spend(await backend.events(job_id))
    view = {**render.job_json(job), "model_calls": spent}
    if as_json:
        render.print_json(view)
        return
    render.console().print(render.job_details(job))
    if spent["calls"]:
        click.echo(f"model calls: {spent['calls']}, {trace_view.spend_text(spent)}")


@main.command()
@click.argument("job_id")
@click.option("--wide", is_flag=True, help="Show every column in full, whatever the width.")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Live until the job ends (with --json: one event per line as it is journaled).",
)
@json_option
@with_backend()
async def trace(backend: Backend, job_id: str, wide: bool, follow: bool, as_json: bool) -> None:
    """The journal of a job as a table of steps."""
    if follow:

        async def fetch(after: int) -> tuple[Job, list[Event]]:
            job = await backend.get_job(job_id)  # first the job, then the events it implies
            return job, await backend.events(job_id, after=after)

        await live.follow(fetch, wide=wide, as_json=as_json)
        return
    job = await backend.get_job(job_id)
    events = await backend.events(job_id)
    if as_json:
        render.print_json(
            {"job": render.job_json(job), "events": [render.event_json(e) for e in events]}
        )
    else:
        render.show(trace_view.trace_table(job, events, wide=wide))


@main.command(name="top")
@click.option(
    "--interval",
    default=2.0,
    show_default=True,
    callback=top_view.check_interval,
    help="Seconds between looks.",
)
@click.option("--once", is_flag=True, help="Look once, print, and end (as when piped).")
@json_option
@with_backend()
async def top(backend: Backend, interval: float, once: bool, as_json: bool) -> None:
    """Jobs by status, jobs made and ended per minute, the queue and effects in doubt, live.

    Through a server: the key's tenant only. Ctrl-C leaves."""
    await top_view.top(
        backend.summary, backend.where, interval=interval, once=once, as_json=as_json
    )


@main.command()
@click.argument("job_id", required=False)
@click.option("--app", "app_spec", required=True, metavar="MOD:APP", help="The code to replay.")
@click.option(
    "--journal",
    "journals",
    multiple=True,
    type=click.Path(exists=True),
    help="A saved journal (aetheris export ID --journal), or a folder of them, to replay "
    "instead of a job in the database. Repeatable.",
)
@json_option
@database_option
@pass_env
def replay(
    env: Env, job_id: str | None, app_spec: str, journals: tuple[str, ...], as_json: bool
) -> None:
    """Replay a job's journal (or saved journals) against the code, executing nothing; exit 1
    on a divergence, naming the position, what the journal holds, what the code asked for and
    the line that asked."""
    if (job_id is None) == (not journals):
        raise click.UsageError("give a JOB_ID or --journal FILE, not both and not neither")
    app = load_app(app_spec) if journals else env.app(app_spec)  # files need no database

    async def main() -> list[ReplayReport]:
        try:
            if journals:
                return await Replayer(app).replay_all(*journals, raise_on_failure=False)
            store = await open_for_reading(app)
            return [await replay_job(app, await resolve_job_id(store, str(job_id)))]
        finally:
            await app.close()

    reports = run(main(), None if journals else app.database_url)
    if as_json:
        shown = [dataclasses.asdict(r) for r in reports]
        render.print_json(shown[0] if job_id is not None else shown)
    for report in [] if as_json else reports:
        _echo_replay(report)
    if not all(r.ok for r in reports):
        sys.exit(1)


def _echo_replay(report: ReplayReport) -> None:
    source = f"{report.source}: " if report.source else ""
    click.echo(f"{source}{report.outcome}: {report.operations} recorded operations")
    if report.diff:
        click.echo(report.diff)
    if report.outcome == "different_end":
        click.echo(f"recorded: {json.dumps(report.recorded_end)}")
        click.echo(f"replayed: {json.dumps(report.replayed_end)}")


@jobs.command("inbox")
@click.argument("job_id")
@click.option("--all", "everything", is_flag=True, help="Also the signals already received.")
@json_option
@with_app()
async def jobs_inbox(app: App, job_id: str, everything: bool, as_json: bool) -> None:
    """The signals sent to a job: by default those it has not received yet."""
    store = await app.open_store()
    found = await store.signals(job_id, pending=not everything)
    if as_json:
        render.print_json([render.signal_json(s) for s in found])
        return
    if not found:
        click.echo(f"job {job_id}: no {'' if everything else 'pending '}signals")
    for sig in found:
        received = (
            "pending" if sig.consumed_position is None else f"received at {sig.consumed_position}"
        )
        payload = json.dumps(sig.payload, ensure_ascii=False)
        click.echo(f"#{sig.seq} {sig.name} from {sig.sender} ({received}): {payload}")


@main.command()
@json_option
@with_app()
async def status(app: App, as_json: bool) -> None:
    """The database in use, its schema, and what needs attention."""
    store = await app.open_store()
    state = await store.schema()
    summary = await store.summary()
    counts = {s.value: summary.jobs.get(s, 0) for s in JobStatus}
    agents = await store.agents()
    alive = [w for w in await app.workers() if w.alive]
    view: dict[str, Any] = {
        "database": safe_url(app.database_url),
        "schema": {"version": state.current, "latest": state.latest},
        "jobs": counts,
        "oldest_pending": render.iso(summary.oldest_pending_at),
        "effects_in_doubt": summary.in_doubt,
        "agents": agents,
        "workers": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "agents": list(w.agents),
                "queues": None if w.queues is None else list(w.queues),
                "last_seen": render.iso(w.last_seen),
            }
            for w in alive
        ],
    }
    if as_json:
        render.print_json(view)
        return
    click.echo(f"database        {view['database']}")
    click.echo(f"schema          version {state.current} (latest {state.latest})")
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"
    click.echo(f"jobs            {shown}")
    if summary.oldest_pending_at is not None:
        age = time.time() - summary.oldest_pending_at
        click.echo(f"oldest pending  {view['oldest_pending']} ({age:.0f} s ago)")
    click.echo(
        f"in doubt        {summary.in_doubt} effect(s)"
        + (": `aetheris effects list --in-doubt`" if summary.in_doubt else "")
    )
    click.echo(f"agents          {', '.join(agents) or 'none registered by a worker yet'}")
    click.echo(f"workers alive   {len(alive)}")
    for w in alive:
        queues = "all queues" if w.queues is None else ", ".join(w.queues)
        click.echo(f"  {w.id}  pid {w.pid} on {w.host}: {', '.join(w.agents)} ({queues})")
