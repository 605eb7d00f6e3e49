"""OpenAI Agents SDK agents run by Aetheris: every model call is a journaled ``llm`` entry
and every function tool call goes through the effects ledger
(``pip install 'aetheris[openai-agents]'``).

Inside an Aetheris agent::

    from aetheris.integrations.openai_agents import run_agent

    @app.agent
    async def support(ctx: aetheris.Context, request: str) -> str:
        result = await run_agent(triage, request, effects={"lookup_order": "pure"})
        return str(result.final_output)

:func:`run_agent` does what Temporal's runner for the SDK does, with the journal in place of
activities: it clones the agent and every agent reachable through its handoffs, so that

* each model (``agent.model`` as a :class:`~agents.models.interface.Model`, or a name resolved
  by the run's provider) is wrapped in :class:`AetherisModel`, whose ``get_response`` goes
  through :func:`aetheris.modelcalls.model_call`: the request (input items, instructions,
  settings, tools, handoffs, output schema) is hashed as canonical JSON, and the
  ``ModelResponse`` is journaled as JSON and rebuilt from that JSON, live and on replay alike;
* each :class:`~agents.tool.FunctionTool` gets an ``on_invoke_tool`` that runs the original
  one inside :func:`aetheris.journaled_call`, with the effect given for its name in ``effects``
  (default ``at_most_once``); its output is journaled in a JSON form and returned in that form;
* a tool with ``needs_approval`` becomes a tool whose journaled call ``requires_approval``: the
  job parks until ``aetheris approve JOB_ID`` (or ``app.approve``) approves exactly that call,
  on any worker; a rejection gives the model the SDK's rejection message.

Function tools of one turn run one at a time, in the order the model asked for them (the
run's ``tool_execution.max_function_tool_concurrency`` is set to 1), so each takes the same
journal position on every run.

Guarantees: a model call whose record landed is never made again (resume and replay cost no
tokens); an ``at_most_once`` tool is dispatched at most once per job and call, across crashes
and workers (a crash between dispatch and record leaves it in doubt, never re-run); a replay
of an ended job runs no model and no tool.

Limits (not given, said here rather than pretended):

* A model call is pure in the ledger's terms: a worker that dies after the provider answered
  but before the record landed makes that call again (paid twice, at most once per crash).
* ``Runner.run_streamed`` is refused by :class:`AetherisModel`: only whole responses are
  journaled.
* Tools that run locally without a ``FunctionTool`` (computer, shell, local shell,
  apply-patch and custom tools) and MCP servers on an agent (``mcp_servers``) are refused: they
  would run again on every resume. Hosted tools (web and file search, code interpreter, image
  generation, hosted MCP) run inside the provider's model call and are journaled with it.
* Sessions (``session=``) are refused: a session stores history outside the journal, so a
  resumed run would send the model another request than the recorded one.
* Handoff callbacks (``on_handoff``), guardrails and hooks are not journaled: they run again on
  every resume and must be deterministic and free of effects (or call journaled tools).
* An agent used as a tool (``agent.as_tool()``) is one journaled tool call: its inner run is
  not journaled call by call, and approvals inside it are not mapped.
* A tool with a ``timeout_seconds`` may be cancelled by the SDK mid-dispatch; an
  ``at_most_once`` call cancelled that way is in doubt.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from agents import Agent, RunConfig, Runner, RunResult
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseOutputItem
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelProvider, ModelTracing
from agents.run_config import ToolExecutionConfig
from agents.run_context import RunContextWrapper
from agents.tool import (
    DEFAULT_APPROVAL_REJECTION_MESSAGE,
    CodeInterpreterTool,
    FileSearchTool,
    FunctionTool,
    HostedMCPTool,
    ImageGenerationTool,
    Tool,
    ToolOutputFileContent,
    ToolOutputImage,
    ToolOutputText,
    ToolSearchTool,
    WebSearchTool,
)
from agents.tool_context import ToolContext
from agents.usage import Usage as AgentsUsage
from pydantic import BaseModel, TypeAdapter
from pydantic_core import to_jsonable_python

from aetheris.errors import ApprovalRejected, ConfigurationError
from aetheris.ledger import journaled_call
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.store.port import EffectClass

__all__ = [
    "AetherisModel",
    "AetherisModelProvider",
    "aetheris_tools",
    "durable_run_config",
    "journaled_tool",
    "run_agent",
]

PROVIDER = "openai-agents"
EffectName: TypeAlias = EffectClass | str
_OUTPUT_ITEMS: TypeAdapter[list[TResponseOutputItem]] = TypeAdapter(list[TResponseOutputItem])
_USAGE: TypeAdapter[AgentsUsage] = TypeAdapter(AgentsUsage)
# Tools the provider runs inside its model call: journaled with the call that used them.
_HOSTED = (
    FileSearchTool,
    WebSearchTool,
    HostedMCPTool,
    ImageGenerationTool,
    CodeInterpreterTool,
    ToolSearchTool,
)
_STRUCTURED = (ToolOutputText, ToolOutputImage, ToolOutputFileContent)


# -- the model ---------------------------------------------------------------------------------


class AetherisModel(Model):
    """A :class:`Model` whose ``get_response`` is a journaled model call named ``name``
    (the journal name, and the ``NAME`` of ``AETHERIS_CRASH_AT=after_outcome:NAME``)."""

    def __init__(self, model: Model, name: str | None = None) -> None:
        self.inner: Model = model.inner if isinstance(model, AetherisModel) else model
        self.name = name or _model_name(model)

    def __repr__(self) -> str:
        return f"AetherisModel({self.inner!r}, name={self.name!r})"

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any | None,
    ) -> ModelResponse:
        request = {
            "messages": _input_items(input),
            "system_instructions": system_instructions,
            "model_settings": model_settings.to_json_dict(),
            "tools": [_tool_doc(tool) for tool in tools],
            "output_schema": _output_schema_doc(output_schema),
            "handoffs": [_handoff_doc(handoff) for handoff in handoffs],
            "previous_response_id": previous_response_id,
            "conversation_id": conversation_id,
            "prompt": to_jsonable_python(prompt),
        }

        async def call() -> ModelReply:
            response = await self.inner.get_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )
            usage = Usage(response.usage.input_tokens, response.usage.output_tokens)
            return ModelReply(_response_to_json(response), usage)

        reply = await model_call(self.name, request, call, provider=PROVIDER)
        return _response_from_json(_sorted_keys(reply.response))

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise ConfigurationError(
            f"model {self.name!r}: streamed runs (Runner.run_streamed) are not journaled by "
            "Aetheris; use Runner.run or aetheris.integrations.openai_agents.run_agent"
        )

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        await self.inner._cleanup_on_run_end(owner)

    def get_retry_advice(self, request: Any) -> Any:
        return self.inner.get_retry_advice(request)


class AetherisModelProvider(ModelProvider):
    """A :class:`ModelProvider` whose models are :class:`AetherisModel`: pass the provider (or
    the one model) the run would use otherwise; ``None`` is the SDK's default provider."""

    def __init__(self, inner: ModelProvider | Model | None = None) -> None:
        if inner is None:
            inner = RunConfig().model_provider
        self.inner = inner

    def get_model(self, model_name: str | None) -> Model:
        if isinstance(self.inner, Model):
            return AetherisModel(self.inner, model_name)
        return AetherisModel(self.inner.get_model(model_name), model_name)

    async def aclose(self) -> None:
        if isinstance(self.inner, ModelProvider):
            await self.inner.aclose()


