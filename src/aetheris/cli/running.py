"""Run agents: ``worker`` serves an App, ``start`` starts a job (and waits for it)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Any

import click

from aetheris import taskgraph
from aetheris.app import App
from aetheris.cli import observing, render
from aetheris.cli.backend import Backend, with_backend
from aetheris.cli.base import (
    EXIT_CODES,
    Env,
    database_option,
    json_option,
    main,
    parse_json,
    pass_env,
    run,
)
from aetheris.errors import AetherisError
from aetheris.metrics import Metrics
from aetheris.models import Budget
from aetheris.retention import Retention
from aetheris.store.port import Job, JobStatus
from aetheris.taskgraph import PLAN_AGENT


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
@click.option(
    "--on-new-code",
    type=click.Choice(["check", "refuse", "proceed"]),
    default="check",
    show_default=True,
    envvar="AETHERIS_ON_NEW_CODE",
    show_envvar=True,
    help="Jobs another version of their agent wrote: replay-check them first and hand back "
    "those that diverge (check), leave them to a worker running that version (refuse), "
    "or run them, parking on divergence (proceed).",
)
@click.option(
    "--pool-max",
    type=click.IntRange(min=1),
    help="PostgreSQL: connections the worker's pool may open (it also holds one listening "
    "session); default ?aetheris_pool_max=, else AETHERIS_PG_POOL_MAX, else 10.",
)
@click.option(
    "--retention",
    metavar="AGE",
    envvar="AETHERIS_RETENTION",
    show_envvar=True,
    help="Delete jobs that ended longer ago than AGE (30d, 12h, 90m...), a batch at a time; "
    "default: the App's retention, or [retention] older_than in aetheris.toml.",
)
@observing.log_format_option
@observing.worker_metrics_options
@database_option
@pass_env
def worker(
    env: Env,
    app_spec: str,
    concurrency: int,
    lease_ttl: float | None,
    queues: tuple[str, ...],
    poll_interval: float | None,
    grace: float,
    on_new_code: str,
    pool_max: int | None,
    retention: str | None,
    log_format: str,
    metrics_port: int | None,
    metrics_host: str,
    metrics_token: str | None,
) -> None:
    """Run jobs of an App until SIGTERM or Ctrl-C.

    Traces (OpenTelemetry, the otel extra) with AETHERIS_TRACING=1 (the global tracer
    provider), console or otlp."""
    observing.set_up(log_format)
    app = worker_app(env, app_spec, pool_max, retention)
    metrics = Metrics() if metrics_port is not None else None
    try:
        w = app.worker(
            concurrency=concurrency, queues=queues or None, lease_ttl=lease_ttl,
            poll_interval=poll_interval, grace=grace, observer=metrics, on_new_code=on_new_code,
        )  # fmt: skip
    except AetherisError as exc:
        raise click.ClickException(str(exc)) from None

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, w.stop)
        exporter = None
        try:
            if metrics is not None and metrics_port is not None:
                exporter = await observing.serve_metrics(
                    app, metrics, metrics_host, metrics_port, metrics_token
                )
            await w.run()
        finally:
            if exporter is not None:
                exporter.stop()
            await app.close()

    run(serve(), app.database_url)


def worker_app(env: Env, app_spec: str, pool_max: int | None, retention: str | None) -> App:
    """The worker's App: its PostgreSQL pool named and sized for a worker, its retention set."""
    app = env.app(app_spec)
    from aetheris.store.postgres_pooling import for_process  # psycopg: only when it serves

    app.database_url = for_process(app.database_url, "aetheris-worker", pool_max)
    if retention is not None:
        try:
            app.retention = Retention.of(retention)
        except AetherisError as exc:
            raise click.ClickException(str(exc)) from None
    return app


