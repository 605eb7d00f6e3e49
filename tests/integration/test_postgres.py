"""PostgreSQL-specific behaviour: wake-ups by NOTIFY, queues, and a server that is not there."""

from __future__ import annotations

import asyncio
import time

import pytest

from aetheris import App, Context, JobStatus, StoreUnavailable
from aetheris.testing import running_worker

from .helpers import wait_for


def two_apps(url: str) -> tuple[App, App]:
    """A worker's App and a client App with its own connections (as on another machine)."""
    worker = App(url, lease_ttl=5)

    @worker.agent
    async def echo(ctx: Context, text: str) -> str:
        return text

    return worker, App(url)


async def test_an_idle_worker_is_woken_by_notify_not_by_polling(pg_url: str) -> None:
    worker_app, client = two_apps(pg_url)
    async with running_worker(worker_app, poll_interval=30.0):
        await asyncio.sleep(0.5)
        latencies = []
        for i in range(5):
            began = time.monotonic()
            handle = await client.start("echo", {"text": f"hi {i}"})
            assert await handle.result(timeout=10) == f"hi {i}"
            latencies.append(time.monotonic() - began)
    assert max(latencies) < 2.0, latencies
    await worker_app.close()
    await client.close()


async def test_a_worker_serves_only_its_queues(store_url: str) -> None:
    app = App(store_url)

    @app.agent
    async def task(ctx: Context) -> str:
        return "done"

    fast = await app.start("task", {}, queue="fast")
    slow = await app.start("task", {}, queue="slow")
    async with running_worker(app, poll_interval=0.01, queues=["fast"]):
        assert (await wait_for(app, fast.job_id)).status is JobStatus.SUCCEEDED
        await asyncio.sleep(0.2)
        assert (await app.get_job(slow.job_id)).status is JobStatus.PENDING
    async with running_worker(app, poll_interval=0.01, queues=["slow"]):
        assert (await wait_for(app, slow.job_id)).status is JobStatus.SUCCEEDED
    await app.close()


async def test_an_unreachable_server_is_a_clear_error() -> None:
    app = App("postgresql://postgres@127.0.0.1:1/none?aetheris_connect_timeout=1")
    with pytest.raises(StoreUnavailable, match=r"cannot connect to PostgreSQL at .*127\.0\.0\.1:1"):
        await app.start("anything", {})