def _model_name(model: Model) -> str:
    name = getattr(model, "model", None)
    return name if isinstance(name, str) and name else type(model).__name__


def _response_to_json(response: ModelResponse) -> dict[str, Any]:
    """A ``ModelResponse`` as plain JSON (see :func:`_response_from_json`)."""
    output = [item.model_dump(mode="json", exclude_unset=True) for item in response.output]
    return {
        "output": output,
        "usage": _USAGE.dump_python(response.usage, mode="json"),
        "response_id": response.response_id,
        "request_id": response.request_id,
        "raw_usage": response.raw_usage,
    }


def _response_from_json(doc: Mapping[str, Any]) -> ModelResponse:
    """The ``ModelResponse`` that :func:`_response_to_json` encoded."""
    return ModelResponse(
        output=_OUTPUT_ITEMS.validate_python(doc["output"]),
        usage=_USAGE.validate_python(doc["usage"]),
        response_id=doc.get("response_id"),
        request_id=doc.get("request_id"),
        raw_usage=doc.get("raw_usage"),
    )


def _input_items(input: str | list[TResponseInputItem]) -> list[Any]:
    if isinstance(input, str):
        return [{"content": input, "role": "user"}]
    return [to_jsonable_python(item) for item in input]


def _tool_doc(tool: Tool) -> dict[str, Any]:
    """What the model is told about a tool (deterministic: no callables, no clients)."""
    if isinstance(tool, FunctionTool):
        return {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.params_json_schema,
            "strict": tool.strict_json_schema,
        }
    return {"type": type(tool).__name__, "name": getattr(tool, "name", None)}


