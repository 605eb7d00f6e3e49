"""``aetheris db prune``: delete ended jobs older than an age, by hand (workers of an App with a
retention do it themselves; see :mod:`aetheris.retention`)."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.table import Table

from aetheris.anchor import signing_key_from_env
from aetheris.cli import render
from aetheris.cli.actions import db
from aetheris.cli.base import MEMORY_REFUSED, Env, database_option, json_option, pass_env, run
from aetheris.errors import ConfigurationError
from aetheris.pruner import Pass, prune
from aetheris.retention import FOREVER, parse_age, show_age
from aetheris.store import create_store
from aetheris.store.port import Store
from aetheris.store.pruning import TABLES, Pruned
from aetheris.store.sqlite import sqlite_path


def _age(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        age = parse_age(value, "--older-than")
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc).removeprefix("--older-than: ")) from None
    if age == FOREVER:
        raise click.BadParameter(f"{value!r} keeps every job: there is nothing to prune")
    return age


@db.command(name="prune")
@click.option(
    "--older-than",
    metavar="AGE",
    callback=_age,
    help="Delete jobs that ended longer ago than AGE: 30d, 12h, 90m, 1d12h (s m h d w). "
    "Default: [retention] older_than in aetheris.toml.",
)
@click.option("--agent", help="Only this agent's jobs.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--batch",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Jobs deleted per transaction (each batch locks only its own jobs).",
)
@click.option(
    "--pause",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait between batches, to spare a busy database.",
)
@json_option
@database_option
@pass_env
def prune_command(
    env: Env,
    older_than: float | None,
    agent: str | None,
    dry_run: bool,
    batch: int,
    pause: float,
    as_json: bool,
) -> None:
    """Delete ended jobs (succeeded, failed, cancelled, compensated) that ended longer ago than
    --older-than, with their events, ledger, signals, blobs and webhook deliveries, a batch at
    a time. Jobs pending, running or parked are never touched, whatever their age. Each pruned
    job leaves a tombstone, so that `aetheris verify --all --witness FILE` tells a prune from a
    deletion."""
    if older_than is None:
        raise click.UsageError(
            "give --older-than AGE (e.g. 30d), or [retention] older_than in aetheris.toml"
        )
    url = env.url
    if url.split(":", 1)[0].lower() == "memory":
        raise click.ClickException(MEMORY_REFUSED)
    if url.startswith("sqlite:") and not sqlite_path(url)[0].exists():
        raise click.ClickException(
            f"no Aetheris database at {sqlite_path(url)[0]}: nothing to prune"
        )
    step = Pass(older_than, agent=agent)
    now = time.time()

    def progress(total: Pruned) -> None:
        if not as_json:
            events = total.rows.get("events", 0)
            click.echo(f"pruned {total.jobs} jobs ({events} events) so far...", err=True)

    async def go() -> Pruned:
        store = create_store(url, signer=signing_key_from_env())
        await store.open(migrate=False)
        try:
            await _check_schema(store)
            return await prune(
                store, step, now=now, batch=batch, pause=pause, dry_run=dry_run,
                progress=progress,
            )  # fmt: skip
        finally:
            await store.close()

    total = run(go(), url)
    if as_json:
        render.print_json(_json(total, step, now, dry_run))
    else:
        _show(total, step, dry_run)


async def _check_schema(store: Store) -> None:
    state = await store.schema()
    if not state.up_to_date:
        raise click.ClickException(
            f"the database's schema is version {state.current}, this Aetheris needs "
            f"{state.latest}: run `aetheris db migrate` first"
        )


def _json(total: Pruned, step: Pass, now: float, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "older_than": show_age(step.older_than),
        "ended_before": render.iso(now - step.older_than),
        "agent": step.agent,
        "jobs": total.jobs,
        "rows": {t: total.rows.get(t, 0) for t in TABLES},
        "by_agent": dict(total.by_agent),
    }


def _show(total: Pruned, step: Pass, dry_run: bool) -> None:
    verb = "would delete" if dry_run else "deleted"
    head = f"{verb} {total.jobs} jobs of {step.describe()}"
    out = render.console()
    out.print(head + (" (dry run: nothing deleted)" if dry_run else ""))
    if not total.jobs:
        return
    rows = Table("table", "rows", title=None, show_edge=False)
    for table in TABLES:
        rows.add_row(table, str(total.rows.get(table, 0)))
    agents = Table("agent", "jobs", show_edge=False)
    for name, count in total.by_agent.items():
        agents.add_row(name, str(count))
    out.print(rows)
    out.print(agents)
    sys.stdout.flush()
