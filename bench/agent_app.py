"""The Aetheris agents of A1 (PydanticAI) and A2 (LangGraph), apart from ``bench.app``.

A separate App, so that the core workloads' worker processes (``bench.app:app``) do not import
PydanticAI, LangChain and LangGraph at start-up. Worker processes of A1/A2 load
``bench.agent_app:app``; in-process runs build a fresh App per run with :func:`build_app`.

* ``a1_pydantic``: the PydanticAI agent of ``bench.peers.pydantic_agent`` with
  ``AetherisDurability`` (model requests journaled as ``llm`` entries, each tool with its effect
  class: ``lookup`` pure, ``reserve`` idempotent, ``charge`` at_most_once).
* ``a2_langgraph``: the LangGraph tool loop of ``bench.peers.langgraph_agent`` on
  ``AetherisCheckpointer``, with ``AetherisChatModel`` and ``DurableTools``, run by
  ``run_graph``.

Each times its run inside the agent (``time.perf_counter``, never journaled) into
:data:`MARKS`, or into the file ``out`` names (worker processes).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aetheris import App, Context
from aetheris.integrations.langgraph import (
    AetherisChatModel,
    AetherisCheckpointer,
    DurableTools,
    run_graph,
)
from aetheris.integrations.pydantic_ai import AetherisDurability
from bench.harness import write
from bench.peers import agent_script, langgraph_agent, pydantic_agent

MARKS: list[float] = []
"""Seconds each agent run took, from just before the framework's run to just after it."""


def _mark(began: float, out: str) -> None:
    elapsed = time.perf_counter() - began
    MARKS.append(elapsed)
    if out:
        write(Path(out), repr(elapsed))


def build_app(database_url: str | None = None, **options: Any) -> App:
    """A fresh App with the A1 and A2 agents, on ``database_url``."""
    app = App(database_url, **options)
    durable = pydantic_agent.build([AetherisDurability(tools=agent_script.EFFECTS)])
    model = AetherisChatModel(langgraph_agent.ScriptedChatModel(), name="scripted")
    tools = DurableTools(agent_script.EFFECTS)
    graph = langgraph_agent.build(AetherisCheckpointer(app), model, tools)

    @app.agent
    async def a1_pydantic(ctx: Context, turns: int, out: str = "") -> int:
        began = time.perf_counter()
        await pydantic_agent.run(durable, turns)
        _mark(began, out)
        return turns

    @app.agent
    async def a2_langgraph(ctx: Context, turns: int, out: str = "") -> int:
        began = time.perf_counter()
        start, limit = langgraph_agent.start(turns), langgraph_agent.limit(turns)
        output = await run_graph(ctx, graph, start, limit)
        langgraph_agent.check(output, turns)
        _mark(began, out)
        return turns

    return app


app = build_app()
