"""Outgoing webhooks over HTTP: subscriptions per tenant, clear refusals, the deliveries and
their log; and the server for real over a socket, delivering while it serves."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aetheris import Client, SyncClient
from aetheris.api import create_api
from aetheris.errors import InvalidInput, PermissionDenied, WebhookNotFound
from aetheris.keys import create_key
from aetheris.models import DeliveryState, WebhookEvent
from aetheris.webhooks import Deliverer, verify_signature
from tests.api.conftest import Api, build_app
from tests.webhooks_kit import receiver

SUBSCRIBE = {"url": "http://127.0.0.1:9/hook", "events": ["job.cancelled", "job.failed"]}


async def test_a_subscription_shows_its_secret_once(api: Api) -> None:
    made = await api.client.post("/v1/webhooks", json=SUBSCRIBE, headers=api.auth())
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 40
    assert hook["tenant"] == "acme" and hook["active"] is True
    assert hook["events"] == ["job.cancelled", "job.failed"]
    listed = (await api.client.get("/v1/webhooks", headers=api.auth())).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert (await api.client.get("/v1/webhooks", headers=api.auth("admin", "beta"))).json() == []
    gone = await api.client.delete(f"/v1/webhooks/{hook['id']}", headers=api.auth())
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert (await api.client.get("/v1/webhooks", headers=api.auth())).json() == []
    kept = await api.client.get("/v1/webhooks?disabled=true", headers=api.auth())
    assert [h["id"] for h in kept.json()] == [hook["id"]]


async def test_bad_subscriptions_are_refused_with_the_reason(api: Api) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({**SUBSCRIBE, "url": "ftp://example.com/x"}, "must be http:// or https://"),
        ({**SUBSCRIBE, "url": "http:///x"}, "has no host"),
        ({**SUBSCRIBE, "url": "http://h:99999/"}, "not a URL"),
        ({**SUBSCRIBE, "events": []}, "events"),
        ({**SUBSCRIBE, "events": ["job.done"]}, "events"),
        ({"url": SUBSCRIBE["url"]}, "events"),
        ({**SUBSCRIBE, "secret": "mine"}, "secret"),
    ]
    for body, problem in cases:
        answer = await api.client.post("/v1/webhooks", json=body, headers=api.auth())
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["code"] == "invalid_input"
        assert problem in answer.text, (body, answer.text)
    assert await (await api.app.open_store()).webhooks() == []


async def test_a_key_subscribes_only_its_own_tenant(api: Api) -> None:
    body = {**SUBSCRIBE, "tenant": "beta"}
    answer = await api.client.post("/v1/webhooks", json=body, headers=api.auth())
    assert answer.status_code == 403
    assert "tenant 'acme' may not subscribe to tenant 'beta'" in answer.text
    own = await api.client.post("/v1/webhooks", json={**body, "tenant": "acme"}, headers=api.auth())
    assert own.status_code == 201


async def test_deliveries_are_listed_with_every_try(api: Api) -> None:
    async with receiver([503, 200]) as site:
        body = {**SUBSCRIBE, "url": f"{site.url}/in"}
        hook = (await api.client.post("/v1/webhooks", json=body, headers=api.auth())).json()
        job = await api.start("waiter")
        await api.start("waiter", tenant="beta")
        cancelled = await api.client.post(f"/v1/jobs/{job}/cancel", headers=api.auth())
        assert cancelled.json()["status"] == "cancelled"
        path = f"/v1/webhooks/{hook['id']}/deliveries"
        [pending] = (await api.client.get(path, headers=api.auth())).json()
        assert pending["state"] == "pending" and pending["log"] == []
        assert pending["event_type"] == "job.cancelled" and pending["job_id"] == job
        assert pending["event_id"].startswith(f"{job}:")
        store = await api.app.open_store()
        async with Deliverer(store) as deliverer:
            assert await deliverer.deliver_due() == 1
        got = await site.next()
    [tried] = (await api.client.get(path, headers=api.auth())).json()
    assert tried["state"] == "pending" and tried["attempts"] == 1
    assert tried["last_status"] == 503 and tried["log"][0]["error"] == "HTTP 503: not today"
    assert 3.9 <= tried["log"][0]["retry_in"] <= 6.1
    assert json.loads(got.body)["id"] == pending["event_id"]
    everything = await api.client.get("/v1/webhooks/deliveries?state=pending", headers=api.auth())
    assert [d["id"] for d in everything.json()] == [tried["id"]]
    theirs = await api.client.get("/v1/webhooks/deliveries", headers=api.auth("admin", "beta"))
    assert theirs.json() == []


async def test_the_server_delivers_while_it_serves(tmp_path: Path) -> None:
    """Over a real socket: subscribe, start a job that a worker ends, and receive its signed
    event from the server's own deliverer."""
    app = build_app(f"sqlite:///{tmp_path / 'aetheris.db'}")
    _, token = await create_key(await app.open_store(), "admin", "acme")
    listening = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listening.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_api(app), log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    stop = asyncio.Event()
    working = asyncio.create_task(app.run_worker(concurrency=2, stop=stop))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with receiver() as site, httpx.AsyncClient(base_url=url, headers=headers) as http:
            body = {"url": f"{site.url}/done", "events": ["job.completed"]}
            hook = (await http.post("/v1/webhooks", json=body)).json()
            started = await http.post("/v1/jobs", json={"agent": "quick", "input": {"n": 21}})
            job = started.json()["id"]
            got = await site.next(timeout=20)
            h = got.headers
            assert verify_signature(
                hook["secret"], h["aetheris-timestamp"], got.body, h["aetheris-signature"]
            )
            doc = json.loads(got.body)
            assert doc["type"] == "job.completed"
            assert doc["job"] == {"id": job, "agent": "quick", "status": "succeeded"}
            # The receiver answered before the server recorded the try: read until it has.
            async with asyncio.timeout(10):
                while True:
                    rows = (await http.get(f"/v1/webhooks/{hook['id']}/deliveries")).json()
                    if rows[0]["state"] != "pending":
                        break
                    await asyncio.sleep(0.05)
            assert [r["state"] for r in rows] == ["delivered"]
            assert rows[0]["event_id"] == h["aetheris-event-id"]
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.gather(serving, working)
        await app.close()


