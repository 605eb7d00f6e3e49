"""The durable DAG executor: a validated TaskGraph run inside an agent, node by node.

The plan (its JSON and its sha256) is journaled first, as a step ``taskgraph.plan``; a resumed
or replayed job whose plan differs parks ``nondeterminism`` there instead of running another
plan. Then the nodes run in *waves*: every node whose dependencies are done starts at once
(``asyncio.gather``), each as one durable operation (a tool call through the ledger, a model
call through :class:`~aetheris.llm.ChatModel`, a child job, an approval, a condition as a
step), and the next wave starts when the wave has landed. A node done is in the journal, so a
crash resumes after the last completed node and never runs a completed one again.

Determinism: agent code is re-run from the top on every resume, and a journal position is
given to whichever operation asks first. So within a wave the executor starts the nodes in plan
order and lets each take its position before it starts the next (:func:`_launch`), and a node
never takes a second position after an await: a tool that needs an approval is two phases,
the approval (the same request the ledger would make) in one wave, the call in the next.

Designs considered and rejected:

* Starting each node the moment its own dependencies are done (as Airflow or Dagster do): more
  overlap, but which node takes the next position would depend on which call answered first,
  and a replay, where recorded calls answer at once and in position order, would not line up.
  Journaling each scheduling decision makes it deterministic again, at the price of an extra
  journal entry per completion and a replay that must wait for recorded completions; waves
  are deterministic by construction and keep independent branches in parallel.
* A node as a child job: each would have its own journal and lease, and a plan of ten nodes
  would be ten jobs to claim; a child job is what an ``agent`` node is for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aetheris.context import Context
from aetheris.errors import AetherisError
from aetheris.journal import args_hash, to_jsonable
from aetheris.ledger import Tool
from aetheris.llm import ChatModel
from aetheris.run import JobRun, current_run
from aetheris.taskgraph.plan import (
    AgentNode,
    ApprovalNode,
    Check,
    ConditionNode,
    LlmNode,
    Node,
    Ref,
    TaskGraph,
    ToolNode,
    check_args,
    dependencies,
    inputs_of,
    is_ref,
)
from aetheris.tools import ToolDef


class NodeFailed(AetherisError):
    """A node of a plan failed; ``outputs`` holds what the nodes done before it returned."""

    def __init__(self, node: str, error: BaseException, outputs: Mapping[str, Any]) -> None:
        self.node = node
        self.error_type = type(error).__name__
        self.outputs = dict(outputs)
        super().__init__(f"node {node!r} failed: {self.error_type}: {error}")


class ArgumentsInvalid(AetherisError):
    """What a node's references brought does not fit its tool's arguments."""


class ReferenceError_(AetherisError):
    """A ``$ref`` names a path that the referenced node's output does not have."""


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    """What a plan did: its hash, each node's output, the nodes skipped, its ``output``."""

    plan_hash: str
    outputs: dict[str, Any]
    skipped: list[str]
    result: Any

    def as_json(self) -> dict[str, Any]:
        return {
            "plan_hash": self.plan_hash,
            "outputs": self.outputs,
            "skipped": self.skipped,
            "result": self.result,
        }


@dataclass(slots=True)
class _Failure:
    error: Exception


@dataclass(slots=True)
class _State:
    """Where a plan stands: outputs of the nodes done, nodes skipped, phases done per node."""

    graph: TaskGraph
    deps: dict[str, tuple[str, ...]]
    outputs: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    phase: dict[str, int] = field(default_factory=dict)

    def settled(self, node_id: str) -> bool:
        return node_id in self.outputs or node_id in self.skipped

    def ready(self) -> list[Node]:
        """The nodes that may run now, in plan order (after skipping what must be skipped)."""
        while self._skip_one():
            pass
        return [
            n
            for n in self.graph.nodes
            if not self.settled(n.id) and all(self.settled(d) for d in self.deps[n.id])
        ]

    def _skip_one(self) -> bool:
        for node in self.graph.nodes:
            if self.settled(node.id) or not all(self.settled(d) for d in self.deps[node.id]):
                continue
            deps = self.deps[node.id]
            skip = [d in self.skipped for d in deps]
            cut = (all(skip) and bool(deps)) if node.join == "any" else any(skip)
            if cut or self._gated_off(node.id):
                self.skipped.append(node.id)
                return True
        return False

    def _gated_off(self, node_id: str) -> bool:
        for node in self.graph.nodes:
            if isinstance(node, ConditionNode) and node.id in self.outputs:
                held = bool(self.outputs[node.id])
                if (node_id in node.then and not held) or (node_id in node.otherwise and held):
                    return True
        return False


def resolve(value: Any, outputs: Mapping[str, Any], where: str) -> Any:
    """``value`` with each ``{"$ref": ...}`` replaced by what it names."""
    if is_ref(value):
        ref = Ref.parse(value["$ref"], where)
        if ref.node not in outputs:
            return None  # a skipped node, met by a ``join: any`` node
        found = outputs[ref.node]
        for i, key in enumerate(ref.path):
            found = _index(found, key, ref, i, where)
        return found
    if isinstance(value, Mapping):
        return {k: resolve(v, outputs, where) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, outputs, where) for v in value]
    return value


def _index(found: Any, key: str, ref: Ref, i: int, where: str) -> Any:
    if isinstance(found, Mapping) and key in found:
        return found[key]
    if (
        isinstance(found, list)
        and key.lstrip("-").isdigit()
        and -len(found) <= int(key) < len(found)
    ):
        return found[int(key)]
    shown = ".".join((ref.node, "output", *ref.path[:i]))
    raise ReferenceError_(f"{where}: {shown} has no {key!r} (it is {json.dumps(found)[:200]})")


