"""Incoming webhooks end to end, on SQLite and PostgreSQL: a signed request, through the ASGI
app, wakes the job a worker parked on its key (also a worker process, killed while the job
waited); one that came first is kept for the job; a bad signature wakes nothing; one key, one
job; and the journal replays clean."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from aetheris import App, JobStatus, ParkReason
from aetheris.api import create_api
from aetheris.journal import EventType, verify_chain
from aetheris.signing import headers as signed
from aetheris.store.port import keyed_signal, signal_wake
from aetheris.testing import replay, running_worker
from tests.processes import lines, start_worker, stop

from .helpers import wait_for
from .hooks_app import SECRET, build

HERE = Path(__file__).parent


@asynccontextmanager
async def server(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(create_api(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as client:
        yield client


async def send(
    client: httpx.AsyncClient, order_id: str, amount: int, event: str, secret: str = SECRET
) -> httpx.Response:
    body = json.dumps(
        {"type": "payment.succeeded", "data": {"order_id": order_id, "amount": amount}}
    )
    headers = {**signed(secret, body.encode(), time.time()), "Aetheris-Event-Id": event}
    return await client.post("/v1/hooks/paid", content=body, headers=headers)


async def test_a_hook_wakes_the_job_parked_on_its_key_and_the_journal_replays(
    durable_url: str,
) -> None:
    app = build(durable_url)
    handle = await app.start("order", {"order_id": "o-1"})
    async with running_worker(app, poll_interval=0.01), server(app) as client:
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert job.park_reason is ParkReason.SIGNAL
        assert job.wake_on == signal_wake(keyed_signal("paid", "o-1"))
        assert (job.park_detail or {})["key"] == "o-1"
        answer = await send(client, "o-1", 42, "evt_1")
        assert answer.status_code == 202, answer.text
        assert answer.json() == {
            "signal_id": "evt_1",
            "delivered_to": handle.job_id,
            "created": True,
        }
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == {"reserved": "reserved o-1", "amount": 42}
    events = await (await app.open_store()).events(handle.job_id)
    [received] = [e.data for e in events if e.type is EventType.OP and e.data["kind"] == "signal"]
    assert (received["name"], received["key"], received["signal_id"]) == ("paid", "o-1", "evt_1")
    assert received["sender"] == "hook:paid"
    assert verify_chain(handle.job_id, events).ok
    report = await replay(app, handle.job_id)
    assert report.outcome == "matched" and report.executed == []
    # Code that waits on another key at that position is not the code that ran.
    changed = await replay(build(durable_url, key_suffix="-x"), handle.job_id)
    assert changed.outcome == "diverged" and "signal paid" in (changed.diff or "")
    await app.close()


async def test_a_hook_that_came_before_the_job_waited_is_not_lost(durable_url: str) -> None:
    app = build(durable_url)
    async with server(app) as client:
        early = await send(client, "o-2", 7, "evt_2")
        assert early.json() == {"signal_id": "evt_2", "delivered_to": None, "created": True}
        handle = await app.start("order", {"order_id": "o-2"})
        async with running_worker(app, poll_interval=0.01):
            job = await wait_for(app, handle.job_id)
        assert job.status is JobStatus.SUCCEEDED and job.result["amount"] == 7
        retried = await send(client, "o-2", 7, "evt_2")  # the provider retries: one signal
        assert retried.json() == {
            "signal_id": "evt_2",
            "delivered_to": handle.job_id,
            "created": False,
        }
    assert (await replay(app, handle.job_id)).outcome == "matched"
    await app.close()


async def test_a_bad_signature_wakes_nothing(durable_url: str) -> None:
    app = build(durable_url)
    handle = await app.start("order", {"order_id": "o-3"})
    async with running_worker(app, poll_interval=0.01), server(app) as client:
        await wait_for(app, handle.job_id, JobStatus.PARKED)
        forged = await send(client, "o-3", 1_000_000, "evt_3", secret="guessed")
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
        assert await (await app.open_store()).signals(handle.job_id) == []
        assert (await app.get_job(handle.job_id)).status is JobStatus.PARKED
        assert (await send(client, "o-3", 3, "evt_3")).json()["delivered_to"] == handle.job_id
        job = await wait_for(app, handle.job_id)
    assert job.result == {"reserved": "reserved o-3", "amount": 3}
    await app.close()


async def test_one_key_one_job_the_second_waiter_fails_clearly(durable_url: str) -> None:
    app = build(durable_url)
    first = await app.start("order", {"order_id": "o-4"})
    async with running_worker(app, poll_interval=0.01), server(app) as client:
        await wait_for(app, first.job_id, JobStatus.PARKED)
        second = await app.start("order", {"order_id": "o-4"})
        job = await wait_for(app, second.job_id)
        assert job.status is JobStatus.SUCCEEDED  # it caught SignalKeyTaken
        assert job.result == {"reserved": "reserved o-4", "taken_by": first.job_id}
        answer = await send(client, "o-4", 4, "evt_4")
        assert answer.json()["delivered_to"] == first.job_id
        assert (await wait_for(app, first.job_id)).result["amount"] == 4
    # The refusal is recorded where it happened: replaying it gives the same outcome.
    events = await (await app.open_store()).events(second.job_id)
    [refusal] = [e.data for e in events if e.type is EventType.OP and e.data["kind"] == "signal"]
    assert refusal["error"]["type"] == "SignalKeyTaken"
    assert (await replay(app, second.job_id)).outcome == "matched"
    await app.close()


async def test_a_hook_wakes_a_job_whose_worker_process_was_killed(
    durable_url: str, tmp_path: Path
) -> None:
    """The job parks in one worker process, which is killed; the hook arrives while no worker
    runs; another process finishes the job, and nothing before the wait runs again."""
    world = tmp_path / "world.log"
    env = {"HOOKS_WORLD": str(world)}
    app = build(durable_url)
    handle = await app.start("order", {"order_id": "o-5"})
    first = start_worker("hooks_app:app", durable_url, tmp_path, cwd=HERE, env=env)
    try:
        await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        async with server(app) as client:
            answer = await send(client, "o-5", 5, "evt_5")
        assert answer.json()["delivered_to"] == handle.job_id
        assert (await app.get_job(handle.job_id)).status is JobStatus.PENDING
        second = start_worker("hooks_app:app", durable_url, tmp_path, cwd=HERE, env=env)
        try:
            job = await wait_for(app, handle.job_id, timeout=30)
        finally:
            stop(second)
    finally:
        if first.poll() is None:
            first.kill()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == {"reserved": "reserved o-5", "amount": 5}
    assert lines(world) == ["reserve o-5"], "the tool before the wait ran again"
    await app.close()
