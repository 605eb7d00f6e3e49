"""Act on jobs: signals, approvals, cancel/pause/resume, in-doubt effects, the schema."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from aetheris.cli import render
from aetheris.cli.backend import Backend, with_backend
from aetheris.cli.base import (
    MEMORY_REFUSED,
    Env,
    database_option,
    json_option,
    main,
    parse_json,
    pass_env,
    run,
    who,
)
from aetheris.store import create_store
from aetheris.store.port import Control, Job, JobStatus, ParkReason, Signal, signal_wake
from aetheris.store.sqlite import sqlite_path


@main.command(name="signal")
@click.argument("job_id")
@click.argument("name")
@click.option(
    "--data",
    "data_json",
    default="null",
    show_default=True,
    help="Payload as JSON, @FILE, or - for standard input.",
)
@click.option("--signal-id", help="Sending twice with one id delivers once.")
@click.option("--by", default=who, show_default="$USER", help="Recorded as the sender.")
@json_option
@with_backend(writes=True)
async def send_signal(
    backend: Backend,
    job_id: str,
    name: str,
    data_json: str,
    signal_id: str | None,
    by: str | None,
    as_json: bool,
) -> None:
    """Send signal NAME to a job; a job waiting for it resumes."""
    sent = await backend.signal(job_id, name, parse_json(data_json, "--data"), signal_id, by)
    if as_json:
        render.print_json(render.signal_json(sent))
    else:
        click.echo(f"signal {name!r} (#{sent.seq}, id {sent.signal_id}) is in job {job_id}'s inbox")
    job = await backend.get_job(job_id)
    if job.wake_on != signal_wake(name) and job.status is JobStatus.PARKED:
        waiting = job.wake_on or job.park_reason
        click.echo(
            f"note: job {job_id} is waiting for {waiting}, not for signal {name!r}: the signal "
            "stays in its inbox until a wait for it receives it",
            err=True,
        )


@main.command()
@click.argument("job_id")
@click.option("--tokens", type=click.IntRange(min=0), help="The new token limit.")
@click.option("--cost", type=click.FloatRange(min=0), help="The new cost limit, in dollars.")
@click.option("--by", default=who, show_default="$USER", help="Recorded with the raise.")
@json_option
@with_backend(writes=True)
async def budget(
    backend: Backend,
    job_id: str,
    tokens: int | None,
    cost: float | None,
    by: str | None,
    as_json: bool,
) -> None:
    """Give a job new model budget limits; a job parked for its budget resumes."""
    if tokens is None and cost is None:
        raise click.UsageError("give --tokens, --cost or both")
    sent = await backend.raise_budget(job_id, tokens, cost, by)
    if as_json:
        render.print_json(render.signal_json(sent))
        return
    job = await backend.get_job(job_id)
    limits = ", ".join(
        f"{name} {value}"
        for name, value in (("tokens", tokens), ("cost", cost))
        if value is not None
    )
    if job.park_reason is ParkReason.BUDGET:
        click.echo(f"job {job_id}: budget raised to {limits}; it resumes")
    else:
        click.echo(f"job {job_id}: budget raised to {limits}; taken when its budget runs out")


def _decision_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--position", type=int, help="The request's position (default: pending)")(fn)
    fn = click.option("--by", default=who, show_default="$USER", help="Who decides.")(fn)
    reviewed = click.option(
        "--args-hash", help="The args hash you reviewed: refused unless it is the request's."
    )
    return reviewed(fn)


@main.command()
@click.argument("job_id")
@_decision_options
@click.option("--comment", help="Recorded with the decision.")
@json_option
@with_backend(writes=True)
async def approve(
    backend: Backend,
    job_id: str,
    position: int | None,
    by: str | None,
    args_hash: str | None,
    comment: str | None,
    as_json: bool,
) -> None:
    """Approve a job's pending approval request."""
    sent = await backend.decide(job_id, True, position, by, comment, args_hash)
    _decided(sent, f"approved; job {job_id} resumes", as_json)


@main.command()
@click.argument("job_id")
@_decision_options
@click.option("--reason", help="Why (the agent sees it).")
@json_option
@with_backend(writes=True)
async def reject(
    backend: Backend,
    job_id: str,
    position: int | None,
    by: str | None,
    args_hash: str | None,
    reason: str | None,
    as_json: bool,
) -> None:
    """Reject a job's pending approval request; the agent sees ApprovalRejected."""
    sent = await backend.decide(job_id, False, position, by, reason, args_hash)
    _decided(sent, f"rejected; job {job_id} resumes", as_json)


def _decided(sent: Signal, text: str, as_json: bool) -> None:
    """The decision as sent: the signal that carries it (--json), else a line."""
    if as_json:
        render.print_json(render.signal_json(sent))
    else:
        click.echo(text)


def _control_command(action: str, doc: str) -> None:
    @main.command(name=action, help=doc)
    @click.argument("job_id")
    @json_option
    @with_backend(writes=True)
    async def command(backend: Backend, job_id: str, as_json: bool) -> None:
        job = await backend.control(action, job_id)
        if as_json:
            render.print_json(render.job_json(job))
        else:
            click.echo(_control_outcome(action, job))


