"""LangGraph agents on Aetheris, for tests that run them in-process and in worker processes.

``LG_WORLD`` names a folder where the tools append a line per real dispatch (``charges.log``,
``shipments.log``) and the scripted model a line per real call (``model.log``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import interrupt

from aetheris import App, Context
from aetheris.integrations.langgraph import (
    AetherisChatModel,
    AetherisCheckpointer,
    DurableTools,
    node_call,
    run_graph,
)

ORDER_SCRIPT: list[dict[str, Any]] = [
    {"tool_calls": [{"name": "lookup", "args": {"order_id": "o-1"}, "id": "c1"}]},
    {"tool_calls": [{"name": "charge", "args": {"order_id": "o-1", "amount": 42}, "id": "c2"}]},
    {"content": "Charged order o-1: ch-o-1."},
]
ANSWER = "Charged order o-1: ch-o-1."


def world() -> Path:
    return Path(os.environ.get("LG_WORLD", "."))


def note(log: str, line: str) -> None:
    with (world() / log).open("a") as file:
        file.write(line + "\n")


def lines(folder: Path, log: str) -> list[str]:
    path = folder / log
    return path.read_text().splitlines() if path.exists() else []


class ScriptedChatModel(GenericFakeChatModel):
    """A scripted chat model: turn N of a conversation (N answers so far) gets reply N, in any
    process; each real call is counted in ``model.log``. ``bind_tools`` returns the model (the
    base class refuses, which breaks ``create_agent``)."""

    script: list[dict[str, Any]]
    messages: Iterator[AIMessage | str] = iter(())

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        turn = sum(1 for m in messages if isinstance(m, AIMessage))
        note("model.log", f"turn {turn}")
        reply = self.script[turn]
        usage = {"input_tokens": 10 * len(messages), "output_tokens": 5, "total_tokens": 0}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        message = AIMessage(
            content=reply.get("content", ""),
            tool_calls=reply.get("tool_calls", []),
            usage_metadata=usage,  # type: ignore[arg-type]
        )
        self.messages = iter([message])
        return super()._generate(messages, *args, **kwargs)


@tool
async def lookup(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42}


@tool
async def charge(order_id: str, amount: float) -> str:
    """Charge the customer for an order."""
    note("charges.log", f"{order_id} {amount:g}")
    return f"ch-{order_id}"


TOOLS = [lookup, charge]


def order_graph(app: App, model: Any) -> Any:
    """A model node and a tool node: the classic tool loop, journaled call by call."""
    bound = model.bind_tools(TOOLS)

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await bound.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(TOOLS, awrap_tool_call=DurableTools({"lookup": "pure"})))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=AetherisCheckpointer(app))


async def ship(order_id: str) -> str:
    note("shipments.log", order_id)
    return f"sh-{order_id}"


def confirm_graph(app: App, model: Any) -> Any:
    """One node that asks the model, charges, then asks a human (``interrupt``), then ships:
    after the human answers, LangGraph runs the node again from its top."""

    async def pay_and_confirm(state: MessagesState) -> dict[str, Any]:
        answer = await model.ainvoke(state["messages"])
        receipt = await node_call("charge", charge.coroutine, {"order_id": "o-1", "amount": 42})
        decision = interrupt({"question": "ship order o-1?", "receipt": receipt})
        if not decision.get("approved"):
            return {"messages": [answer, AIMessage(content="not shipped")]}
        shipment = await node_call("ship", ship, {"order_id": "o-1"})
        return {"messages": [answer, AIMessage(content=f"{receipt} {shipment}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("pay_and_confirm", pay_and_confirm)
    builder.add_edge(START, "pay_and_confirm")
    builder.add_edge("pay_and_confirm", END)
    return builder.compile(checkpointer=AetherisCheckpointer(app))


CONFIRM_SCRIPT: list[dict[str, Any]] = [{"content": "Order o-1 costs 42."}]


def build(url: str | None = None, lease_ttl: float = 2.0) -> App:
    """The app with both agents, on ``url`` (default: ``AETHERIS_DATABASE_URL``)."""
    app = App(url, lease_ttl=lease_ttl)
    model = AetherisChatModel(ScriptedChatModel(script=ORDER_SCRIPT), name="scripted")
    orders = order_graph(app, model)
    confirm_model = AetherisChatModel(ScriptedChatModel(script=CONFIRM_SCRIPT), name="scripted")
    confirm = confirm_graph(app, confirm_model)

    @app.agent
    async def assistant(ctx: Context, request: str) -> str:
        output = await run_graph(ctx, orders, {"messages": [HumanMessage(request)]})
        return str(output["messages"][-1].content)

    @app.agent
    async def confirmer(ctx: Context, request: str) -> str:
        output = await run_graph(ctx, confirm, {"messages": [HumanMessage(request)]})
        return str(output["messages"][-1].content)

    return app


app = build(lease_ttl=float(os.environ.get("LG_LEASE_TTL", "30")))
