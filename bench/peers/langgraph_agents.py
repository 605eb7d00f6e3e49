"""LangGraph's A2: the tool-loop agent of ``bench.peers.langgraph_agent`` on LangGraph's own
checkpointers (``AsyncSqliteSaver``, ``AsyncPostgresSaver``), in ``durability="sync"`` and
``"async"`` (variants ``checkpointer`` and ``checkpointer-async``).

The harness side (:func:`a2`) is called by ``bench.peers.langgraph``; the kill -9 run's worker
processes are ``python -m bench.peers.langgraph_agents SPEC_JSON``: phase ``run`` invokes the
graph on a new thread and dies inside ``charge`` of the kill turn (``agent_script``), phase
``recover`` is a fresh process resuming the thread the LangGraph way, ``ainvoke(None, config)``
with the same ``thread_id``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.peers import agent_script, common, langgraph_agent
from bench.peers.langgraph_graphs import async_saver, pg_bytes, sqlite_bytes

WARM_UP_TURNS = 3
WORKER_TIMEOUT_S = 600


async def _median_us(once: Callable[[], Awaitable[None]], turns: int, repeats: int) -> Any:
    await once()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        await once()
        times.append(time.perf_counter() - began)
    return {"us_per_turn": statistics.median(times) / turns * 1e6, "runs_s": times}


async def plain(turns: int, repeats: int) -> dict[str, Any]:
    graph = langgraph_agent.build()

    async def once() -> None:
        config = langgraph_agent.config(f"plain-{time.monotonic_ns()}", turns)
        langgraph_agent.check(await graph.ainvoke(langgraph_agent.start(turns), config), turns)

    return dict(await _median_us(once, turns, repeats))


async def timed(backend: str, durability: str, target: str, mode: str, turns: int, repeats: int):
    async with async_saver(backend, durability, target) as saver:
        graph = langgraph_agent.build(saver)
        size = {"turns": turns}

        async def once() -> None:
            n = size["turns"]
            config = langgraph_agent.config(f"t-{time.monotonic_ns()}", n)
            output = await graph.ainvoke(langgraph_agent.start(n), config, durability=mode)
            langgraph_agent.check(output, n)

        size["turns"] = WARM_UP_TURNS
        await once()
        size["turns"] = turns
        return await _median_us(once, turns, repeats)


def stored_size(backend: str, target: str) -> int:
    if backend == "sqlite":
        sizes = sqlite_bytes(Path(target))
        return sizes["file_bytes"] + sizes["wal_bytes"]
    return pg_bytes(target)["table_bytes"]


async def stored(backend: str, durability: str, target: str, mode: str, turns: int):
    async with async_saver(backend, durability, target) as saver:
        empty = stored_size(backend, target)
        graph = langgraph_agent.build(saver)
        config = langgraph_agent.config("stored", turns)
        output = await graph.ainvoke(langgraph_agent.start(turns), config, durability=mode)
        langgraph_agent.check(output, turns)
    after = stored_size(backend, target)
    return {"bytes": after - empty, "empty_schema_bytes": empty, "after_bytes": after}


# -- the kill -9 run -----------------------------------------------------------------------------


def spawn(spec: dict[str, Any], env: dict[str, str]) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.peers.langgraph_agents", json.dumps(spec)],
        env={**os.environ, **env},
        timeout=WORKER_TIMEOUT_S,
        check=False,
    )
    return proc.returncode


def killed(backend: str, durability: str, target: str, mode: str, work: Path) -> dict[str, Any]:
    world = work / f"a2-world-{mode}"
    world.mkdir()
    env = {agent_script.WORLD_ENV: str(world)}
    spec = {"backend": backend, "durability": durability, "target": target, "mode": mode}
    spec |= {"turns": agent_script.KILL_RUN_TURNS, "out": str(world / "done.json")}
    code = spawn(
        {**spec, "phase": "run"}, {**env, agent_script.KILL_ENV: str(agent_script.KILL_TURN)}
    )
    if code != -9:
        raise RuntimeError(f"the worker was not SIGKILLed as planned (exit code {code})")
    code = spawn({**spec, "phase": "recover"}, env)
    if code != 0:
        raise RuntimeError(f"the recovering worker exited with {code}")
    killed_at = float((world / "killed").read_text())
    done = json.loads((world / "done.json").read_text())
    found = agent_script.duplicates((world / "calls.log").read_text())
    what = "a fresh process called ainvoke(None, same thread_id) and the graph completed"
    return found | {"recovery_s": done["done"] - killed_at, "what": what}


async def _worker(spec: dict[str, Any]) -> None:
    turns = spec["turns"]
    async with async_saver(spec["backend"], spec["durability"], spec["target"]) as saver:
        graph = langgraph_agent.build(saver)
        first = langgraph_agent.start(turns) if spec["phase"] == "run" else None
        config = langgraph_agent.config("a2-kill", turns)
        output = await graph.ainvoke(first, config, durability=spec["mode"])
    langgraph_agent.check(output, turns)
    _write(Path(spec["out"]), json.dumps({"done": time.time()}))


def _write(path: Path, text: str) -> None:
    path.write_text(text)


# -- the harness ---------------------------------------------------------------------------------


def a2(ctx: Any, target: Callable[[str], Any], mode: str, notes: str) -> list[tuple[Any, ...]]:
    """Rows (variant, metric, value, notes, extra) of one durability mode."""
    args = ctx.args
    turns, stored_turns, repeats = common.agent_sizes(args.quick)
    floor = asyncio.run(plain(turns, agent_script.PLAIN_REPEATS))
    with target(f"a2-time-{mode}") as where:
        durable = asyncio.run(timed(args.backend, args.durability, where, mode, turns, repeats))
    with target(f"a2-bytes-{mode}") as where:
        size = asyncio.run(stored(args.backend, args.durability, where, mode, stored_turns))
    how = (
        "file growth after wal_checkpoint(TRUNCATE)"
        if args.backend == "sqlite"
        else ("growth of pg_total_relation_size of the saver's tables")
    )
    size["how"] = f"{how}, one run of {stored_turns} turns, fresh database"
    with target(f"a2-kill-{mode}") as where:
        kill = killed(args.backend, args.durability, where, mode, ctx.work)
    what = f"the LangGraph tool loop (scripted chat model, ToolNode) on {notes}"
    timing = f"N={turns} turns, median of {repeats} runs, ainvoke wall time"
    variant = "checkpointer" if mode == "sync" else "checkpointer-async"
    return common.agent_rows(variant, what, timing, durable, floor, size, kill)


if __name__ == "__main__":
    asyncio.run(_worker(json.loads(sys.argv[1])))
