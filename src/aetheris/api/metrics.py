"""``GET /metrics``: the Prometheus exposition of the server (:mod:`aetheris.metrics`).

The store's gauges (jobs by tenant and status, queue depth and age, effects by state) read at
each scrape, and, if the server was given one, the counters of a :class:`~aetheris.Metrics`
observing workers of this process.

Who may scrape: metrics are about the whole deployment (every tenant's counts, by tenant
name), not about one tenant's jobs, so an API key (which belongs to a tenant) does not open
them. With auth on, the server serves them only when it has a metrics token (``--metrics-token``
or ``AETHERIS_METRICS_TOKEN``), to a scraper that sends it as ``Authorization: Bearer TOKEN``
(Prometheus: ``authorization: {credentials: ...}`` in the scrape config); without one they are
off (404, saying how to turn them on). With auth off (``--no-auth``, loopback only) they are
open, like everything else. No label carries a job id.
"""

from __future__ import annotations

import contextlib
import hmac
import time

from fastapi import APIRouter, Request, Response

from aetheris.api.errors import ApiError
from aetheris.app import App
from aetheris.errors import AetherisError
from aetheris.metrics import Metrics, store_families
from aetheris.prometheus import CONTENT_TYPE, render
from aetheris.store.port import Summary

router = APIRouter(tags=["metrics"])


def _authorize(request: Request) -> None:
    state = request.app.state
    if not state.auth:
        return
    token: str | None = state.metrics_token
    if not token:
        raise ApiError(
            404,
            "not_found",
            "metrics are off: start the server with --metrics-token (or "
            "AETHERIS_METRICS_TOKEN) and scrape /metrics with that token as a bearer token",
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise ApiError(
            401, "unauthorized", "metrics need the metrics token: Authorization: Bearer TOKEN"
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The Prometheus text exposition (version 0.0.4)."""
    _authorize(request)
    app: App = request.app.state.aetheris
    summary: Summary | None = None
    with contextlib.suppress(AetherisError):  # aetheris_store_up says 0; the scrape answers
        summary = await (await app.open_store()).summary()
    observer: Metrics | None = request.app.state.metrics
    if observer is not None:
        text = observer.render(summary)
    else:
        text = render(store_families(summary, time.time()))
    return Response(text, media_type=CONTENT_TYPE)
