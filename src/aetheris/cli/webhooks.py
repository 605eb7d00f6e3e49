"""Outgoing webhooks: ``webhooks create|list|delete|deliveries``, on the database or through a
server (an admin key's), with the same output either way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from rich.text import Text

from aetheris.cli import render
from aetheris.cli.backend import Backend, with_backend
from aetheris.cli.base import json_option, main
from aetheris.models import DeliveryState, Webhook, WebhookDelivery, WebhookEvent

EVENTS = [e.value for e in WebhookEvent]
STATE_STYLE = {"delivered": "green", "pending": "yellow", "dead": "red"}


@main.group()
def webhooks() -> None:
    """Outgoing webhooks: POST job events to a URL, signed with a secret.

    Events: job.completed, job.failed, job.cancelled, job.compensated,
    job.approval_requested, effect.in_doubt. The server (`aetheris server`, `aetheris run`)
    delivers them, retrying until the receiver answers 2xx; receivers check each request with
    aetheris.webhooks.verify_signature and deduplicate on its Aetheris-Event-Id."""


def webhook_json(hook: Webhook, *, secret: bool = False) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": hook.id,
        "tenant": hook.tenant,
        "url": hook.url,
        "events": [e.value for e in hook.events],
        "active": hook.active,
        "created_at": render.iso(hook.created_at),
        "disabled_at": render.iso(hook.disabled_at),
    }
    if secret:
        doc["secret"] = hook.secret
    return doc


def delivery_json(row: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhook_id": row.webhook_id,
        "event_id": row.event_id,
        "event_type": row.event_type.value,
        "tenant": row.tenant,
        "job_id": row.job_id,
        "agent": row.agent,
        "job_status": row.job_status.value,
        "payload": row.payload,
        "state": row.state.value,
        "attempts": row.attempts,
        "next_at": render.iso(row.next_at),
        "last_status": row.last_status,
        "last_error": row.last_error,
        "delivered_at": render.iso(row.delivered_at),
        "created_at": render.iso(row.created_at),
        "log": [
            {
                "at": render.iso(a.at),
                "status": a.status,
                "error": a.error,
                "duration": a.duration,
                "retry_in": a.retry_in,
            }
            for a in row.log
        ],
    }


@webhooks.command("create")
@click.argument("endpoint", metavar="URL")  # not "url": the name of the server option
@click.option(
    "--event",
    "events",
    multiple=True,
    required=True,
    type=click.Choice(EVENTS),
    help="An event to send (repeat the option for more).",
)
@click.option(
    "--tenant",
    help="Whose jobs (on the database: default 'default'; through a server: the key's).",
)
@json_option
@with_backend(writes=True)
async def webhooks_create(
    backend: Backend, endpoint: str, events: Sequence[str], tenant: str | None, as_json: bool
) -> None:
    """Subscribe URL (http:// or https://) to events of a tenant's jobs; print the secret
    that signs every delivery, once."""
    hook = await backend.create_webhook(endpoint, events, tenant)
    if as_json:
        render.print_json(webhook_json(hook, secret=True))
        return
    click.echo(hook.secret)
    click.echo(
        f"webhook {hook.id}: {', '.join(e.value for e in hook.events)} of tenant "
        f"{hook.tenant} to {hook.url}. The secret above signs every delivery; this is the "
        "only time it is shown: keep it now.",
        err=True,
    )


@webhooks.command("list")
@click.option("--all", "everything", is_flag=True, help="Deleted subscriptions too.")
@click.option("--tenant", help="Only this tenant's.")
@json_option
@with_backend()
async def webhooks_list(
    backend: Backend, everything: bool, tenant: str | None, as_json: bool
) -> None:
    """Subscriptions, oldest first (never their secrets)."""
    found = await backend.webhooks(tenant, everything)
    if as_json:
        render.print_json([webhook_json(h) for h in found])
        return
    if not found:
        click.echo("no webhooks: `aetheris webhooks create URL --event job.completed` makes one")
    else:
        render.show(_webhooks_table(found))
    click.echo(backend.where)


@webhooks.command("delete")
@click.argument("webhook_id")
@json_option
@with_backend(writes=True)
async def webhooks_delete(backend: Backend, webhook_id: str, as_json: bool) -> None:
    """Delete a subscription: nothing more is sent to it; its deliveries stay listed."""
    hook = await backend.delete_webhook(webhook_id)
    if as_json:
        render.print_json(webhook_json(hook))
    else:
        click.echo(f"webhook {hook.id} deleted")


@webhooks.command("deliveries")
@click.argument("webhook_id", required=False)
@click.option("--state", type=click.Choice([s.value for s in DeliveryState]))
@click.option("--tenant", help="Only this tenant's.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@json_option
@with_backend()
async def webhooks_deliveries(
    backend: Backend,
    webhook_id: str | None,
    state: str | None,
    tenant: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Deliveries, newest first (of WEBHOOK_ID, or of every subscription); --json has
    every try."""
    wanted = DeliveryState(state) if state else None
    rows = await backend.deliveries(webhook_id, wanted, limit, tenant)
    if as_json:
        render.print_json([delivery_json(d) for d in rows])
        return
    render.show(_deliveries_table(rows))
    click.echo(backend.where)


def _webhooks_table(found: Sequence[Webhook]) -> render.View:
    events = [Text(", ".join(e.value for e in h.events)) for h in found]
    columns = [
        render.Column("id", [Text(h.id) for h in found]),
        render.Column("tenant", [Text(h.tenant) for h in found]),
        render.Column("events", events, fold=16, want=40),
        render.Column("url", [Text(h.url) for h in found], fold=20, want=60),
        render.Column(
            "state",
            [Text("active" if h.active else f"deleted {render.iso(h.disabled_at)}") for h in found],
            drop=1,
        ),
    ]
    return render.View(Text(f"{len(found)} webhook(s)"), [columns])


def _deliveries_table(rows: Sequence[WebhookDelivery]) -> render.View:
    def last(row: WebhookDelivery) -> str:
        if row.state is DeliveryState.DELIVERED:
            return f"{row.last_status} at {render.iso(row.delivered_at)}"
        said = row.last_error or ""
        due = f"next {render.iso(row.next_at)}" if row.state is DeliveryState.PENDING else ""
        return "; ".join(part for part in (said, due) if part)

    columns = [
        render.Column("id", [Text(str(d.id)) for d in rows], justify="right"),
        render.Column("event", [Text(d.event_type.value) for d in rows]),
        render.Column("job", [Text(d.job_id) for d in rows]),
        render.Column("state", [Text(d.state.value, STATE_STYLE[d.state.value]) for d in rows]),
        render.Column("tries", [Text(str(d.attempts)) for d in rows], justify="right"),
        render.Column("last", [Text(last(d)) for d in rows], fold=20, want=60),
        render.Column("webhook", [Text(d.webhook_id) for d in rows], drop=1),
    ]
    title = "1 delivery" if len(rows) == 1 else f"{len(rows)} deliveries"
    return render.View(Text(title), [columns])
