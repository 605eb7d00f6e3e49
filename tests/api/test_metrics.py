"""``GET /metrics`` on the API server: the store's gauges, to a scraper with the metrics token
(an API key does not open them), open with auth off, and never a job id."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from aetheris import App
from aetheris.api import create_api
from aetheris.metrics import Metrics
from aetheris.observe import WorkerEvent
from tests.api.conftest import Api, build_app


def value(text: str, line_start: str) -> float:
    [line] = [x for x in text.splitlines() if x.startswith(line_start)]
    return float(line.rsplit(" ", 1)[1])


@pytest.fixture
async def served() -> AsyncIterator[tuple[App, httpx.AsyncClient]]:
    """The conftest's App served with a metrics token and a worker's counters beside."""
    app = build_app()
    metrics = Metrics()
    metrics.worker_event(WorkerEvent("takeover", "w", 0.0))
    api = create_api(app, metrics_token="scrape-me", metrics=metrics)
    transport = httpx.ASGITransport(api)
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as client:
        yield app, client
    await app.close()


async def test_metrics_need_the_metrics_token(api: Api) -> None:
    """Without a token configured, metrics are off: no API key opens them."""
    off = await api.client.get("/metrics", headers=api.auth("admin", "acme"))
    assert off.status_code == 404
    assert "--metrics-token" in off.json()["error"]["message"]


async def test_a_scraper_with_the_token_reads_every_tenant_by_name(
    served: tuple[App, httpx.AsyncClient],
) -> None:
    app, client = served
    job = await app.start("waiter", {})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "scrape-me"}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"]["code"] == "unauthorized"
    ok = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = ok.text
    assert value(text, 'aetheris_jobs{tenant="default",status="pending"}') == 1
    assert value(text, "aetheris_queue_depth ") == 1
    assert value(text, 'aetheris_effects{state="in_doubt"}') == 0
    assert value(text, "aetheris_lease_takeovers_total ") == 1  # the worker's counters too
    assert job.job_id not in text


async def test_metrics_are_open_with_auth_off_and_list_no_job() -> None:
    app = build_app()
    handle = await app.start("waiter", {})
    transport = httpx.ASGITransport(create_api(app, auth=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as client:
        ok = await client.get("/metrics")
    await app.close()
    assert ok.status_code == 200
    assert value(ok.text, 'aetheris_jobs{tenant="default",status="pending"}') == 1
    assert "aetheris_claims_total" not in ok.text  # no worker here: the store's gauges only
    assert handle.job_id not in ok.text