def _control_outcome(action: str, job: Job) -> str:
    """What a control action did, in words: a flag is not an outcome."""
    if job.status.terminal:
        return f"job {job.id} {job.status}"
    if job.control is not None:
        when = (
            "at its next durable operation"
            if job.status is JobStatus.RUNNING
            else "when a worker picks it up (it runs its compensations first)"
            if job.control is Control.CANCEL
            else "when a worker picks it up"
        )
        return f"job {job.id}: {job.control.value} requested; it takes effect {when}"
    if job.status is JobStatus.PARKED:
        return f"job {job.id} is parked ({job.park_reason})"
    return f"job {job.id} is {job.status}: {'resumed' if action == 'resume' else action}"


_control_command("cancel", "Cancel a job (and its children); compensations run.")
_control_command("pause", "Park a job at its next durable operation.")
_control_command("resume", "Resume a paused job.")


@main.group()
def approvals() -> None:
    """Approval requests waiting for a person."""


@approvals.command("list")
@click.option("--limit", default=100, show_default=True)
@json_option
@with_backend()
async def approvals_list(backend: Backend, limit: int, as_json: bool) -> None:
    """Jobs parked for an approval, oldest first, with what to approve."""
    rows = [
        {
            "job_id": a.job_id,
            "agent": a.agent,
            "name": a.name,
            "position": a.position,
            "args_hash": a.args_hash,
            "payload": a.request.get("payload"),
            "since": render.iso(a.since),
        }
        for a in await backend.approvals(limit)
    ]
    if as_json:
        render.print_json(rows)
        return
    if not rows:
        click.echo("no approval requests are waiting")
    for row in rows:
        payload = json.dumps(row["payload"], ensure_ascii=False)
        click.echo(
            f"{row['job_id']}  {row['agent']}  {row['name']} (position {row['position']}, "
            f"since {row['since']})\n    args hash {row['args_hash']}\n    {payload}"
        )
        click.echo(f"    aetheris approve {row['job_id']} --args-hash {row['args_hash']}")


@main.group()
def effects() -> None:
    """The effects ledger: list and resolve in-doubt effects."""


@effects.command("list")
@click.option("--in-doubt", is_flag=True, help="Only effects that need an operator.")
@click.option("--job", "job_id", help="Only this job's effects.")
@click.option("--wide", is_flag=True, help="Show every column in full, whatever the width.")
@json_option
@with_backend()
async def effects_list(
    backend: Backend, in_doubt: bool, job_id: str | None, wide: bool, as_json: bool
) -> None:
    """List ledger rows."""
    rows = await backend.effects(job_id, in_doubt)
    if as_json:
        render.print_json([render.effect_json(e) for e in rows])
    else:
        render.show(render.effects_table(rows, wide=wide))
        click.echo(backend.where)


@effects.command("resolve")
@click.argument("job_id")
@click.argument("position", type=int)
@click.option(
    "--committed", "committed_json", metavar="JSON", help="It happened; this is its result."
)
@click.option("--not-executed", is_flag=True, help="It did not happen; allow one dispatch.")
@click.option("--fail", is_flag=True, help="Record it as failed; the agent sees ToolFailed.")
@click.option("--reason", help="Why (recorded in the journal).")
@click.option("--by", default=who, show_default="$USER", help="Who resolves it.")
@json_option
@with_backend(writes=True)
async def effects_resolve(
    backend: Backend,
    job_id: str,
    position: int,
    committed_json: str | None,
    not_executed: bool,
    fail: bool,
    reason: str | None,
    by: str,
    as_json: bool,
) -> None:
    """Resolve the in-doubt effect at POSITION of JOB_ID; the job resumes."""
    if sum((committed_json is not None, not_executed, fail)) != 1:
        raise click.UsageError("give exactly one of --committed JSON, --not-executed, --fail")
    result = parse_json(committed_json, "--committed") if committed_json is not None else None
    job = await backend.resolve_effect(
        job_id,
        position,
        committed=committed_json is not None,
        result=result,
        not_executed=not_executed,
        fail=fail,
        reason=reason,
        by=by,
    )
    if as_json:
        render.print_json(render.job_json(job))
    else:
        click.echo(f"job {job.id} is {job.status} again")


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@click.option("--check", is_flag=True, help="Only check; exit 1 if a migration is pending.")
@json_option
@database_option
@pass_env
def migrate(env: Env, check: bool, as_json: bool) -> None:
    """Apply pending migrations (or check for them)."""
    url = env.url
    if url.split(":", 1)[0].lower() == "memory":
        raise click.ClickException(MEMORY_REFUSED)

    def say(current: int | None, latest: int | None, text: str) -> None:
        if as_json:
            up = current is not None and current == latest
            render.print_json(
                {"database": url, "schema": current, "latest": latest, "up_to_date": up}
            )
        else:
            click.echo(f"{url}: {text}")

    async def main() -> None:
        if check and url.startswith("sqlite:") and not sqlite_path(url)[0].exists():
            say(None, None, "no database file: migration pending")
            sys.exit(1)
        store = create_store(url)
        await store.open(migrate=not check)
        try:
            state = await store.schema()
        finally:
            await store.close()
        if check and not state.up_to_date:
            say(
                state.current,
                state.latest,
                f"schema {state.current}, latest {state.latest}: migration pending",
            )
            sys.exit(1)
        say(state.current, state.latest, f"schema version {state.current} (latest {state.latest})")

    run(main())
