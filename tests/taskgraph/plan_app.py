"""An App whose tools count their runs in files, for TaskGraph tests in worker processes.

``PLAN_WORLD`` names the folder: each tool appends ``start NODE`` when it begins and ``end
NODE`` when it returns to ``runs.log``. The ``meet`` tool is a barrier: it waits until every
party has arrived (``arrived-NAME`` files) and fails after a few seconds if one never does,
which proves two nodes ran at the same time. ``slow`` waits for a ``release`` file.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from aetheris import App
from aetheris.taskgraph import enable_plans

app = App(lease_ttl=float(os.environ.get("PLAN_LEASE_TTL", "30")))
enable_plans(app)


def world() -> Path:
    return Path(os.environ.get("PLAN_WORLD", "."))


def note(line: str) -> None:
    with (world() / "runs.log").open("a") as log:
        log.write(f"{line} {time.time():.6f}\n")


@app.tool
async def fetch(node: str, order: str) -> dict[str, object]:
    """Read an order."""
    note(f"start {node}")
    note(f"end {node}")
    return {"order": order, "amount": 40}


@app.tool(effect="at_most_once")
async def meet(node: str, party: list[str], amount: int) -> int:
    """Arrive at a barrier of ``party`` and return ``amount`` once everyone is there."""
    note(f"start {node}")
    (world() / f"arrived-{node}").touch()
    deadline = time.monotonic() + 10
    while not all((world() / f"arrived-{p}").exists() for p in party):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node}: nobody else came to the barrier")
        await asyncio.sleep(0.02)
    note(f"end {node}")
    return amount


@app.tool
async def slow(node: str, left: int, right: int) -> int:
    """Add two amounts once released (a ``release`` file)."""
    note(f"start {node}")
    while not (world() / "release").exists():  # noqa: ASYNC110 (another process makes it)
        await asyncio.sleep(0.02)
    note(f"end {node}")
    return left + right