def _output_schema_doc(schema: AgentOutputSchemaBase | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    plain = schema.is_plain_text()
    return {
        "name": schema.name(),
        "plain_text": plain,
        "json_schema": None if plain else schema.json_schema(),
        "strict": schema.is_strict_json_schema(),
    }


def _handoff_doc(handoff: Handoff) -> dict[str, Any]:
    return {
        "tool_name": handoff.tool_name,
        "description": handoff.tool_description,
        "parameters": handoff.input_json_schema,
        "agent": handoff.agent_name,
    }


# -- the tools ---------------------------------------------------------------------------------


def journaled_tool(
    tool: FunctionTool, effect: EffectName = EffectClass.AT_MOST_ONCE
) -> FunctionTool:
    """A copy of ``tool`` whose every invocation is a journaled call with ``effect``, and whose
    ``needs_approval`` is an Aetheris approval of exactly that call."""
    original = tool.on_invoke_tool
    needs_approval = tool.needs_approval
    declared = EffectClass(effect)

    async def invoke(ctx: ToolContext[Any], arguments: str) -> Any:
        approve = await _needs_approval(needs_approval, ctx, arguments)

        async def dispatch(**hashed: Any) -> Any:
            # ``hashed`` is the parsed form the journal keeps; the tool gets the model's string.
            return _output_json(tool, await original(ctx, arguments))

        try:
            output = await journaled_call(
                tool.name,
                dispatch,
                {"arguments": _parsed(arguments)},
                effect=declared,
                requires_approval=approve,
            )
        except ApprovalRejected:
            return DEFAULT_APPROVAL_REJECTION_MESSAGE
        return _sorted_keys(output)

    clone = copy.copy(tool)
    clone.on_invoke_tool = invoke
    clone.needs_approval = False
    return clone


async def _needs_approval(
    policy: bool | Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]],
    ctx: ToolContext[Any],
    arguments: str,
) -> bool:
    if not callable(policy):
        return bool(policy)
    parsed = _parsed(arguments)
    if not isinstance(parsed, dict):
        return True  # the SDK asks a human about arguments it cannot inspect, and so do we
    return bool(await policy(ctx, parsed, ctx.tool_call_id))


def _parsed(arguments: str) -> Any:
    """The model's JSON arguments, parsed (as written, if they are not JSON)."""
    try:
        return json.loads(arguments) if arguments else {}
    except json.JSONDecodeError:
        return arguments


def _output_json(tool: FunctionTool, output: Any) -> Any:
    """A tool's output in the JSON form the journal keeps and the SDK gets, live and replayed.

    Strings and JSON values stay as they are; the SDK's structured outputs become the dicts it
    reads back (they carry ``type``); a tool with an output schema gets its value's JSON form
    (the SDK validates it against the schema); anything else becomes the ``str()`` the SDK
    would have shown the model.
    """
    if isinstance(output, _STRUCTURED):
        return output.model_dump(mode="json", exclude_none=True)
    if isinstance(output, list) and output and all(isinstance(o, _STRUCTURED) for o in output):
        return [o.model_dump(mode="json", exclude_none=True) for o in output]
    if _is_json(output):
        return output
    if isinstance(output, BaseModel) and (
        tool.output_json_schema is not None or tool._output_type_adapter is not None
    ):
        return output.model_dump(mode="json", by_alias=True)
    return str(output)


def _sorted_keys(value: Any) -> Any:
    """``value`` with every dict's keys in sorted order: a journal read back from a store
    holds them sorted, and what the SDK shows the model (``str()`` of a dict) must not depend
    on whether the value was just made or read back."""
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


# -- agents ------------------------------------------------------------------------------------


