"""TaskGraphs: plans of typed nodes (tools, model calls, child agents, approvals, conditions),
validated before anything runs and executed durably, independent branches in parallel.

* :func:`validate` (and :func:`load` for a JSON or YAML file) turn a plan into a
  :class:`TaskGraph` or raise :class:`PlanInvalid` naming every problem (a cycle, a reference to
  a node that is not there, an unknown tool or agent, arguments a tool does not take).
* :func:`run_plan` runs one inside an agent: the plan and its hash are journaled first, then
  each node is one durable operation; a crash resumes after the last node done.
* :func:`enable_plans` registers the agent ``aetheris.plan`` (input ``{"plan": {...}}``) that
  ``aetheris start --plan FILE`` submits to.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from typing import Any

from aetheris.app import App
from aetheris.context import Context
from aetheris.llm import ChatModel
from aetheris.run import current_run
from aetheris.taskgraph.execute import Executor, NodeFailed, PlanOutcome
from aetheris.taskgraph.plan import (
    Catalog,
    PlanInvalid,
    TaskGraph,
    args_schema,
    json_schema,
    load,
    parse,
    validate,
)
from aetheris.tools import ToolDef

PLAN_AGENT = "aetheris.plan"

__all__ = [
    "PLAN_AGENT",
    "Catalog",
    "NodeFailed",
    "PlanInvalid",
    "PlanOutcome",
    "TaskGraph",
    "args_schema",
    "catalog",
    "enable_plans",
    "json_schema",
    "load",
    "parse",
    "run_plan",
    "validate",
]

ModelSource = ChatModel | Callable[[], ChatModel] | None


async def catalog(app: App, model: ModelSource = None) -> Catalog:
    """What a plan may use inside an agent of ``app``: its tools, the agents it or any worker
    registered, and whether ``llm`` nodes have a model (given, or ``AETHERIS_LLM_MODEL``)."""
    agents: set[str] = set(app.agents)
    run = current_run.get()
    if run is not None:
        agents.update(await run.read(run.store.agents))
    has_model = model is not None or bool(os.environ.get("AETHERIS_LLM_MODEL"))
    return Catalog(app.tools, agents, has_model)


async def run_plan(
    ctx: Context,
    plan: Any,
    *,
    tools: Mapping[str, ToolDef],
    agents: Collection[str] | None = None,
    model: ModelSource = None,
) -> PlanOutcome:
    """Validate ``plan`` against ``tools`` (and ``agents``) and run it; a node's failure
    raises :class:`NodeFailed`, an invalid plan :class:`PlanInvalid` before anything runs."""
    has_model = model is not None or bool(os.environ.get("AETHERIS_LLM_MODEL"))
    graph = validate(plan, Catalog(tools, agents, has_model))
    return await Executor(ctx, tools, model).run(graph)


def enable_plans(app: App, *, model: ModelSource = None, name: str = PLAN_AGENT) -> None:
    """Register the agent ``name`` that runs the TaskGraph it is given (``{"plan": {...}}``)
    with ``app``'s tools; ``llm`` nodes ask ``model`` (default: from ``AETHERIS_LLM_*``)."""

    async def run_given_plan(ctx: Context, plan: dict[str, Any]) -> dict[str, Any]:
        graph = validate(plan, await catalog(app, model))
        outcome = await Executor(ctx, app.tools, model).run(graph)
        return outcome.as_json()

    app.agent(name=name)(run_given_plan)
