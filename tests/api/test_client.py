"""``aetheris.Client`` (and ``SyncClient``) against the API served in-process: every verb
answers with the App's own models, every refusal is the App's own error, and the event
stream resumes where a broken connection left it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import aetheris
from aetheris import Client, Job, JobStatus
from aetheris.api import create_api
from aetheris.cli import render
from aetheris.journal import EventType
from aetheris.testing import running_worker, simulate_crash
from tests.api.conftest import Api


@pytest.fixture
def client_of(api: Api) -> Callable[..., Client]:
    transport = httpx.ASGITransport(create_api(api.app, poll_interval=0.02))

    def make(role: str = "admin", tenant: str = "acme", **options: Any) -> Client:
        key = api.tokens[(tenant, role)]
        return Client("http://aetheris", key, transport=transport, poll_interval=0.02, **options)

    return make


@pytest.fixture
async def client(client_of: Callable[..., Client]) -> AsyncIterator[Client]:
    async with client_of() as remote:
        yield remote


async def until(client: Client, job_id: str, *statuses: str, timeout: float = 10) -> Job:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (job := await client.get_job(job_id)).status not in statuses:
        assert loop.time() < deadline, job
        await asyncio.sleep(0.02)
    return job


async def test_start_wait_and_read_as_the_app_does(api: Api, client: Client) -> None:
    handle = await client.start(
        "quick", {"n": 21}, idempotency_key="k1", queue="default", priority=3, budget={"tokens": 9}
    )
    again = await client.start("quick", {"n": 21}, idempotency_key="k1")
    assert again.job_id == handle.job_id
    async with running_worker(api.app):
        assert await handle.result(timeout=10) == 42
    remote = await client.get_job(handle.job_id)
    local = await api.app.get_job(handle.job_id)
    assert isinstance(remote, aetheris.Job)
    # Every field; times travel to the millisecond.
    assert render.job_json(remote) == render.job_json(local)
    assert (remote.tenant, remote.head_hash, remote.recoveries) == (
        local.tenant, local.head_hash, local.recoveries,
    )  # fmt: skip
    listed = await client.list_jobs(agent="quick", status="succeeded")
    assert [j.id for j in listed] == [handle.job_id]
    assert remote.priority == 3
    events = await client.events(handle.job_id)
    stored = await (await api.app.open_store()).events(handle.job_id)
    assert [(e.seq, e.type, e.hash, e.data) for e in events] == [
        (e.seq, e.type, e.hash, e.data) for e in stored
    ]
    assert [e.seq for e in await client.events(handle.job_id, after=2)] == [
        e.seq for e in stored[3:]
    ]
    report = await client.verify(handle.job_id)
    assert report.ok and report.events == len(stored)
    bundle = await client.export(handle.job_id)
    assert bundle["manifest"]["events"] == len(stored)
    assert (await client.diff(handle.job_id, handle.job_id))["same"] is True
    with pytest.raises(aetheris.JobNotFound, match="no-such"):
        await client.diff(handle.job_id, "no-such")
    agents = {a.name: a for a in await client.agents()}
    assert set(agents) == {"waiter", "guarded", "refund", "busy", "quick"}


async def test_list_jobs_pages_through_the_cursor(api: Api, client: Client) -> None:
    started = [(await client.start("waiter", {"label": str(i)})).job_id for i in range(7)]
    client_limit = await client.list_jobs(limit=5)
    assert [j.id for j in client_limit] == started[::-1][:5]
    import aetheris.client.remote as remote

    small, remote.PAGE = remote.PAGE, 2
    try:
        assert [j.id for j in await client.list_jobs(limit=100)] == started[::-1]
    finally:
        remote.PAGE = small
    assert await client.list_jobs(status=JobStatus.SUCCEEDED) == []


async def test_signal_control_and_budget(api: Api, client: Client) -> None:
    job_id = (await client.start("waiter", {"label": "s"})).job_id
    raised = await client.raise_budget(job_id, tokens=100)
    assert isinstance(raised, aetheris.Signal) and raised.payload == {"tokens": 100}
    paused = await client.pause(job_id)
    assert paused.park_reason is aetheris.ParkReason.PAUSED
    resumed = await client.resume(job_id)
    assert resumed.status is JobStatus.PENDING
    async with running_worker(api.app):
        await until(client, job_id, "parked")
        assert await client.waiting_for(job_id) == await api.app.waiting_for(job_id) == "go"
        sent = await client.signal(job_id, "go", {"ok": 1}, signal_id="once")
        twice = await client.signal(job_id, "go", {"ok": 1}, signal_id="once")
        assert sent.seq == twice.seq and sent.payload == {"ok": 1}
        key_id = api.tokens[("acme", "admin")].split("_")[1]
        assert sent.sender == f"key:{key_id} (admin)"
        job = await until(client, job_id, "succeeded")
    assert job.result == {"label": "s", "got": {"ok": 1}}
    other = (await client.start("waiter")).job_id
    cancelled = await client.cancel(other)
    assert cancelled.status is JobStatus.CANCELLED
    with pytest.raises(aetheris.Conflict):
        await client.cancel(other)
    with pytest.raises(aetheris.InvalidInput):
        await client.raise_budget(other)


async def test_approvals_are_listed_and_decided(api: Api, client_of: Callable[..., Client]) -> None:
    async with client_of("operator") as operator, client_of("approver") as approver:
        paid = (await operator.start("guarded", {"amount": 7})).job_id
        refused = (await operator.start("guarded", {"amount": 9})).job_id
        async with running_worker(api.app):
            await until(operator, paid, "parked")
            await until(operator, refused, "parked")
            pending = await approver.approvals()
            assert [p.job_id for p in pending] == [paid, refused]
            first = pending[0]
            assert first.name == "tool:pay" and first.args_hash and first.since
            with pytest.raises(aetheris.Conflict):
                await approver.approve(paid, args_hash="0" * 64)
            with pytest.raises(aetheris.PermissionDenied) as denied:
                await operator.approve(paid, args_hash=first.args_hash)
            assert denied.value.role == "operator" and denied.value.action == "decide"
            await approver.approve(paid, args_hash=first.args_hash, comment="fine")
            await approver.reject(refused, reason="too much")
            assert await operator.handle(paid).result(timeout=10) == "paid 7"
            with pytest.raises(aetheris.JobFailed):
                await operator.handle(refused).result(timeout=10)


async def test_an_in_doubt_effect_is_listed_and_resolved(api: Api, client: Client) -> None:
    job_id = (await client.start("refund", {"amount": 3})).job_id
    store = await api.app.open_store()
    with simulate_crash("after_intent:charge"):
        async with running_worker(api.app):
            for _ in range(1000):
                if await store.effects(job_id=job_id):
                    break
                await asyncio.sleep(0.01)
    async with running_worker(api.app):
        await until(client, job_id, "parked")
    [effect] = await client.effects(state="in_doubt")
    assert isinstance(effect, aetheris.store.port.Effect)
    assert render.effect_json(effect) == render.effect_json((await store.effects(job_id=job_id))[0])
    assert await client.effects(job_id=job_id) == [effect]
    with pytest.raises(aetheris.InvalidInput):
        await client.resolve_effect(job_id, effect.position)
    job = await client.resolve_effect(
        job_id, effect.position, committed=True, result="charged elsewhere"
    )
    assert job.status is not JobStatus.PARKED
    with pytest.raises(aetheris.Conflict):
        await client.resolve_effect(job_id, effect.position, not_executed=True)


async def test_errors_are_the_apps_own(
    api: Api, client: Client, client_of: Callable[..., Client]
) -> None:
    with pytest.raises(aetheris.JobNotFound) as missing:
        await client.get_job("nope")
    assert missing.value.job_id == "nope"
    with pytest.raises(aetheris.UnknownAgent) as unknown:
        await client.start("nobody")
    assert unknown.value.name == "nobody" and "known agents" in str(unknown.value)
    with pytest.raises(aetheris.InvalidInput, match="n"):
        await client.start("quick", {"n": "many"})
    await client.start("waiter", {"label": "a"}, idempotency_key="same")
    with pytest.raises(aetheris.IdempotencyConflict):
        await client.start("waiter", {"label": "b"}, idempotency_key="same")
    theirs = (await client_of("admin", "beta").start("waiter")).job_id
    for call in (client.get_job, client.cancel, client.events, client.verify, client.export):
        with pytest.raises(aetheris.JobNotFound):
            await call(theirs)  # another tenant's job: as if it did not exist
    async with client_of("viewer") as viewer:
        with pytest.raises(aetheris.PermissionDenied, match="may not start"):
            await viewer.start("waiter")
    transport = httpx.ASGITransport(create_api(api.app))
    async with Client("http://aetheris", "ak_wrong_key", transport=transport) as bad:
        with pytest.raises(aetheris.AuthError, match="not valid") as refused:
            await bad.list_jobs()
        assert not isinstance(refused.value, aetheris.PermissionDenied)
    async with Client("http://127.0.0.1:9", "k", timeout=2) as nowhere:
        with pytest.raises(aetheris.ServerError, match="cannot reach"):
            await nowhere.agents()


async def test_the_stream_follows_a_job_live_and_resumes(api: Api, client: Client) -> None:
    job_id = (await client.start("quick", {"n": 1})).job_id
    async with running_worker(api.app):
        seen = [e async for e in client.stream(job_id)]
    assert seen[-1].type is EventType.JOB_SUCCEEDED
    assert [e.seq for e in seen] == list(range(len(seen)))
    tail = [e.seq async for e in client.stream(job_id, last_event_id=2)]
    assert tail == [e.seq for e in seen[3:]]


class Breaking(httpx.AsyncBaseTransport):
    """Cuts the first event stream after two frames, as a dropped connection would."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.resumed_from: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/stream"):
            return response
        self.resumed_from.append(request.headers.get("last-event-id"))
        if len(self.resumed_from) > 1:
            return response
        body = await response.aread()
        frames = body.split(b"\n\n")

        async def cut() -> AsyncIterator[bytes]:
            for frame in frames[:3]:  # the retry: line and two events
                yield frame + b"\n\n"
            raise httpx.ReadError("connection reset")

        return httpx.Response(response.status_code, headers=response.headers, content=cut())