def aetheris_tools(
    agent: Agent[Any],
    effects: Mapping[str, EffectName] | None = None,
    *,
    default_effect: EffectName = EffectClass.AT_MOST_ONCE,
) -> Agent[Any]:
    """A clone of ``agent`` and of every agent its handoffs reach, with journaled function
    tools (``effects``: an effect per tool name, else ``default_effect``) and journaled models
    (models given as :class:`Model`; named models go through the run's provider, which
    :func:`run_agent` wraps). The original agents are left as they are."""
    effects = dict(effects or {})
    cloner = _Cloner(effects, EffectClass(default_effect))
    clone = cloner.agent(agent)
    unknown = sorted(set(effects) - cloner.tool_names)
    if unknown:
        raise ConfigurationError(
            f"effects names tools that no agent reachable from {agent.name!r} has: "
            f"{', '.join(unknown)} (tools: {', '.join(sorted(cloner.tool_names)) or 'none'})"
        )
    return clone


class _Cloner:
    """Clones a graph of agents once per agent (handoffs may form cycles)."""

    def __init__(self, effects: Mapping[str, EffectName], default: EffectClass) -> None:
        self.effects = effects
        self.default = default
        self.done: dict[int, Agent[Any]] = {}
        self.tool_names: set[str] = set()

    def agent(self, agent: Agent[Any]) -> Agent[Any]:
        if id(agent) in self.done:
            return self.done[id(agent)]
        if agent.mcp_servers:
            raise ConfigurationError(
                f"agent {agent.name!r} has MCP servers: their tool calls would not be "
                "journaled; expose them as function tools instead"
            )
        model = agent.model
        clone = agent.clone(
            model=AetherisModel(model) if isinstance(model, Model) else model,
            model_settings=agent.model_settings,
            tools=[self.tool(agent, tool) for tool in agent.tools],
        )
        self.done[id(agent)] = clone
        clone.handoffs = [self.handoff(h) for h in agent.handoffs]
        return clone

    def tool(self, agent: Agent[Any], tool: Tool) -> Tool:
        if isinstance(tool, FunctionTool):
            self.tool_names.add(tool.name)
            return journaled_tool(tool, self.effects.get(tool.name, self.default))
        if isinstance(tool, _HOSTED):
            return tool
        raise ConfigurationError(
            f"agent {agent.name!r}: tool {getattr(tool, 'name', tool)!r} "
            f"({type(tool).__name__}) runs locally outside a FunctionTool, so Aetheris cannot "
            "journal it; wrap what it does in a function tool"
        )

    def handoff(self, handoff: Agent[Any] | Handoff[Any, Any]) -> Agent[Any] | Handoff[Any, Any]:
        if isinstance(handoff, Agent):
            return self.agent(handoff)
        original = handoff.on_invoke_handoff

        async def invoke(ctx: RunContextWrapper[Any], arguments: str) -> Agent[Any]:
            return self.agent(await original(ctx, arguments))

        return dataclasses.replace(handoff, on_invoke_handoff=invoke)


def durable_run_config(run_config: RunConfig | None = None) -> RunConfig:
    """``run_config`` (or the default one) with its models journaled and its function tools
    run one at a time, in the order the model asked for them."""
    config = run_config or RunConfig()
    model = config.model
    execution = config.tool_execution or ToolExecutionConfig()
    return dataclasses.replace(
        config,
        model=AetherisModel(model) if isinstance(model, Model) else model,
        model_provider=AetherisModelProvider(config.model_provider),
        tool_execution=dataclasses.replace(execution, max_function_tool_concurrency=1),
    )


async def run_agent(
    agent: Agent[Any],
    input: str | list[TResponseInputItem],
    *,
    effects: Mapping[str, EffectName] | None = None,
    default_effect: EffectName = EffectClass.AT_MOST_ONCE,
    run_config: RunConfig | None = None,
    **options: Any,
) -> RunResult:
    """``Runner.run(agent, input, ...)`` with every model call and function tool call journaled
    (see the module docstring). ``options`` go to ``Runner.run`` (``context``, ``max_turns``,
    ``hooks``); ``session`` is refused."""
    if options.get("session") is not None:
        raise ConfigurationError(
            "run_agent does not take a session: it keeps history outside the journal, so a "
            "resumed run would not send the recorded requests; pass the history as input"
        )
    durable = aetheris_tools(agent, effects, default_effect=default_effect)
    return await Runner.run(durable, input, run_config=durable_run_config(run_config), **options)
