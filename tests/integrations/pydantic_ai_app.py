"""PydanticAI agents under Aetheris, for tests that run them in worker processes.

``PYD_WORLD`` names a folder where the scripted model appends a line per call it answers and
the side-effecting tools append a line per real dispatch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from aetheris import App, Context
from aetheris.integrations.pydantic_ai import AetherisDurability

app = App(lease_ttl=float(os.environ.get("PYD_LEASE_TTL", "30")))
WORLD = Path(os.environ.get("PYD_WORLD", "."))
ORDER_TURNS = [
    ToolCallPart("lookup", {"order_id": "o-1"}, tool_call_id="c1"),
    ToolCallPart("charge", {"order_id": "o-1", "amount": 42}, tool_call_id="c2"),
    ToolCallPart("notify", {"order_id": "o-1", "text": "charged"}, tool_call_id="c3"),
]


def note(name: str, line: str) -> None:
    with (WORLD / name).open("a") as log:
        log.write(line + "\n")


def tool_returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    return [
        part
        for message in messages
        if message.kind == "request"
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]


def orders(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Call the three tools one turn each, then answer with what they returned."""
    note("model.log", "orders")
    turn = sum(1 for message in messages if message.kind == "response")
    if turn < len(ORDER_TURNS):
        return ModelResponse(parts=[ORDER_TURNS[turn]])
    said = "; ".join(f"{r.tool_name}={r.model_response_str()}" for r in tool_returns(messages))
    return ModelResponse(parts=[TextPart(f"done: {said}")])


def refunds(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Ask for a refund (a tool that needs approval), then report how it went."""
    note("model.log", "refunds")
    returned = tool_returns(messages)
    if not returned:
        call = ToolCallPart("refund", {"order_id": "o-1", "amount": 42}, tool_call_id="r1")
        return ModelResponse(parts=[call])
    return ModelResponse(parts=[TextPart(f"{returned[0].outcome}: {returned[0].content}")])


durability = AetherisDurability(tools={"lookup": "pure", "notify": "idempotent"})
order_agent = Agent(FunctionModel(orders, model_name="orders"), capabilities=[durability])
refund_agent = Agent(FunctionModel(refunds, model_name="refunds"), capabilities=[durability])


@order_agent.tool_plain
def lookup(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42}


@order_agent.tool_plain
async def charge(order_id: str, amount: float) -> str:
    """Charge the customer for an order (undeclared: at_most_once)."""
    note("charges.log", f"{order_id} {amount}")
    return f"ch-{order_id}"


@order_agent.tool_plain
async def notify(order_id: str, text: str) -> str:
    """Tell the customer."""
    note("notices.log", f"{order_id} {text}")
    return "sent"


@refund_agent.tool_plain(requires_approval=True)
async def refund(order_id: str, amount: float) -> str:
    """Refund an order: a person approves it first."""
    note("refunds.log", f"{order_id} {amount}")
    return f"re-{order_id}"


@app.agent
async def assistant(ctx: Context, request: str) -> str:
    return (await order_agent.run(request)).output


@app.agent
async def refunder(ctx: Context, request: str) -> str:
    return (await refund_agent.run(request)).output
