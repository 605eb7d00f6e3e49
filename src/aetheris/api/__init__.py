"""The HTTP API: an ASGI app (FastAPI) over an :class:`~aetheris.App`, under ``/v1``.

``create_api(app)`` makes it; ``aetheris server --app MOD:APP`` serves it with uvicorn (see
:mod:`aetheris.api.server`). It is a shell over the App facade: every verb is the App's own,
called on behalf of an API key (:mod:`aetheris.api.auth`), and every refusal is one error body
(:mod:`aetheris.api.errors`). The OpenAPI document is at ``/openapi.json``.
"""

from __future__ import annotations

from fastapi import FastAPI

from aetheris.api import errors, hooks, insight, jobs, operations, ui, webhooks
from aetheris.api import metrics as metrics_api
from aetheris.api.auth import ALLOWED, Action, Principal
from aetheris.api.bodies import LimitBody
from aetheris.api.errors import ApiError
from aetheris.api.schemas import ErrorBody
from aetheris.app import App
from aetheris.metrics import Metrics

__all__ = ["ALLOWED", "Action", "ApiError", "Principal", "body_limit", "create_api"]

BODY_MARGIN = 64 * 1024  # over the App's payload limit: the JSON around it, and whitespace


def body_limit(app: App) -> int:
    """The largest request body accepted: the App's payload limit plus a margin."""
    return app.max_payload_bytes + BODY_MARGIN


def create_api(
    app: App,
    *,
    auth: bool = True,
    poll_interval: float = 0.25,
    deliver_webhooks: bool = True,
    metrics_token: str | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """The ASGI app serving ``app`` over HTTP. ``auth=False`` accepts every request as a
    local admin of every tenant: for development on loopback only (the server refuses it
    elsewhere). ``poll_interval``: how often an event stream looks for new events.
    ``deliver_webhooks``: while served (from the ASGI lifespan's startup to its shutdown),
    POST the outbox's webhook deliveries. ``metrics_token``: the bearer token ``/metrics``
    wants (without it and with auth on, metrics are off); ``metrics``: counters of workers in
    this process to serve with the store's gauges (see :mod:`aetheris.api.metrics`)."""
    api = FastAPI(
        title="Aetheris",
        summary="Durable execution for AI agents: jobs, journals, approvals, effects.",
        version="1",
        responses={code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422)},
        lifespan=webhooks.delivering(app) if deliver_webhooks else None,
    )
    api.state.aetheris = app
    api.state.auth = auth
    api.state.poll_interval = poll_interval
    api.state.metrics_token = metrics_token
    api.state.metrics = metrics
    errors.install(api)
    api.include_router(jobs.router)
    api.include_router(operations.router)
    api.include_router(insight.router)
    api.include_router(webhooks.router)
    api.include_router(operations.health)
    api.include_router(metrics_api.router)
    api.include_router(hooks.router)
    api.include_router(ui.router)
    api.add_middleware(LimitBody, limit=body_limit(app))
    return api
