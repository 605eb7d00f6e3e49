"""The ``aetheris`` command: a thin shell over the public Python API.

Every command reads the database from ``--database-url`` or ``AETHERIS_DATABASE_URL``; every read
command has ``--json`` with a stable schema (see :mod:`aetheris.cli.render`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from aetheris.app import App, JobHandle
from aetheris.errors import AetherisError
from aetheris.journal import verify_chain
from aetheris.store import create_store, default_url
from aetheris.store.port import EffectState, Job, JobStatus
from aetheris.store.sqlite import sqlite_path

from . import render

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning Aetheris errors into a one-line message and exit code 1."""
    try:
        return asyncio.run(coro)
    except AetherisError as exc:
        raise click.ClickException(str(exc)) from None


def load_app(spec: str) -> App:
    """Import ``MODULE:ATTRIBUTE`` (the working directory is importable) and return the App."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"expected MODULE:APP, got {spec!r}", param_hint="--app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--app"
        ) from None
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise click.BadParameter(f"{spec!r} is not an aetheris.App", param_hint="--app")
    return app


def parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint=what) from None


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Output JSON.")(fn)


class Env:
    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url

    def app(self, spec: str | None = None) -> App:
        app = load_app(spec) if spec else App(self.database_url or default_url())
        if self.database_url:
            app.database_url = self.database_url
        return app


pass_env = click.make_pass_decorator(Env)


def with_app(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Give a command an opened App and close it afterwards."""

    @pass_env
    @functools.wraps(fn)
    def command(env: Env, *args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            app = env.app(kwargs.pop("app_spec", None))
            try:
                await fn(app, *args, **kwargs)
            finally:
                await app.close()

        run(main())

    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar="AETHERIS_DATABASE_URL",
    show_envvar=True,
    help="memory://, sqlite:///file.db or postgresql://… [default: sqlite:///.aetheris/aetheris.db]",
)
@click.version_option(package_name="aetheris")
@click.pass_context
def main(ctx: click.Context, database_url: str | None) -> None:
    """Aetheris: durable execution for AI agents."""
    ctx.obj = Env(database_url)


@main.command()
@click.option("--app", "app_spec", required=True, metavar="MOD:APP", help="The App to serve.")
@click.option(
    "--concurrency",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs run at once.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.5),
    help="Seconds a claim lasts without a heartbeat, at least 0.5 (default: the App's, 30).",
)
@click.option("--queue", "queues", multiple=True, help="Serve only these queues (repeatable).")
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds between claims when idle.",
)
@click.option(
    "--grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to finish what is in flight on SIGTERM or Ctrl-C (a second one: at once).",
)
@pass_env
def worker(
    env: Env,
    app_spec: str,
    concurrency: int,
    lease_ttl: float | None,
    queues: tuple[str, ...],
    poll_interval: float | None,
    grace: float,
) -> None:
    """Run jobs of an App until SIGTERM or Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app = env.app(app_spec)
    try:
        w = app.worker(
            concurrency=concurrency,
            queues=queues or None,
            lease_ttl=lease_ttl,
            poll_interval=poll_interval,
            grace=grace,
        )
    except AetherisError as exc:
        raise click.ClickException(str(exc)) from None

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.stop)
        try:
            await w.run()
        finally:
            await app.close()

    run(serve())


@main.command()
@click.argument("agent")
@click.option("--input", "input_json", default="{}", show_default=True, help="Input as JSON.")
@click.option("--idempotency-key", help="Starting twice with one key returns the same job.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", default=0, show_default=True)
@click.option("--wait", is_flag=True, help="Wait for the job to end and print its result.")
@click.option("--timeout", type=float, help="Seconds to wait with --wait.")
@click.option("--app", "app_spec", metavar="MOD:APP", help="Validate the input against this App.")
@json_option
@with_app
async def start(
    app: App,
    agent: str,
    input_json: str,
    idempotency_key: str | None,
    queue: str,
    priority: int,
    wait: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Start a job of AGENT."""
    data = parse_json(input_json, "--input")
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    handle = await app.start(
        agent, data, idempotency_key=idempotency_key, queue=queue, priority=priority
    )
    if not wait:
        job = await handle.job()
        if as_json:
            render.print_json(render.job_json(job))
        else:
            click.echo(job.id)
        return
    job = await _wait_outcome(handle, timeout)
    _print_outcome(job, as_json)
    if job.status is not JobStatus.SUCCEEDED:
        sys.exit(1 if job.status.terminal else 3)


