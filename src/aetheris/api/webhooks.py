"""Outgoing webhooks over HTTP: subscribe a URL to the tenant's job events, list and delete
subscriptions, read their deliveries; and the deliverer the server runs while it serves.

Every endpoint needs :attr:`~aetheris.api.auth.Action.WEBHOOKS` (admins only: a subscription
sends the tenant's job data to a URL of the caller's choosing). A key sees only its tenant's
subscriptions; another tenant's is a 404, worded as one that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query

from aetheris.api.auth import Action, Principal, require
from aetheris.api.errors import ApiError
from aetheris.api.jobs import Aetheris, Caller
from aetheris.api.schemas import NAME, CreateWebhook, DeliveryOut, WebhookCreated, WebhookOut
from aetheris.app import App
from aetheris.errors import AetherisError, WebhookNotFound
from aetheris.store.port import DeliveryState, Webhook
from aetheris.webhooks import Deliverer, create_webhook

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
WebhookId = Annotated[str, Path(pattern=NAME, description="The subscription's id.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many, newest first.")]
log = logging.getLogger("aetheris.api")


async def _visible(app: App, caller: Principal, webhook_id: str) -> Webhook:
    """The subscription, if it exists and is the caller's tenant's; else 404 either way."""
    hook = await (await app.open_store()).webhook(webhook_id)
    if hook is None or (caller.tenant is not None and hook.tenant != caller.tenant):
        raise WebhookNotFound(webhook_id)
    return hook


@router.post("", status_code=201, response_model=WebhookCreated)
async def create(body: CreateWebhook, app: Aetheris, caller: Caller) -> WebhookCreated:
    """Subscribe ``url`` to ``events`` of the tenant's jobs. The answer holds the secret
    that signs every delivery, this once."""
    require(caller, Action.WEBHOOKS)
    tenant = body.tenant or caller.home_tenant
    if caller.tenant is not None and tenant != caller.tenant:
        raise ApiError(
            403,
            "forbidden",
            f"a key of tenant {caller.tenant!r} may not subscribe to tenant {tenant!r}'s jobs",
        )
    store = await app.open_store()
    hook = await create_webhook(store, tenant, body.url, body.events, clock=app.clock)
    return WebhookCreated(**WebhookOut.of(hook).model_dump(), secret=hook.secret)


@router.get("", response_model=list[WebhookOut])
async def listing(
    app: Aetheris, caller: Caller, disabled: Annotated[bool, Query()] = False
) -> list[WebhookOut]:
    """The tenant's subscriptions, oldest first (``disabled``: the deleted ones too); never
    their secrets."""
    require(caller, Action.WEBHOOKS)
    store = await app.open_store()
    return [WebhookOut.of(h) for h in await store.webhooks(tenant=caller.tenant, disabled=disabled)]


@router.get("/deliveries", response_model=list[DeliveryOut])
async def all_deliveries(
    app: Aetheris, caller: Caller, state: DeliveryState | None = None, limit: Limit = 100
) -> list[DeliveryOut]:
    """The deliveries of every subscription of the tenant, newest first, with their log."""
    require(caller, Action.WEBHOOKS)
    store = await app.open_store()
    found = await store.deliveries(tenant=caller.tenant, state=state, limit=limit)
    return [DeliveryOut.of(d) for d in found]


@router.delete("/{webhook_id}", response_model=WebhookOut)
async def delete(webhook_id: WebhookId, app: Aetheris, caller: Caller) -> WebhookOut:
    """Delete a subscription: nothing more is sent to it (its pending deliveries end
    ``dead``); it and its deliveries stay readable."""
    require(caller, Action.WEBHOOKS)
    await _visible(app, caller, webhook_id)
    hook = await (await app.open_store()).disable_webhook(webhook_id)
    if hook is None:
        raise WebhookNotFound(webhook_id)
    return WebhookOut.of(hook)


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryOut])
async def deliveries(
    webhook_id: WebhookId,
    app: Aetheris,
    caller: Caller,
    state: DeliveryState | None = None,
    limit: Limit = 100,
) -> list[DeliveryOut]:
    """One subscription's deliveries, newest first, each with every try."""
    require(caller, Action.WEBHOOKS)
    await _visible(app, caller, webhook_id)
    store = await app.open_store()
    found = await store.deliveries(webhook_id=webhook_id, state=state, limit=limit)
    return [DeliveryOut.of(d) for d in found]


# -- the deliverer, while the server serves --------------------------------------------------

RETRY_OPEN = 5.0  # seconds between tries to reach a database that is down at start


def delivering(app: App) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that runs a :class:`~aetheris.webhooks.Deliverer` of ``app``'s
    database while the server serves (every server runs one: claims are exclusive)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_deliver(app), name="aetheris-webhooks")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan


async def _deliver(app: App) -> None:
    while True:
        try:
            store = await app.open_store()
            break
        except AetherisError as exc:
            log.warning("webhook deliveries wait for the database: %s", exc)
            await asyncio.sleep(RETRY_OPEN)
    async with Deliverer(store, clock=app.clock) as deliverer:
        await deliverer.run()
