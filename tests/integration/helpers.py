from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from aetheris import App, Job, JobStatus
from aetheris.testing import running_worker


class World:
    """Counts side effects outside the runtime."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.keys: list[tuple[str, str]] = []

    def hit(self, name: str, key: str | None = None) -> None:
        self.calls[name] += 1
        if key is not None:
            self.keys.append((name, key))


async def wait_for(app: App, job_id: str, *statuses: JobStatus, timeout: float = 10.0) -> Job:
    wanted = set(statuses) or {s for s in JobStatus if s.terminal}
    deadline = time.monotonic() + timeout
    while True:
        job = await app.get_job(job_id)
        if job.status in wanted:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job.status}, wanted {sorted(wanted)}")
        await asyncio.sleep(0.01)


async def run_job(
    app: App, agent: str, input: dict[str, Any] | None = None, *statuses: JobStatus, **options: Any
) -> Job:
    """Start a job and run a worker until the job reaches one of ``statuses`` (default: end)."""
    handle = await app.start(agent, input or {})
    async with running_worker(app, poll_interval=0.01, **options):
        return await wait_for(app, handle.job_id, *statuses)


async def crash_worker(app: App, job_id: str, **options: Any) -> None:
    """Run a worker until a simulated crash kills it."""
    async with running_worker(app, poll_interval=0.01, **options) as worker:
        deadline = time.monotonic() + 10
        while not worker.crashed:
            assert time.monotonic() < deadline, "the worker never crashed"
            await asyncio.sleep(0.01)
