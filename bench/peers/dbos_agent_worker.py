"""A DBOS worker process for A1: the PydanticAI agent made durable by PydanticAI's DBOS backend.

Run by ``bench/peers/dbos.py`` as ``python -m bench.peers.dbos_agent_worker '<json spec>'``,
one task per process (DBOS is a process-wide singleton), launched as ``dbos_worker.launch``
does (same application name, version and executor id, so a fresh process recovers what a
killed one left pending).

The agent is ``bench.peers.pydantic_agent`` with ``DBOSDurability()``, run with ``await
agent.run(...)`` inside an async ``@DBOS.workflow``, as PydanticAI's DBOS guide shows. That
capability makes each model request a DBOS step; function tools run in the workflow itself, so
the tools with side effects (``reserve``, ``charge``) are ``@DBOS.step()`` functions, which is
what the guide asks of a tool doing I/O; ``lookup`` (pure) is left plain.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbos import DBOS, SetWorkflowID
from pydantic_ai.durable_exec.dbos import DBOSDurability

from bench.peers import agent_script, pydantic_agent
from bench.peers.dbos_worker import launch, storage_bytes

MARKS: list[float] = []
WARM_UP_TURNS = 3


def as_step(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if agent_script.EFFECTS[name] == "pure":
        return function
    return DBOS.step(name=f"a1_tool_{name}")(function)


durable = pydantic_agent.build([DBOSDurability()], name="a1", wrap=as_step)


@DBOS.workflow(name="a1_workflow")
async def a1_workflow(turns: int) -> int:
    began = time.perf_counter()
    await pydantic_agent.run(durable, turns)
    MARKS.append(time.perf_counter() - began)
    return turns


async def _timed(turns: int, repeats: int) -> dict[str, Any]:
    plain = pydantic_agent.build(name="a1_plain")
    await pydantic_agent.run(plain, turns)  # warm-up
    plain_s = []
    for _ in range(repeats):
        began = time.perf_counter()
        await pydantic_agent.run(plain, turns)
        plain_s.append(time.perf_counter() - began)
    await a1_workflow(WARM_UP_TURNS)
    MARKS.clear()
    for _ in range(repeats):
        await a1_workflow(turns)
    return {
        "plain_us_per_turn": statistics.median(plain_s) / turns * 1e6,
        "plain_runs_s": plain_s,
        "us_per_turn": statistics.median(MARKS) / turns * 1e6,
        "runs_s": list(MARKS),
    }


def task_time(spec: dict[str, Any]) -> dict[str, Any]:
    launch(spec)
    return asyncio.run(_timed(spec["turns"], spec["repeats"]))


def task_bytes(spec: dict[str, Any]) -> dict[str, Any]:
    launch(spec)
    baseline = storage_bytes(spec["url"])
    asyncio.run(a1_workflow(spec["turns"]))
    after = storage_bytes(spec["url"])
    return {"bytes": after - baseline, "baseline_bytes": baseline, "after_bytes": after}


def task_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Start the workflow under a fixed id; the kill run dies inside ``charge``."""
    launch(spec)

    async def run() -> int:
        with SetWorkflowID(spec["workflow_id"]):
            return await a1_workflow(spec["turns"])

    return {"value": asyncio.run(run())}


def task_recover(spec: dict[str, Any]) -> dict[str, Any]:
    """A fresh process: ``DBOS.launch()`` recovers this executor's pending workflow."""
    launch_began = time.time()
    launch(spec)
    handle = DBOS.retrieve_workflow(spec["workflow_id"])
    value = handle.get_result(polling_interval_sec=0.02)
    return {"value": value, "launch_began": launch_began, "done": time.time()}


TASKS = {"time": task_time, "bytes": task_bytes, "run": task_run, "recover": task_recover}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = TASKS[spec["task"]](spec)
    Path(spec["result"]).write_text(json.dumps(result))
    DBOS.destroy()


if __name__ == "__main__":
    main()