async def _evaluate(op: str, left: Any, right: Any) -> bool:
    tests: dict[str, Callable[[Any, Any], Any]] = {
        "eq": lambda a, b: a == b,
        "ne": lambda a, b: a != b,
        "lt": lambda a, b: a < b,
        "le": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "ge": lambda a, b: a >= b,
        "in": lambda a, b: a in b,
        "not_in": lambda a, b: a not in b,
        "truthy": lambda a, _: bool(a),
        "falsy": lambda a, _: not a,
    }
    return bool(tests[op](left, right))


async def _record_plan(document: dict[str, Any], digest: str) -> dict[str, Any]:
    return {"plan": document, "hash": digest}


class Executor:
    """Runs one TaskGraph inside a running agent (see the module docstring)."""

    def __init__(
        self,
        ctx: Context,
        tools: Mapping[str, ToolDef],
        model: ChatModel | Callable[[], ChatModel] | None = None,
    ) -> None:
        self.ctx = ctx
        self.tools = tools
        self._model = model
        self._phases: dict[type[Any], Callable[[Any, Any, _State], Awaitable[Any]]] = {
            ToolNode: self._tool,
            LlmNode: self._llm,
            AgentNode: self._agent,
            ApprovalNode: self._approval,
            ConditionNode: self._condition,
        }

    async def run(self, graph: TaskGraph) -> PlanOutcome:
        """Journal the plan, then run its nodes wave by wave; raise :class:`NodeFailed`."""
        run = current_run.get()
        if run is None:
            raise AetherisError("a TaskGraph runs inside a running agent (ctx given to it)")
        digest = graph.hash
        await self.ctx.step("taskgraph.plan", _record_plan, graph.document(), digest)
        state = _State(graph, dependencies(graph))
        while wave := state.ready():
            results = await _launch(run, [self._phase(node, state) for node in wave])
            for node, result in zip(wave, results, strict=True):
                if isinstance(result, _Failure):
                    raise NodeFailed(node.id, result.error, state.outputs) from result.error
                if result is not _MORE:
                    state.outputs[node.id] = result
        output = resolve(graph.output, state.outputs, "the plan's output")
        return PlanOutcome(digest, state.outputs, state.skipped, output)

    async def _phase(self, node: Node, state: _State) -> Any:
        """One durable operation of ``node``; its own failure is returned, not raised."""
        try:
            where = f"node {node.id!r}"
            inputs = resolve(inputs_of(node), state.outputs, where)
            return await self._phases[type(node)](node, inputs, state)
        except Exception as exc:
            return _Failure(exc)

    async def _tool(self, node: ToolNode, args: dict[str, Any], state: _State) -> Any:
        definition = self.tools[node.tool]
        if wrong := check_args(definition, args):  # what references brought, checked now
            raise ArgumentsInvalid("; ".join(wrong))
        if definition.requires_approval and state.phase.get(node.id, 0) == 0:
            # The approval the ledger would ask for (same name, same request), as a phase of
            # its own: the call then takes its position in the next wave, not after an await.
            request = {
                "tool": definition.name,
                "args": [],
                "kwargs": to_jsonable(args),
                "args_hash": args_hash((), args),
            }
            await self.ctx.approval(
                f"tool:{definition.name}", request, timeout=definition.approval_timeout
            )
            state.phase[node.id] = 1
            return _MORE
        if definition.requires_approval:
            definition = dataclasses.replace(definition, requires_approval=False)
        return to_jsonable(await Tool(definition)(**args))

    async def _llm(self, node: LlmNode, prompt: Any, state: _State) -> Any:
        text = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
        messages = [{"role": "user", "content": text}]
        if node.system:
            messages.insert(0, {"role": "system", "content": node.system})
        answer = await self.model().chat(messages)
        content = answer.content or ""
        if not node.json_output:
            return content
        try:
            return json.loads(content)
        except json.JSONDecodeError as exc:
            raise AetherisError(
                f"the model's answer is not JSON ({exc}): {content[:200]!r}"
            ) from None

    async def _agent(self, node: AgentNode, data: dict[str, Any], state: _State) -> Any:
        return to_jsonable(await self.ctx.run_agent(node.agent, data))

    async def _approval(self, node: ApprovalNode, payload: Any, state: _State) -> Any:
        decision = await self.ctx.approval(node.name, payload, timeout=node.timeout)
        return to_jsonable(dataclasses.asdict(decision))

    async def _condition(self, node: ConditionNode, sides: dict[str, Any], state: _State) -> Any:
        check: Check = node.check
        return await self.ctx.step(
            f"condition:{node.id}", _evaluate, check.op, sides["left"], sides["right"]
        )

    def model(self) -> ChatModel:
        """The model of ``llm`` nodes (built on first use when given as a factory)."""
        if self._model is None:
            self._model = ChatModel()  # from AETHERIS_LLM_MODEL / _URL / _API_KEY
        if not isinstance(self._model, ChatModel):
            self._model = self._model()
        return self._model


_MORE = object()  # a phase done, the node not yet


async def _launch(run: JobRun, phases: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Start ``phases`` in order, each once the one before has taken its journal position
    (or ended), and wait for all of them: positions do not depend on timing."""
    tasks: list[asyncio.Task[Any]] = []
    for phase in phases:
        before = run.next_position
        task = asyncio.ensure_future(phase)
        tasks.append(task)
        spins = 0
        while run.next_position == before and not task.done():
            # Usually one turn of the loop; longer when an operation reads before it takes
            # its position (a model call reads the job's budget once per run).
            await asyncio.sleep(0 if spins < 50 else 0.001)
            spins += 1
    return list(await asyncio.gather(*tasks))
