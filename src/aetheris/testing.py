"""Test kit: run agents the way the runtime's own tests do.

* :func:`running_worker` runs a worker in the background of a test's event loop;
* :func:`simulate_crash` makes the worker "die" at a write boundary of a step, in-process,
  writing nothing on the way out (use ``AETHERIS_CRASH_AT`` to SIGKILL a real worker process);
* :func:`replay` replays a job's journal against the current code without executing anything;
* :class:`Replayer` replays saved journals (``aetheris export ID --journal``) against the code,
  many at once, so production runs kept as files become tests a deploy must pass.

Use ``App("memory://", lease_ttl=...)`` for an in-memory app, or a SQLite file in a temp dir.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aetheris import crashpoints
from aetheris.app import App
from aetheris.errors import ReplayFailed, SimulatedCrash
from aetheris.recording import Replayer
from aetheris.replay import ReplayReport, replay
from aetheris.scheduler import Worker

__all__ = [
    "ReplayFailed",
    "ReplayReport",
    "Replayer",
    "SimulatedCrash",
    "replay",
    "running_worker",
    "simulate_crash",
]


@asynccontextmanager
async def running_worker(app: App, **options: Any) -> AsyncIterator[Worker]:
    """Run a worker of ``app`` in this event loop for the duration of the block."""
    worker = app.worker(**options)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


@contextmanager
def simulate_crash(spec: str) -> Iterator[None]:
    """Make the worker die at ``POINT[:NAME][@N]`` (see :mod:`aetheris.crashpoints`)."""
    crashpoints.configure(spec, action="raise")
    try:
        yield
    finally:
        crashpoints.configure(None)
