"""The TaskGraph format: a plan of typed nodes, and its validation before anything runs.

A plan is JSON (or YAML)::

    {"goal": "refund order o1",
     "nodes": [
       {"id": "order", "type": "tool", "tool": "lookup_order", "args": {"order_id": "o1"}},
       {"id": "ok", "type": "approval", "name": "refund", "payload": {"$ref": "order.output"}},
       {"id": "pay", "type": "tool", "tool": "refund_card", "depends_on": ["ok"],
        "args": {"card": {"$ref": "order.output.card"},
                 "amount": {"$ref": "order.output.amount"}}}],
     "output": {"$ref": "pay.output"}}

Node types: ``tool`` (a registered tool with its arguments), ``llm`` (a prompt to the model),
``agent`` (a child job of a registered agent), ``approval`` (a person's decision) and
``condition`` (a comparison that selects which nodes run). Edges are the ``depends_on`` lists
and every ``{"$ref": "NODE.output[.path]"}`` in a node's inputs. :func:`validate` refuses,
naming each problem: duplicate ids, a reference to a node that does not exist, a cycle (named
node by node), an unknown tool or agent, and tool arguments that break the tool's signature.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from aetheris.errors import InvalidInput
from aetheris.journal import canonical
from aetheris.tools import ToolDef, type_hints

NODE_ID = r"^[A-Za-z_][A-Za-z0-9_\-]*$"


class PlanInvalid(InvalidInput):
    """A TaskGraph that cannot run; ``problems`` lists each reason, in plain words."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid plan: " + "; ".join(problems))


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=NODE_ID)
    depends_on: tuple[str, ...] = ()
    description: str | None = None
    join: Literal["all", "any"] = Field(
        default="all",
        description="all: skipped when any node it depends on was skipped; any: runs once its "
        "dependencies are settled if at least one ran (where the branches of a condition "
        "meet); a reference to a skipped node's output is then null.",
    )


class ToolNode(_Node):
    """Call the registered tool ``tool`` with ``args`` (its journal entry follows its effect)."""

    type: Literal["tool"]
    tool: str
    args: dict[str, Any] = {}


class LlmNode(_Node):
    """Ask the model: ``prompt`` (and ``system``); ``json: true`` parses the answer as JSON."""

    type: Literal["llm"]
    prompt: Any
    system: str | None = None
    json_output: bool = Field(default=False, alias="json")


class AgentNode(_Node):
    """Run the registered agent ``agent`` on ``input`` as a child job; its result is the output."""

    type: Literal["agent"]
    agent: str
    input: dict[str, Any] = {}


class ApprovalNode(_Node):
    """Wait for a person to approve ``payload``; a rejection fails the node."""

    type: Literal["approval"]
    name: str
    payload: Any = None
    timeout: float | None = Field(default=None, gt=0)


