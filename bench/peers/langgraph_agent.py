"""A2's LangGraph agent, the same in both venvs that run it (Aetheris's and LangGraph's).

The classic tool loop: a model node and a ``ToolNode`` (``tools_condition`` between them), on
``MessagesState``. The chat model is scripted (``bench.peers.agent_script``: one tool call per
turn, then text); the tools are ``lookup``, ``reserve`` and ``charge``. What makes it durable is
what the caller passes: a checkpointer (LangGraph's SQLite or PostgreSQL saver, or Aetheris's),
a model wrapper and a tool-call wrapper (Aetheris: ``AetherisChatModel``, ``DurableTools``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from bench.peers import agent_script


class ScriptedChatModel(GenericFakeChatModel):
    """Turn t (t answers so far) asks for tool ``t % 3`` until N turns are done; N is read
    from the first human message. ``bind_tools`` returns the model itself."""

    messages: Iterator[AIMessage | str] = iter(())

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        turn = sum(1 for m in messages if isinstance(m, AIMessage))
        first = next(m for m in messages if isinstance(m, HumanMessage))
        turns = agent_script.turns_in(str(first.content))
        agent_script.model_called(turn)
        if turn < turns:
            name = agent_script.tool_for(turn)
            call = {"name": name, "args": agent_script.tool_args(turn), "id": f"call-{turn}"}
            reply = AIMessage(content="", tool_calls=[call])
        else:
            reply = AIMessage(content=agent_script.answer(turns))
        self.messages = iter([reply])
        return super()._generate(messages, *args, **kwargs)


@tool
async def lookup(item: int) -> str:
    """Look an item up (pure)."""
    return agent_script.tool_called("lookup", item)


@tool
async def reserve(item: int) -> str:
    """Reserve an item (idempotent)."""
    return agent_script.tool_called("reserve", item)


@tool
async def charge(item: int) -> str:
    """Charge for an item (at most once)."""
    return agent_script.tool_called("charge", item)


TOOLS = [lookup, reserve, charge]


def build(
    checkpointer: Any = None,
    model: Any = None,
    awrap_tool_call: Callable[..., Any] | None = None,
) -> Any:
    """The compiled tool loop; ``model`` defaults to the scripted model itself."""
    bound = (model if model is not None else ScriptedChatModel()).bind_tools(TOOLS)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(TOOLS, awrap_tool_call=awrap_tool_call))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)


def start(turns: int) -> dict[str, Any]:
    """The graph's input for a run of ``turns`` turns."""
    return {"messages": [HumanMessage(agent_script.prompt(turns))]}


def limit(turns: int) -> dict[str, Any]:
    """Each turn is two super-steps (model, tools), plus the final answer."""
    return {"recursion_limit": 2 * turns + 10}


def config(thread_id: str, turns: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}, **limit(turns)}


def check(output: dict[str, Any], turns: int) -> None:
    said = output["messages"][-1].content
    if said != agent_script.answer(turns):
        raise ValueError(f"the graph answered {said!r}, expected {agent_script.answer(turns)!r}")