async def _wait_outcome(handle: JobHandle, timeout: float | None) -> Job:
    """Wait until the job ends or parks (a parked job needs someone: say so and return)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = await handle.job()
        if job.status.terminal or job.status is JobStatus.PARKED:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise click.ClickException(f"job {job.id} is still {job.status} after {timeout}s")
        await asyncio.sleep(0.05)


def _print_outcome(job: Job, as_json: bool) -> None:
    if as_json:
        render.print_json(render.job_json(job))
    elif job.status is JobStatus.SUCCEEDED:
        click.echo(json.dumps(job.result, ensure_ascii=False))
    elif job.status is JobStatus.PARKED:
        detail = job.park_detail or {}
        message = detail.get("message") or detail.get("diff") or json.dumps(detail)
        click.echo(f"job {job.id} parked ({job.park_reason}): {message}", err=True)
    else:
        error = job.error or {}
        click.echo(
            f"job {job.id} {job.status}: {error.get('type')}: {error.get('message')}", err=True
        )


@main.group()
def jobs() -> None:
    """List and inspect jobs."""


@jobs.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]))
@click.option("--limit", default=50, show_default=True)
@click.option("--wide", is_flag=True, help="Show every column in full, whatever the width.")
@json_option
@with_app
async def jobs_list(app: App, status: str | None, limit: int, wide: bool, as_json: bool) -> None:
    """List jobs, newest first."""
    found = await app.list_jobs(status=JobStatus(status) if status else None, limit=limit)
    if as_json:
        render.print_json([render.job_json(j) for j in found])
    else:
        render.show(render.jobs_table(found, wide=wide))


@jobs.command("show")
@click.argument("job_id")
@json_option
@with_app
async def jobs_show(app: App, job_id: str, as_json: bool) -> None:
    """Show one job."""
    job = await app.get_job(job_id)
    view = render.job_json(job)
    if as_json:
        render.print_json(view)
        return
    render.console().print(render.job_details(job))


@main.command()
@click.argument("job_id")
@click.option("--wide", is_flag=True, help="Show every column in full, whatever the width.")
@json_option
@with_app
async def trace(app: App, job_id: str, wide: bool, as_json: bool) -> None:
    """The journal of a job as a table of steps."""
    job = await app.get_job(job_id)
    events = await (await app.open_store()).events(job_id)
    if as_json:
        render.print_json(
            {"job": render.job_json(job), "events": [render.event_json(e) for e in events]}
        )
    else:
        render.show(render.trace_table(job, events, wide=wide))


@main.command()
@click.argument("job_id")
@json_option
@with_app
async def verify(app: App, job_id: str, as_json: bool) -> None:
    """Recompute a job's hash chain over the stored bytes; exit 1 on any mismatch."""
    job = await app.get_job(job_id)
    events = await (await app.open_store()).events(job_id)
    report = verify_chain(job_id, events)
    if report.ok and report.head != job.head_hash:
        report = type(report)(
            False, report.events, report.head, "the job's head hash does not match the last event"
        )
    if as_json:
        render.print_json(
            {
                "job_id": job_id,
                "ok": report.ok,
                "events": report.events,
                "head": report.head,
                "problem": report.problem,
                "seq": report.seq,
            }
        )
    elif report.ok:
        click.echo(f"ok: {report.events} events, head {report.head}")
    else:
        click.echo(f"BROKEN at seq {report.seq}: {report.problem}", err=True)
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("job_id")
@click.option("--app", "app_spec", required=True, metavar="MOD:APP", help="The code to replay.")
@json_option
@with_app
async def replay(app: App, job_id: str, as_json: bool) -> None:
    """Replay a job's journal against the code, executing nothing; exit 1 on divergence."""
    from aetheris.replay import replay as replay_job

    report = await replay_job(app, job_id)
    if as_json:
        render.print_json(dataclasses.asdict(report))
    else:
        click.echo(f"{report.outcome}: {report.operations} recorded operations")
        if report.diff:
            click.echo(report.diff)
        if report.outcome == "different_end":
            click.echo(f"recorded: {json.dumps(report.recorded_end)}")
            click.echo(f"replayed: {json.dumps(report.replayed_end)}")
    if not report.ok:
        sys.exit(1)


@main.command()
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
@with_app
async def export(app: App, job_id: str, output: str) -> None:
    """Write a job's journal, ledger and manifest as a JSON bundle."""
    from aetheris.bundle import export_bundle

    doc = await export_bundle(await app.open_store(), job_id)
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    await asyncio.to_thread(Path(output).write_text, text, "utf-8")
    click.echo(
        f"wrote {output}: {doc['manifest']['events']} events, head {doc['manifest']['head']}"
    )