class Check(BaseModel):
    """A comparison: ``left OP right`` (``truthy``/``falsy`` look at ``left`` only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Literal["eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "truthy", "falsy"]
    left: Any
    right: Any = None


class ConditionNode(_Node):
    """Evaluate ``check``; the nodes of ``then`` run if it holds, those of ``else`` if not.

    A node that is not run is *skipped*, and so is every node that depends on a skipped one,
    unless it says ``join: any`` (then it runs if any node it depends on ran: where the two
    branches meet).
    """

    type: Literal["condition"]
    check: Check
    then: tuple[str, ...] = ()
    otherwise: tuple[str, ...] = Field(default=(), alias="else")


Node = Annotated[
    ToolNode | LlmNode | AgentNode | ApprovalNode | ConditionNode, Field(discriminator="type")
]


class TaskGraph(BaseModel):
    """A validated plan: nodes in the order given, and what the plan returns (``output``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: str | None = None
    nodes: tuple[Node, ...] = Field(min_length=1)
    output: Any = None

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def document(self) -> dict[str, Any]:
        """The plan as JSON (aliases, no defaults), the form that is journaled and hashed."""
        doc: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return doc

    @property
    def hash(self) -> str:
        """sha256 of the plan's canonical JSON: what the journal records before it runs."""
        return hashlib.sha256(canonical(self.document())).hexdigest()


def json_schema() -> dict[str, Any]:
    """The JSON schema of a TaskGraph document (for models asked to write one)."""
    return TaskGraph.model_json_schema(by_alias=True)


# -- parsing --------------------------------------------------------------------------------------


def parse(document: Any) -> TaskGraph:
    """A TaskGraph from its JSON form (a dict, or JSON/YAML text); the format alone is checked."""
    if isinstance(document, str):
        document = _load_text(document, "the plan")
    if isinstance(document, TaskGraph):
        return document
    if not isinstance(document, Mapping):
        raise PlanInvalid([f"a plan must be an object, not {type(document).__name__}"])
    try:
        return TaskGraph.model_validate(dict(document))
    except ValidationError as exc:
        raise PlanInvalid([_format_error(err, document) for err in exc.errors()]) from None


def load(path: str | Path) -> TaskGraph:
    """A TaskGraph from a ``.json``, ``.yaml`` or ``.yml`` file."""
    text = Path(path).read_text("utf-8")
    return parse(_load_text(text, str(path)))


def _load_text(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:  # YAML is optional: PyYAML is not a dependency of the runtime
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise PlanInvalid([f"{where} is not JSON (YAML plans need PyYAML installed)"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlanInvalid([f"{where} is neither JSON nor YAML: {exc}"]) from None


def _format_error(err: Mapping[str, Any], document: Mapping[str, Any]) -> str:
    loc = list(err["loc"])
    where = ".".join(str(p) for p in loc) or "plan"
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        nodes = document.get("nodes") or []
        node = nodes[loc[1]] if loc[1] < len(nodes) else None
        named = node.get("id") if isinstance(node, Mapping) else None
        rest = ".".join(str(p) for p in loc[3:] if p not in {"tool", "llm", "agent"})
        where = f"node {named or loc[1]!r}" + (f" field {rest!r}" if rest else "")
    return f"{where}: {err['msg']}"


# -- references -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """``{"$ref": "NODE.output.a.0"}``: the output of ``NODE``, then keys and indexes ``path``."""

    node: str
    path: tuple[str, ...]

    @classmethod
    def parse(cls, text: Any, where: str) -> Ref:
        parts = text.split(".") if isinstance(text, str) else []
        if len(parts) < 2 or parts[1] != "output" or not parts[0]:
            raise PlanInvalid([f"{where}: a $ref is 'NODE.output[.path]', not {text!r}"])
        return cls(parts[0], tuple(parts[2:]))


def is_ref(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) == 1 and "$ref" in value


def refs_in(value: Any, where: str) -> Iterator[Ref]:
    """Every reference in ``value``, however deep."""
    if is_ref(value):
        yield Ref.parse(value["$ref"], where)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from refs_in(item, where)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from refs_in(item, where)


def has_ref(value: Any) -> bool:
    """Whether ``value`` holds a reference anywhere (well formed or not)."""
    if is_ref(value):
        return True
    if isinstance(value, Mapping):
        return any(has_ref(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(has_ref(v) for v in value)
    return False


def inputs_of(node: Node) -> Any:
    """What of a node may hold references (what is resolved before it runs)."""
    if isinstance(node, ToolNode):
        return node.args
    if isinstance(node, LlmNode):
        return node.prompt
    if isinstance(node, AgentNode):
        return node.input
    if isinstance(node, ApprovalNode):
        return node.payload
    return {"left": node.check.left, "right": node.check.right}


def dependencies(graph: TaskGraph) -> dict[str, tuple[str, ...]]:
    """Each node's dependencies: ``depends_on``, its references, and the condition gating it."""
    gates = {
        member: node.id
        for node in graph.nodes
        if isinstance(node, ConditionNode)
        for member in (*node.then, *node.otherwise)
    }
    found: dict[str, tuple[str, ...]] = {}
    for node in graph.nodes:
        refs = (r.node for r in refs_in(inputs_of(node), f"node {node.id!r}"))
        gate = (gates[node.id],) if node.id in gates else ()
        found[node.id] = tuple(dict.fromkeys((*node.depends_on, *refs, *gate)))
    return found


# -- validation -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Catalog:
    """What a plan may use: the tools (by name), the agents (``None``: not checked), whether
    a model is there for ``llm`` nodes."""

    tools: Mapping[str, ToolDef]
    agents: Collection[str] | None = None
    model: bool = True


def validate(document: Any, catalog: Catalog | None = None) -> TaskGraph:
    """Parse and check a plan; raise :class:`PlanInvalid` naming every problem found.

    Without a ``catalog`` only the plan itself is checked (ids, references, cycles).
    """
    graph = parse(document)
    problems = _structure(graph)
    if not problems:
        problems = _cycle(graph)
    if catalog is not None:
        problems += [p for node in graph.nodes for p in _against(node, catalog)]
    if problems:
        raise PlanInvalid(problems)
    return graph


def _structure(graph: TaskGraph) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for node in graph.nodes:
        if node.id in seen:
            problems.append(f"duplicate node id {node.id!r}")
        seen.add(node.id)
    for node in graph.nodes:
        where = f"node {node.id!r}"
        try:
            named = [r.node for r in refs_in(inputs_of(node), where)]
        except PlanInvalid as exc:
            problems += exc.problems
            continue
        if isinstance(node, ConditionNode):
            named += [*node.then, *node.otherwise]
        problems += [
            f"{where} refers to node {other!r}, which is not in the plan"
            for other in dict.fromkeys((*node.depends_on, *named))
            if other not in seen
        ]
    try:
        outputs = [r.node for r in refs_in(graph.output, "the plan's output")]
    except PlanInvalid as exc:
        return problems + exc.problems
    problems += [f"the plan's output refers to node {o!r}, which is not in the plan"
                 for o in outputs if o not in seen]  # fmt: skip
    return problems


def _cycle(graph: TaskGraph) -> list[str]:
    """The first cycle found, named node by node (``a -> b -> a``)."""
    deps = dependencies(graph)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in deps[node]:
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        state[node] = 2
        path.pop()
        return None

    for node in graph.nodes:
        if node.id not in state and (cycle := visit(node.id)) is not None:
            return [f"the plan has a cycle: {' -> '.join(reversed(cycle))}"]
    return []


def _against(node: Node, catalog: Catalog) -> list[str]:
    where = f"node {node.id!r}"
    if isinstance(node, ToolNode):
        tool = catalog.tools.get(node.tool)
        if tool is None:
            known = ", ".join(sorted(catalog.tools)) or "none"
            return [f"{where}: unknown tool {node.tool!r} (tools: {known})"]
        return [f"{where}: {p}" for p in check_args(tool, node.args)]
    agents = catalog.agents
    if isinstance(node, AgentNode) and agents is not None and node.agent not in agents:
        known = ", ".join(sorted(agents)) or "none"
        return [f"{where}: unknown agent {node.agent!r} (agents: {known})"]
    if isinstance(node, LlmNode) and not catalog.model:
        return [f"{where}: an llm node needs a model, and none is configured"]
    return []


def args_model(tool: ToolDef) -> type[BaseModel]:
    """The arguments of ``tool`` as a pydantic model, from its signature (no extras allowed)."""
    hints = type_hints(tool.fn)
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for param in inspect.signature(tool.fn).parameters.values():
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    config = ConfigDict(extra=extra, arbitrary_types_allowed=True)
    model: type[BaseModel] = create_model(f"{tool.name}_args", __config__=config, **fields)
    return model


def args_schema(tool: ToolDef) -> dict[str, Any]:
    """The JSON schema of ``tool``'s arguments."""
    schema = args_model(tool).model_json_schema()
    schema.pop("title", None)
    return schema


def check_args(tool: ToolDef, args: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``args`` for ``tool``; arguments given by reference are checked
    for presence only (their values are known when the node runs)."""
    dynamic = {name for name, value in args.items() if has_ref(value)}
    static = {name: value for name, value in args.items() if name not in dynamic}
    try:
        args_model(tool).model_validate(static)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not (e["loc"] and e["loc"][0] in dynamic)]
        return [_arg_error(tool.name, e) for e in errors]
    return []


def _arg_error(tool: str, err: Mapping[str, Any]) -> str:
    field = ".".join(str(p) for p in err["loc"]) or "arguments"
    if err["type"] == "missing":
        return f"tool {tool!r} needs argument {field!r}, which is missing"
    if err["type"] == "extra_forbidden":
        return f"tool {tool!r} takes no argument {field!r}"
    return f"tool {tool!r} argument {field!r}: {err['msg']} (got {err.get('input')!r})"
