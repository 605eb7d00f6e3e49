"""Goal → TaskGraph: a model writes the plan, Aetheris checks it, then runs it durably.

:class:`Planner` asks a model (an :class:`~aetheris.llm.ChatModel`, so every request is a
journaled model call: a resumed or replayed job gets the recorded plans and pays nothing) for a
TaskGraph that reaches a goal with the tools and agents at hand. Each answer is validated
(:func:`aetheris.taskgraph.validate`); an answer that is not JSON or not a valid plan is sent
back with the validation errors, and the model is asked again, up to ``max_attempts`` answers
in all, after which :class:`PlanningFailed` names every error it made.

:func:`run_goal` plans and runs, and with ``replans=N`` asks for a new plan (told which node
failed, why, and what the nodes before it returned) when a node fails, up to N times.
:func:`enable_goals` registers the agent ``aetheris.goal`` (input ``{"goal": "..."}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.app import App
from aetheris.context import Context
from aetheris.errors import AetherisError
from aetheris.llm import ChatModel
from aetheris.taskgraph import Catalog, NodeFailed, PlanInvalid, PlanOutcome, catalog, validate
from aetheris.taskgraph.execute import Executor
from aetheris.taskgraph.plan import TaskGraph, args_schema

__all__ = ["GOAL_AGENT", "Planner", "PlanningFailed", "enable_goals", "run_goal"]

GOAL_AGENT = "aetheris.goal"

INSTRUCTIONS = """\
You plan work as a TaskGraph: a JSON object {"goal": str, "nodes": [...], "output": value}.
Each node has a unique "id" (letters, digits, _ or -), a "type", and optional "depends_on"
(ids of nodes that must finish first). Types:
- {"type": "tool", "tool": NAME, "args": {...}}: call a tool with exactly its arguments.
- {"type": "llm", "prompt": TEXT, "system": TEXT?, "json": BOOL?}: ask a language model.
- {"type": "agent", "agent": NAME, "input": {...}}: run an agent.
- {"type": "approval", "name": TEXT, "payload": VALUE}: ask a person to approve.
- {"type": "condition", "check": {"op": "eq|ne|lt|le|gt|ge|in|not_in|truthy|falsy",
  "left": VALUE, "right": VALUE}, "then": [ids], "else": [ids]}: choose which nodes run.
Any value may be {"$ref": "NODE_ID.output"} or {"$ref": "NODE_ID.output.key.0"}: that node's
output (which makes the node depend on it). Nodes that do not depend on each other run in
parallel. "output" is what the plan returns (usually a $ref).
Answer with the JSON object only, no prose."""


class PlanningFailed(AetherisError):
    """The model gave no valid plan in ``attempts`` answers; ``errors`` says what each lacked."""

    def __init__(self, attempts: int, errors: Sequence[str]) -> None:
        self.attempts = attempts
        self.errors = list(errors)
        shown = "; ".join(f"answer {i}: {e}" for i, e in enumerate(errors, 1))
        super().__init__(f"no valid plan after {attempts} answers from the model: {shown}")


def describe(cat: Catalog) -> str:
    """The tools and agents a plan may use, as the model reads them."""
    lines = ["Tools:"]
    for name, tool in sorted(cat.tools.items()):
        doc = (tool.fn.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        schema = json.dumps(args_schema(tool), sort_keys=True)
        lines.append(f"- {name} ({tool.effect.value}): {doc} arguments: {schema}")
    if cat.agents:
        lines.append("Agents: " + ", ".join(sorted(cat.agents)))
    if not cat.model:
        lines.append("No language model is available: do not use llm nodes.")
    return "\n".join(lines)


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def extract(content: str) -> Any:
    """The JSON document of an answer (inside a code fence if there is one)."""
    fenced = _FENCE.search(content)
    text = fenced.group(1) if fenced else content
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanInvalid([f"the answer is not JSON ({exc})"]) from None


@dataclass(frozen=True, slots=True)
class Planner:
    """Asks ``model`` for a TaskGraph, re-asking with the errors (``max_attempts`` answers)."""

    model: ChatModel
    max_attempts: int = 3
    instructions: str = INSTRUCTIONS

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("Planner.max_attempts must be at least 1")

    async def plan(self, goal: str, cat: Catalog, *, context: str | None = None) -> TaskGraph:
        """A validated plan for ``goal``; raise :class:`PlanningFailed` when none came."""
        ask = f"Goal: {goal}" + (f"\n\n{context}" if context else "")
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": f"{self.instructions}\n\n{describe(cat)}"},
            {"role": "user", "content": ask},
        ]
        errors: list[str] = []
        for _ in range(self.max_attempts):
            answer = await self.model.chat(messages)
            try:
                return validate(extract(answer.content or ""), cat)
            except PlanInvalid as exc:
                errors.append("; ".join(exc.problems))
            messages.append(answer.message)
            messages.append({"role": "user", "content": _retry(errors[-1])})
        raise PlanningFailed(self.max_attempts, errors)


def _retry(error: str) -> str:
    return f"That plan is invalid: {error}. Answer with a corrected plan, the JSON object only."


def _after_failure(failed: NodeFailed) -> str:
    done = json.dumps(failed.outputs, sort_keys=True, default=str)[:4000]
    return (
        f"A previous plan for this goal failed: {failed}. The nodes done before it returned: "
        f"{done}. Their effects happened: do not repeat them. Plan what is left."
    )


async def run_goal(
    ctx: Context,
    goal: str,
    planner: Planner,
    cat: Catalog,
    *,
    replans: int = 0,
) -> PlanOutcome:
    """Plan ``goal`` and run the plan; on a node's failure, plan again (``replans`` times)."""
    context: str | None = None
    for attempt in range(replans + 1):
        graph = await planner.plan(goal, cat, context=context)
        try:
            return await Executor(ctx, cat.tools, planner.model).run(graph)
        except NodeFailed as failed:
            if attempt == replans:
                raise
            context = _after_failure(failed)
    raise AssertionError("unreachable")  # pragma: no cover


def enable_goals(
    app: App,
    model: ChatModel,
    *,
    name: str = GOAL_AGENT,
    max_attempts: int = 3,
    replans: int = 0,
) -> None:
    """Register the agent ``name`` (input ``{"goal": "..."}``) that plans with ``model`` and
    runs the plan with ``app``'s tools; its result is the plan's outcome (the plan itself
    is in the journal, step ``taskgraph.plan``)."""
    planner = Planner(model, max_attempts)

    async def reach_goal(ctx: Context, goal: str) -> dict[str, Any]:
        cat = await catalog(app, model)
        outcome = await run_goal(ctx, goal, planner, cat, replans=replans)
        return outcome.as_json()

    app.agent(name=name)(reach_goal)
