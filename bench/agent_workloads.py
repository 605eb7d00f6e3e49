"""Aetheris on A1 (a PydanticAI agent) and A2 (a LangGraph tool loop), each function on a fresh
database the caller provides; ``bench.peers.aetheris`` turns the records into result rows.

The agents are in ``bench.agent_app``, the conversation in ``bench.peers.agent_script``. Three
figures per framework: µs per turn (the durable run, and the same agent with no durability at
all, in this process: the floor), bytes stored after ``STORED_TURNS`` turns, and what a
``kill -9`` right after the at_most_once tool's side effect costs: how many times that tool and
the model ran again once a fresh worker took the job over.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aetheris import JobStatus
from aetheris.journal import EventType
from aetheris.testing import running_worker
from bench import agent_app
from bench.harness import (
    Record,
    expect,
    last_of,
    read,
    spawn_worker,
    stop_workers,
    stored_bytes,
    until,
)
from bench.peers import agent_script, langgraph_agent, pydantic_agent

JOB_TIMEOUT = 900.0
KILL_TIMEOUT = 120.0
WORKER_APP = "bench.agent_app:app"
AGENTS = {"A1": "a1_pydantic", "A2": "a2_langgraph"}
WARM_UP_TURNS = 3


def charge_result(workload: str) -> Any:
    """The journaled result of ``charge`` at the kill turn, as the integration records it (an
    operator resolving the in-doubt call says it happened, with this result)."""
    text = agent_script.tool_result("charge", agent_script.KILL_TURN)
    return text if workload == "A1" else {"content": text, "status": "success", "artifact": None}


def median_us_per_turn(seconds: list[float], turns: int) -> float:
    return statistics.median(seconds) / turns * 1e6


async def plain(workload: str, turns: int, repeats: int) -> Record:
    """The same agent with no durability (the floor), in this process: a warm-up run, then
    ``repeats`` timed runs; the median."""
    if workload == "A1":
        agent = pydantic_agent.build()

        async def once() -> None:
            await pydantic_agent.run(agent, turns)
    else:
        graph = langgraph_agent.build()

        async def once() -> None:
            thread = f"plain-{time.monotonic_ns()}"
            output = await graph.ainvoke(
                langgraph_agent.start(turns), langgraph_agent.config(thread, turns)
            )
            langgraph_agent.check(output, turns)

    await once()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        await once()
        times.append(time.perf_counter() - began)
    return {"us_per_turn": median_us_per_turn(times, turns), "runs_s": times}


async def durable(url: str, workload: str, turns: int, repeats: int) -> Record:
    """A warm-up job, then ``repeats`` jobs of ``turns`` turns, one worker in this process,
    each timed inside the agent; the median."""
    agent = AGENTS[workload]
    app = agent_app.build_app(url)
    async with app, running_worker(app, concurrency=1):
        await (await app.start(agent, {"turns": WARM_UP_TURNS})).result(timeout=JOB_TIMEOUT)
        agent_app.MARKS.clear()
        for _ in range(repeats):
            handle = await app.start(agent, {"turns": turns})
            expect(await handle.result(timeout=JOB_TIMEOUT) == turns, "wrong result")
    times = list(agent_app.MARKS)
    expect(len(times) == repeats, f"{len(times)} timing marks, expected {repeats}")
    return {"us_per_turn": median_us_per_turn(times, turns), "runs_s": times}


async def stored(url: str, workload: str, turns: int) -> Record:
    """Bytes the database grew by over one job of ``turns`` turns (fresh migrated database)."""
    async with agent_app.build_app(url) as app:
        await app.open_store()
    baseline = stored_bytes(url)
    app = agent_app.build_app(url)
    agent_app.MARKS.clear()
    async with app, running_worker(app, concurrency=1):
        handle = await app.start(AGENTS[workload], {"turns": turns})
        expect(await handle.result(timeout=JOB_TIMEOUT) == turns, "wrong result")
    after = stored_bytes(url)
    us = agent_app.MARKS[-1] / turns * 1e6
    return {"bytes": after["bytes"] - baseline["bytes"], "baseline": baseline, "after": after} | {
        "us_per_turn": us
    }


async def killed(url: str, workdir: Path, workload: str) -> Record:
    """Worker A runs a job of ``KILL_RUN_TURNS`` turns and SIGKILLs itself right after charge's
    side effect at ``KILL_TURN``; worker B takes the job over. An at_most_once call whose
    outcome was not recorded is in doubt: the job parks, and the harness resolves it as an
    operator would (it happened), after which the job completes. Counts from ``calls.log``."""
    world = workdir / f"{workload}-world"
    world.mkdir()
    env = {agent_script.WORLD_ENV: str(world)}
    kill = {**env, agent_script.KILL_ENV: str(agent_script.KILL_TURN)}
    name = f"{workload}-kill"
    async with agent_app.build_app(url) as app:
        handle = await app.start(AGENTS[workload], {"turns": agent_script.KILL_RUN_TURNS})
        doomed = await spawn_worker(url, workdir, f"{name}-a", 1, env=kill, app=WORKER_APP)
        code = await asyncio.wait_for(doomed.wait(), KILL_TIMEOUT)
        expect(code == -signal.SIGKILL, f"worker A exited with {code}, not SIGKILL")
        killed_at = float(read(world / "killed"))
        fresh = await spawn_worker(
            url, workdir, f"{name}-b", 1, "--grace", "0", env=env, app=WORKER_APP
        )
        try:
            parked = await _settle(app.get_job, handle.job_id, [fresh])
            if parked:
                job = await app.get_job(handle.job_id)
                reason = job.park_reason.value if job.park_reason else None
                expect(reason == "effect_in_doubt", f"parked for {reason}")
                position = int((job.park_detail or {})["position"])
                result = charge_result(workload)
                await app.resolve_effect(
                    job.id, position, committed=True, result=result, by="bench"
                )

                async def succeeded() -> bool:
                    return (await app.get_job(handle.job_id)).status is JobStatus.SUCCEEDED

                await until("the resolved job's success", succeeded, [fresh], KILL_TIMEOUT)
            events = await (await app.open_store()).events(handle.job_id)
            job = await app.get_job(handle.job_id)
        finally:
            await stop_workers([fresh])
    expect(job.status is JobStatus.SUCCEEDED, f"job ended {job.status}")
    end = last_of(events, EventType.JOB_PARKED if parked else EventType.JOB_SUCCEEDED)
    return agent_script.duplicates(read(world / "calls.log")) | {
        "parked_effect_in_doubt": parked,
        "recovery_s": end.at - killed_at,
        "until": "job_parked (charge in doubt)" if parked else "job_succeeded",
    }


async def _settle(get: Callable[[str], Awaitable[Any]], job_id: str, procs: list[Any]) -> bool:
    """Wait until the job has parked (True) or succeeded (False)."""
    seen: list[JobStatus] = []

    async def done() -> bool:
        status = (await get(job_id)).status
        seen[:] = [status]
        return status in (JobStatus.PARKED, JobStatus.SUCCEEDED) or status.terminal

    await until("the job parked or succeeded", done, procs, KILL_TIMEOUT)
    return seen[0] is JobStatus.PARKED
