"""Temporal's A1: the PydanticAI agent with PydanticAI's ``TemporalDurability``, on the dev
server of ``bench.peers.temporal`` (its ``Stack``), one workflow per run of the agent
(``temporal_agent_flows``), served by ``temporal_agent_worker`` processes.

The plain run (the floor) is the same agent with no capability, in this process. The kill -9
run starts the 9-turn workflow on a worker whose ``charge`` activity SIGKILLs its process right
after its side effect; a fresh worker is started at once and the workflow runs to its end:
the lost activity attempt is retried after its 5 s ``start_to_close_timeout``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.peers import agent_script, common, pydantic_agent
from bench.peers.temporal_stack import Rows, Stack, mark

WORKER = "bench.peers.temporal_agent_worker"
WARM_UP_TURNS = 3
KILL_TIMEOUT_S = 300.0
WHAT = (
    "the PydanticAI agent with PydanticAI's TemporalDurability (model requests and function "
    "tools are activities, start_to_close_timeout 5 s), in a workflow on the dev server"
)


async def plain(turns: int, repeats: int) -> dict[str, Any]:
    agent = pydantic_agent.build(name="a1_plain")
    await pydantic_agent.run(agent, turns)  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        await pydantic_agent.run(agent, turns)
        times.append(time.perf_counter() - began)
    return {"us_per_turn": statistics.median(times) / turns * 1e6, "runs_s": times}


async def _timed_and_stored(stack: Stack, turns: int, stored_turns: int, repeats: int) -> Any:
    assert stack.client is not None
    proc, marks_path = stack.start_worker()
    await stack.run("A1Agent", {"turns": WARM_UP_TURNS, "tag": "warm"}, timeout_s=300)
    for i in range(repeats):
        await stack.run("A1Agent", {"turns": turns, "tag": f"time-{i}"})
    before = stack.db_bytes()
    handle = await stack.client.start_workflow(
        "A1Agent", {"turns": stored_turns, "tag": "stored"}, id="a1-stored", task_queue=stack.queue
    )
    await asyncio.wait_for(handle.result(), 1800)
    info = (await handle.describe()).raw_info
    size = {
        "bytes": info.history_size_bytes,
        "history_events": info.history_length,
        "sqlite_file_growth_bytes": stack.db_bytes() - before,
        "how": f"the workflow's history_size_bytes (DescribeWorkflowExecution), {stored_turns} "
        "turns; the dev server's SQLite file growth is in extra",
    }
    marks = stack.stop_worker(proc, marks_path)
    runs = [mark(marks, f"time-{i}", turns) for i in range(repeats)]
    seconds = [after - before for before, after in runs]
    timed = {"us_per_turn": statistics.median(seconds) / turns * 1e6, "runs_s": seconds}
    return timed, size


async def _killed(stack: Stack) -> dict[str, Any]:
    assert stack.client is not None
    world = stack.work / "a1-world"
    world.mkdir()
    env = {agent_script.WORLD_ENV: str(world)}
    doomed, _ = stack.start_worker(env={**env, agent_script.KILL_ENV: str(agent_script.KILL_TURN)})
    spec = {"turns": agent_script.KILL_RUN_TURNS, "tag": "kill"}
    handle = await stack.client.start_workflow(
        "A1Agent", spec, id="a1-kill", task_queue=stack.queue
    )
    code = await asyncio.wait_for(asyncio.to_thread(doomed.wait), KILL_TIMEOUT_S)
    if code != -9:
        raise RuntimeError(f"the worker was not SIGKILLed as planned (exit code {code})")
    fresh, fresh_marks = stack.start_worker(env=env)
    await asyncio.wait_for(handle.result(), KILL_TIMEOUT_S)
    done = time.time()
    stack.stop_worker(fresh, fresh_marks)
    killed_at = float((world / "killed").read_text())
    found = agent_script.duplicates((world / "calls.log").read_text())
    what = (
        "a fresh worker was started at once; the lost charge attempt was retried after its "
        "start_to_close_timeout and the workflow completed"
    )
    return found | {"recovery_s": done - killed_at, "what": what}


async def a1(stack: Stack, quick: bool) -> Rows:
    """A1's five figures, as ``temporal.one_run`` emits rows (metric, value, notes, extra)."""
    turns, stored_turns, repeats = common.agent_sizes(quick)
    floor = await plain(turns, agent_script.PLAIN_REPEATS)
    stack.worker_module = WORKER
    timed, size = await _timed_and_stored(stack, turns, stored_turns, repeats)
    kill = await _killed(stack)
    timing = f"N={turns} turns, median of {repeats} workflows, timed in workflow code"
    rows = common.agent_rows("TemporalDurability", WHAT, timing, timed, floor, size, kill)
    return [(metric, value, notes, extra) for _, metric, value, notes, extra in rows]
