"""Waiting for a job to end by looking at it, more slowly the longer it takes: the one loop
behind :meth:`aetheris.JobHandle.result` (on the database) and
:meth:`aetheris.client.RemoteJobHandle.result` (through a server)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aetheris.models import Job


async def until_ended(
    look: Callable[[], Awaitable[Job]],
    timeout: float | None,
    monotonic: Callable[[], float],
    *,
    first: float,
    most: float,
) -> Job:
    """The job, once ``look()`` finds it ended. Looks again after ``first`` seconds, then
    half as long again each time, at most ``most``; :class:`TimeoutError` after ``timeout``."""
    deadline = None if timeout is None else monotonic() + timeout
    delay = first
    while True:
        job = await look()
        if job.status.terminal:
            return job
        left = None if deadline is None else deadline - monotonic()
        if left is not None and left <= 0:
            raise TimeoutError(f"job {job.id} is still {job.status} after {timeout}s")
        await asyncio.sleep(delay if left is None else min(delay, left))
        delay = min(delay * 1.5, most)