@main.command(name="signal")
@click.argument("job_id")
@click.argument("name")
@click.option("--data", "data_json", default="null", show_default=True, help="Payload as JSON.")
@click.option("--signal-id", help="Sending twice with one id delivers once.")
@click.option("--by", default=lambda: os.environ.get("USER"), show_default="$USER")
@json_option
@with_app
async def send_signal(
    app: App,
    job_id: str,
    name: str,
    data_json: str,
    signal_id: str | None,
    by: str | None,
    as_json: bool,
) -> None:
    """Send signal NAME to a job; a job waiting for it resumes."""
    sent = await app.signal(
        job_id, name, parse_json(data_json, "--data"), signal_id=signal_id, sender=by
    )
    if as_json:
        render.print_json(render.signal_json(sent))
    else:
        click.echo(f"signal {name!r} (#{sent.seq}, id {sent.signal_id}) is in job {job_id}'s inbox")


def _decision_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--position", type=int, help="The request's position (default: pending)")(fn)
    fn = click.option("--by", default=lambda: os.environ.get("USER"), show_default="$USER")(fn)
    reviewed = click.option("--args-hash", help="The args hash you reviewed (refused if changed).")
    return reviewed(fn)


@main.command()
@click.argument("job_id")
@_decision_options
@click.option("--comment", help="Recorded with the decision.")
@with_app
async def approve(
    app: App,
    job_id: str,
    position: int | None,
    by: str | None,
    args_hash: str | None,
    comment: str | None,
) -> None:
    """Approve a job's pending approval request."""
    await app.approve(job_id, position=position, by=by, comment=comment, args_hash=args_hash)
    click.echo(f"approved; job {job_id} resumes")


@main.command()
@click.argument("job_id")
@_decision_options
@click.option("--reason", help="Why (the agent sees it).")
@with_app
async def reject(
    app: App,
    job_id: str,
    position: int | None,
    by: str | None,
    args_hash: str | None,
    reason: str | None,
) -> None:
    """Reject a job's pending approval request; the agent sees ApprovalRejected."""
    await app.reject(job_id, position=position, by=by, reason=reason, args_hash=args_hash)
    click.echo(f"rejected; job {job_id} resumes")


def _control_command(action: str, doc: str) -> None:
    @main.command(name=action, help=doc)
    @click.argument("job_id")
    @json_option
    @with_app
    async def command(app: App, job_id: str, as_json: bool) -> None:
        job = await getattr(app, action)(job_id)
        if as_json:
            render.print_json(render.job_json(job))
        else:
            flag = f", {job.control} requested" if job.control else ""
            click.echo(f"job {job.id} is {job.status}{flag}")


_control_command("cancel", "Cancel a job (and its children); compensations run.")
_control_command("pause", "Park a job at its next durable operation.")
_control_command("resume", "Resume a paused job.")


@main.group()
def effects() -> None:
    """The effects ledger: list and resolve in-doubt effects."""


@effects.command("list")
@click.option("--in-doubt", is_flag=True, help="Only effects that need an operator.")
@click.option("--job", "job_id", help="Only this job's effects.")
@click.option("--wide", is_flag=True, help="Show every column in full, whatever the width.")
@json_option
@with_app
async def effects_list(
    app: App, in_doubt: bool, job_id: str | None, wide: bool, as_json: bool
) -> None:
    """List ledger rows."""
    store = await app.open_store()
    rows = await store.effects(job_id=job_id, states=[EffectState.IN_DOUBT] if in_doubt else None)
    if as_json:
        render.print_json([render.effect_json(e) for e in rows])
    else:
        render.show(render.effects_table(rows, wide=wide))


@effects.command("resolve")
@click.argument("job_id")
@click.argument("position", type=int)
@click.option(
    "--committed", "committed_json", metavar="JSON", help="It happened; this is its result."
)
@click.option("--not-executed", is_flag=True, help="It did not happen; allow one dispatch.")
@click.option("--fail", is_flag=True, help="Record it as failed; the agent sees ToolFailed.")
@click.option("--reason", help="Why (recorded in the journal).")
@click.option("--by", default=lambda: os.environ.get("USER", "operator"), show_default="$USER")
@json_option
@with_app
async def effects_resolve(
    app: App,
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
    job = await app.resolve_effect(
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
@pass_env
def migrate(env: Env, check: bool) -> None:
    """Apply pending migrations (or check for them)."""
    url = env.database_url or default_url()

    async def main() -> None:
        if check and url.startswith("sqlite:") and not sqlite_path(url)[0].exists():
            click.echo(f"{url}: no database file: migration pending")
            sys.exit(1)
        store = create_store(url)
        await store.open(migrate=False)
        try:
            state = await store.schema() if check else await store.migrate()
        finally:
            await store.close()
        if check and not state.up_to_date:
            click.echo(f"{url}: schema {state.current}, latest {state.latest}: migration pending")
            sys.exit(1)
        click.echo(f"{url}: schema version {state.current} (latest {state.latest})")

    run(main())
