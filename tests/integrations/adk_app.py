"""A Google ADK shop assistant, for tests that run it in worker processes.

``ADK_WORLD`` names a folder where the model appends a line per real call (``model.log``) and
the ``charge`` and ``refund`` tools a line per real dispatch. The model answers turn N of its
script, N being the function responses the request holds, so a second worker process answers
the turns it is asked exactly as the first would have.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models import BaseLlm, LlmRequest, LlmResponse
from google.adk.tools import FunctionTool, ToolContext
from google.genai import types

from aetheris import App, Context
from aetheris.integrations.adk import final_text, run_agent

app = App(lease_ttl=float(os.environ.get("ADK_LEASE_TTL", "30")))


def world() -> Path:
    return Path(os.environ.get("ADK_WORLD", "."))


def call(name: str, **args: Any) -> types.Part:
    return types.Part(function_call=types.FunctionCall(name=name, args=args))


CHARGE = [
    [call("lookup", order_id="o-1")],
    [call("charge", order_id="o-1", amount=42)],
    [types.Part(text="Charged order o-1: ch-o-1.")],
]
REFUND = [[call("refund", order_id="o-1", amount=42)], [types.Part(text="Refund handled.")]]


class ScriptedLlm(BaseLlm):
    """Answers turn N of ``script``; counts its calls, and logs each to ``log`` if given."""

    script: list[list[types.Part]]
    log: Path | None = None
    calls: int = 0

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.calls += 1
        if self.log is not None:
            with self.log.open("a") as log:
                log.write("call\n")
        turn = sum(1 for c in llm_request.contents for p in c.parts or [] if p.function_response)
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=10, candidates_token_count=5
        )
        content = types.Content(role="model", parts=self.script[turn])
        yield LlmResponse(content=content, usage_metadata=usage)


def lookup(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42}


def charge(order_id: str, amount: float, tool_context: ToolContext) -> str:
    """Charge the customer for an order."""
    with (world() / "charges.log").open("a") as log:
        log.write(f"{order_id} {amount:g}\n")
    tool_context.state["charged"] = order_id
    return f"ch-{order_id}"


def refund(order_id: str, amount: float) -> str:
    """Refund an order (a person confirms each refund)."""
    with (world() / "refunds.log").open("a") as log:
        log.write(f"{order_id} {amount:g}\n")
    return f"re-{order_id}"


def shop_agent(model: BaseLlm) -> LlmAgent:
    return LlmAgent(
        name="shop", instruction="You handle orders.", model=model, tools=[lookup, charge]
    )


def refund_agent(model: BaseLlm) -> LlmAgent:
    tool = FunctionTool(refund, require_confirmation=True)
    return LlmAgent(name="refunds", instruction="You refund orders.", model=model, tools=[tool])


@app.agent
async def shop(ctx: Context, request: str) -> str:
    model = ScriptedLlm(model="scripted", script=CHARGE, log=world() / "model.log")
    events = await run_agent(shop_agent(model), request, effects={"lookup": "pure"})
    return final_text(events)


@app.agent
async def refunds(ctx: Context, request: str) -> str:
    model = ScriptedLlm(model="scripted", script=REFUND, log=world() / "model.log")
    return final_text(await run_agent(refund_agent(model), request))
