"""Human in the loop and time with real worker processes killed around parked jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetheris import App, EffectState, JobStatus, ParkReason

from .harness import Cluster, wait_exit, wait_job, with_fast_reaping

pytestmark = pytest.mark.chaos


@pytest.fixture
def cluster(tmp_path: Path, durable_url: str) -> Iterator[Cluster]:
    chaos = Cluster(tmp_path, with_fast_reaping(durable_url), pace=0.02)
    yield chaos
    chaos.stop_all()


async def test_kill_while_parked_loses_nothing_and_repeats_nothing(cluster: Cluster) -> None:
    app = App(cluster.url)
    handle = await app.start("approve_then_pay", {"n": 3})
    first = cluster.start_worker()
    job = await wait_job(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.APPROVAL
    cluster.kill(first)  # parked: the job is not in any worker
    second = cluster.start_worker()
    await app.approve(handle.job_id, by="maria")
    job = await wait_job(app, handle.job_id, JobStatus.PARKED)
    for _ in range(50):
        if job.park_reason is ParkReason.SIGNAL:
            break
        await asyncio.sleep(0.1)
        job = await app.get_job(handle.job_id)
    assert job.park_reason is ParkReason.SIGNAL
    cluster.kill(second)
    cluster.start_worker()
    await app.signal(handle.job_id, "receipt", "r-1")
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == {"charge": "ch-3", "by": "maria", "receipt": "r-1"}
    assert len(cluster.lines("lookups.log")) == 1
    assert len(cluster.lines("reserves.log")) == 1
    assert len(cluster.lines("charges.log")) == 1
    assert len(cluster.lines("notifies.log")) == 1
    await app.close()


@pytest.mark.parametrize("crash_at", ["after_dispatch:charge", "after_outcome:charge"])
async def test_kill_while_resuming_after_approval(cluster: Cluster, crash_at: str) -> None:
    app = App(cluster.url)
    handle = await app.start("approve_then_pay", {"n": 5})
    first = cluster.start_worker()
    await wait_job(app, handle.job_id, JobStatus.PARKED)
    cluster.kill(first)
    doomed = cluster.start_worker(crash_at=crash_at)
    await app.approve(handle.job_id, by="maria")
    assert wait_exit(doomed) == -9
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, JobStatus.PARKED)
    if crash_at.startswith("after_dispatch"):
        assert job.park_reason is ParkReason.EFFECT_IN_DOUBT
        [row] = await (await app.open_store()).effects(states=[EffectState.IN_DOUBT])
        await app.resolve_effect(job.id, row.position, committed=True, result="ch-5")
        job = await wait_job(app, handle.job_id, JobStatus.PARKED)
    await app.signal(handle.job_id, "receipt", "r")
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert len(cluster.lines("lookups.log")) == 1, "a step before the wait ran again"
    assert len(cluster.lines("reserves.log")) == 1
    assert len(cluster.lines("charges.log")) == 1
    await app.close()


async def test_a_timer_fires_after_every_worker_was_restarted(cluster: Cluster) -> None:
    app = App(cluster.url)
    handle = await app.start("sleeper", {"seconds": 1.5})
    workers = [cluster.start_worker(), cluster.start_worker()]
    job = await wait_job(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.TIMER
    for worker in workers:
        cluster.kill(worker)
    await asyncio.sleep(2.0)
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, timeout=20)
    assert job.status is JobStatus.SUCCEEDED
    assert len(cluster.lines("lookups.log")) == 1
    await app.close()


async def test_a_child_whose_worker_dies_is_recovered_and_wakes_its_parent(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    handle = await app.start("parent_of", {"n": 2})
    doomed = cluster.start_worker(crash_at="after_outcome:charge")
    assert wait_exit(doomed) == -9
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == {"n": 2, "charge": "ch-21"}
    child = await app.get_job(f"{handle.job_id}.1")
    assert child.status is JobStatus.SUCCEEDED and child.parent_id == handle.job_id
    assert len(cluster.lines("charges.log")) == 1
    assert len(cluster.lines("lookups.log")) == 2  # the parent's and the child's, once each
    await app.close()


async def test_parallel_steps_replay_after_a_crash(cluster: Cluster) -> None:
    app = App(cluster.url)
    handle = await app.start("fan_out", {"n": 6})
    doomed = cluster.start_worker(crash_at="after_outcome:probe@3")
    assert wait_exit(doomed) == -9
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, timeout=30)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == [i * i for i in range(6)]
    runs = cluster.count("probes.log")
    assert set(runs) == {f"{job.id} {i}" for i in range(6)}
    assert sum(1 for n in runs.values() if n == 1) >= 3, "recorded probes ran again"
    await app.close()


async def test_cancel_from_another_process_interrupts_a_slow_tool(cluster: Cluster) -> None:
    app = App(cluster.url)
    cluster.start_worker()
    handle = await app.start("slow_then_charge", {"seconds": 60.0})
    deadline = time.monotonic() + 20
    while not cluster.lines("slow.log"):
        assert time.monotonic() < deadline, cluster.logs()
        await asyncio.sleep(0.05)
    began = time.monotonic()
    operator = App(cluster.url)  # another process's view: a separate store and connections
    await operator.cancel(handle.job_id)
    await operator.close()
    job = await wait_job(app, handle.job_id, timeout=20)
    assert time.monotonic() - began < 10
    assert job.status is JobStatus.CANCELLED
    assert job.error is not None and job.error["in_doubt"] == [0]
    assert cluster.lines("after_slow.log") == []
    await app.close()


async def test_a_job_that_keeps_killing_its_workers_is_failed_as_poison(cluster: Cluster) -> None:
    cluster.extra_env["CHAOS_MAX_RECOVERIES"] = "2"
    app = App(cluster.url)
    handle = await app.start("order", {"n": 1})
    for _ in range(3):
        assert wait_exit(cluster.start_worker(crash_at="after_dispatch:lookup")) == -9
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, timeout=20)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "PoisonJob"
    assert "cut short 3 times" in job.error["message"]
    assert cluster.lines("charges.log") == []
    await app.close()