async def test_the_client_has_the_webhook_verbs(api: Api) -> None:
    transport = httpx.ASGITransport(create_api(api.app))
    admin, viewer = api.tokens[("acme", "admin")], api.tokens[("acme", "viewer")]
    async with Client("http://aetheris", admin, transport=transport) as client:
        hook = await client.create_webhook("http://127.0.0.1:9/c", ["job.cancelled"])
        assert hook.secret.startswith("whsec_") and hook.events == (WebhookEvent.JOB_CANCELLED,)
        [listed] = await client.webhooks()
        assert listed.id == hook.id and listed.secret == ""
        job = await api.start("waiter")
        await client.cancel(job)
        [row] = await client.deliveries(hook.id)
        assert row.job_id == job and row.state is DeliveryState.PENDING
        assert await client.deliveries(state="delivered") == []
        assert (await client.delete_webhook(hook.id)).active is False
        with pytest.raises(WebhookNotFound):
            await client.delete_webhook("wh_missing")
        with pytest.raises(InvalidInput, match="http:// or https://"):
            await client.create_webhook("mailto:x@example.com", ["job.failed"])
        with pytest.raises(InvalidInput, match="events"):
            await client.create_webhook("http://127.0.0.1:9/c", ["job.done"])
    async with Client("http://aetheris", viewer, transport=transport) as client:
        with pytest.raises(PermissionDenied):
            await client.webhooks()


def test_the_sync_client_has_them_too(api: Api) -> None:
    transport = httpx.ASGITransport(create_api(api.app))
    with SyncClient("http://aetheris", api.tokens[("acme", "admin")], transport=transport) as sync:
        made = sync.create_webhook("https://example.com/s", [WebhookEvent.JOB_FAILED])
        assert [h.id for h in sync.webhooks()] == [made.id]
        assert sync.deliveries(made.id) == sync.deliveries() == []
        assert not sync.delete_webhook(made.id).active
        assert [h.id for h in sync.webhooks(disabled=True)] == [made.id]