async def test_a_broken_stream_resumes_from_the_last_event_seen(api: Api) -> None:
    job_id = await api.start("quick", {"n": 5})
    async with running_worker(api.app):
        await api.app.handle(job_id).result(timeout=10)
    breaking = Breaking(httpx.ASGITransport(create_api(api.app, poll_interval=0.02)))
    async with Client("http://aetheris", api.tokens[("acme", "viewer")], transport=breaking) as c:
        seqs = [e.seq async for e in c.stream(job_id)]
    stored = await (await api.app.open_store()).events(job_id)
    assert seqs == [e.seq for e in stored]  # each event once, across the break
    assert breaking.resumed_from == ["-1", "1"]


def test_sync_client_over_asgi(api: Api) -> None:
    transport = httpx.ASGITransport(create_api(api.app, poll_interval=0.02))
    key = api.tokens[("acme", "operator")]
    with aetheris.SyncClient("http://aetheris", key, transport=transport) as sync:
        handle = sync.start("waiter", {"label": "z"})
        assert sync.get_job(handle.job_id).status is JobStatus.PENDING
        assert [j.id for j in sync.list_jobs()] == [handle.job_id]
        sync.signal(handle.job_id, "go", 1)
        assert sync.cancel(handle.job_id).status is JobStatus.CANCELLED
        assert [e.type for e in sync.stream(handle.job_id)][-1] is EventType.JOB_CANCELLED
        assert sync.verify(handle.job_id).ok
        with pytest.raises(aetheris.JobFailed):
            handle.result(timeout=5)
        with pytest.raises(aetheris.JobNotFound):
            sync.get_job("missing")