@main.command(epilog=EXIT_CODES)
@click.argument("agent", required=False)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False),
    help=f"Run this TaskGraph (JSON or YAML), checked first, with AGENT (default {PLAN_AGENT}; "
    "the App calls aetheris.taskgraph.enable_plans).",
)
@click.option(
    "--input",
    "input_json",
    default="{}",
    show_default=True,
    help="Input as a JSON object, @FILE to read it from a file, or - for standard input.",
)
@click.option("--idempotency-key", help="Starting twice with one key returns the same job.")
@click.option("--queue", default="default", show_default=True)
@click.option("--priority", default=0, show_default=True)
@click.option("--wait", is_flag=True, help="Wait for the job to end and print its result.")
@click.option("--timeout", type=float, help="Seconds to wait with --wait.")
@click.option(
    "--app",
    "app_spec",
    metavar="MOD:APP",
    help="Validate the input against this App before the job is created (without it, a "
    "missing or unknown field is refused by the schema a worker registered, and the worker "
    "checks the rest).",
)
@click.option(
    "--budget-tokens", type=click.IntRange(min=0), help="Tokens its model calls may spend."
)
@click.option(
    "--budget-cost", type=click.FloatRange(min=0), help="Dollars its model calls may spend."
)
@json_option
@with_backend(writes=True)
async def start(
    backend: Backend,
    agent: str | None,
    plan_file: str | None,
    input_json: str,
    idempotency_key: str | None,
    queue: str,
    priority: int,
    wait: bool,
    timeout: float | None,
    budget_tokens: int | None,
    budget_cost: float | None,
    as_json: bool,
) -> None:
    """Start a job of AGENT (or run a TaskGraph: --plan FILE)."""
    if plan_file is not None:
        agent, data = _plan_input(backend, agent, plan_file, input_json)
    elif agent is None:
        raise click.UsageError("say which AGENT to start (or give a TaskGraph with --plan FILE)")
    else:
        data = parse_json(input_json, "--input")
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    limits = None
    if budget_tokens is not None or budget_cost is not None:
        limits = Budget(budget_tokens, budget_cost)
    job = await backend.start(agent, data, idempotency_key, queue, priority, limits)
    warning = await backend.serving_warning(agent, queue)
    if warning is not None:
        click.echo(f"warning: {warning}", err=True)
    if not wait:
        if as_json:
            render.print_json(render.job_json(job))
        else:
            click.echo(job.id)
        return
    click.echo(f"job {job.id} started; waiting for it to end", err=True)
    job = await _wait_outcome(backend, job.id, timeout)
    _print_outcome(job, as_json)
    if job.status is not JobStatus.SUCCEEDED:
        sys.exit(1 if job.status.terminal else 3)


def _plan_input(
    backend: Backend, agent: str | None, plan_file: str, input_json: str
) -> tuple[str, dict[str, Any]]:
    """The job of a TaskGraph file: the plan checked (against the App's tools when the
    command has it), as the input ``{"plan": ...}`` of the plan agent."""
    if input_json != "{}":
        raise click.UsageError("--plan and --input cannot be given together")
    app = getattr(backend, "app", None)
    tools = getattr(app, "tools", None)
    try:
        graph = taskgraph.load(plan_file)
        graph = taskgraph.validate(graph, taskgraph.Catalog(tools) if tools else None)
    except taskgraph.PlanInvalid as exc:
        raise click.BadParameter(str(exc), param_hint="--plan") from None
    return agent or PLAN_AGENT, {"plan": graph.document()}


async def _wait_outcome(backend: Backend, job_id: str, timeout: float | None) -> Job:
    """Wait until the job ends or parks (a parked job needs someone: say so and return)."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    hinted = False
    while True:
        job = await backend.get_job(job_id)
        if job.status.terminal or job.status is JobStatus.PARKED:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            raise click.ClickException(f"job {job.id} is still {job.status} after {timeout}s")
        if not hinted and job.status is JobStatus.PENDING and time.monotonic() - started > 5:
            hinted = True
            warning = await backend.serving_warning(job.agent, job.queue)
            why = warning or "every worker that serves it is busy"
            click.echo(f"job {job.id} is still pending after 5 s: {why}", err=True)
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
