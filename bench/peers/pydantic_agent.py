"""A1's PydanticAI agent, the same in every venv that runs it (Aetheris, DBOS, Temporal).

A scripted ``FunctionModel`` (``bench.peers.agent_script``: one tool call per turn, then text)
and three function tools, ``lookup``, ``reserve`` and ``charge``. What makes it durable is the
capability the caller passes: ``AetherisDurability``, ``DBOSDurability``,
``TemporalDurability``, or none (the plain run, the floor). ``wrap`` lets a backend decorate a
tool's function before it is registered (DBOS: ``@DBOS.step()`` on the tools with side effects,
as DBOS's PydanticAI guide asks, since ``DBOSDurability`` makes model requests steps but runs
function tools in the workflow itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits

from bench.peers import agent_script

Wrap = Callable[[str, Callable[..., Any]], Callable[..., Any]]


def _prompt_text(messages: list[ModelMessage]) -> str:
    for message in messages:
        if message.kind == "request":
            for part in message.parts:
                if isinstance(part, UserPromptPart) and isinstance(part.content, str):
                    return part.content
    raise ValueError("no user prompt in the conversation")


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Turn t (t answers so far) asks for tool ``t % 3`` until N turns are done."""
    turn = sum(1 for message in messages if message.kind == "response")
    turns = agent_script.turns_in(_prompt_text(messages))
    agent_script.model_called(turn)
    if turn < turns:
        name = agent_script.tool_for(turn)
        call = ToolCallPart(name, agent_script.tool_args(turn), tool_call_id=f"call-{turn}")
        return ModelResponse(parts=[call])
    return ModelResponse(parts=[TextPart(agent_script.answer(turns))])


async def lookup(item: int) -> str:
    """Look an item up (pure)."""
    return agent_script.tool_called("lookup", item)


async def reserve(item: int) -> str:
    """Reserve an item (idempotent)."""
    return agent_script.tool_called("reserve", item)


async def charge(item: int) -> str:
    """Charge for an item (at most once)."""
    return agent_script.tool_called("charge", item)


FUNCTIONS = {"lookup": lookup, "reserve": reserve, "charge": charge}


def build(capabilities: Sequence[Any] = (), name: str = "a1", wrap: Wrap | None = None) -> Agent:
    """The agent with the given durability capability (or none)."""
    model = FunctionModel(scripted, model_name="scripted")
    agent: Agent = Agent(model, name=name, capabilities=list(capabilities))
    for tool_name, function in FUNCTIONS.items():
        agent.tool_plain(name=tool_name)(wrap(tool_name, function) if wrap else function)
    return agent


def limits(turns: int) -> UsageLimits:
    """PydanticAI stops a run at 50 requests by default; a run of N turns makes N + 1."""
    return UsageLimits(request_limit=turns + 10)


async def run(agent: Agent, turns: int) -> str:
    """One run of ``turns`` turns; its answer, checked."""
    result = await agent.run(agent_script.prompt(turns), usage_limits=limits(turns))
    check(result.output, turns)
    return str(result.output)


def check(output: object, turns: int) -> None:
    if output != agent_script.answer(turns):
        raise ValueError(f"the agent answered {output!r}, expected {agent_script.answer(turns)!r}")
