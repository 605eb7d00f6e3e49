"""A PydanticAI agent run by Aetheris: ``python examples/pydantic_ai_agent.py``.

The agent is plain PydanticAI; ``AetherisDurability`` journals its model requests and tool calls
when it runs inside an Aetheris agent: a crashed worker's run resumes after its last recorded
step, and ``refund_card`` (at_most_once) is never dispatched twice.

Offline (the default) the model is scripted (PydanticAI's ``FunctionModel``). With
``AETHERIS_LLM_URL`` set to an OpenAI-compatible endpoint (``http://127.0.0.1:8000/v1``), the
agent talks to it through PydanticAI's ``OpenAIChatModel`` instead, which needs the ``openai``
package (``pip install 'pydantic-ai-slim[openai]'``); ``AETHERIS_LLM_MODEL`` names the model
(default ``smol``) and ``AETHERIS_LLM_API_KEY`` is its key, if it wants one.
"""

import asyncio
import json
import os
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models import Model
from pydantic_ai.models.function import AgentInfo, FunctionModel

import aetheris
from aetheris import App, Context
from aetheris.cli import render, trace_view
from aetheris.integrations.pydantic_ai import AetherisDurability

app = App()  # AETHERIS_DATABASE_URL, else sqlite:///.aetheris/aetheris.db


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A stand-in for a model: look the order up, refund it, then say so."""
    returned = [
        part
        for message in messages
        if message.kind == "request"
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    ]
    if not returned:
        return ModelResponse(parts=[ToolCallPart("lookup_order", {"order_id": "o1"})])
    if len(returned) == 1:
        order = json.loads(returned[0].model_response_str())
        refund = {"card": order["card"], "amount": order["amount"]}
        return ModelResponse(parts=[ToolCallPart("refund_card", refund)])
    return ModelResponse(parts=[TextPart(f"Refunded: {returned[-1].model_response_str()}")])


def model() -> Model:
    url = os.environ.get("AETHERIS_LLM_URL")
    if not url:
        return FunctionModel(scripted, model_name="scripted")
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=url, api_key=os.environ.get("AETHERIS_LLM_API_KEY", "-"))
    return OpenAIChatModel(os.environ.get("AETHERIS_LLM_MODEL", "smol"), provider=provider)


support = Agent(
    model(),
    instructions="You refund orders: look the order up, then refund its card.",
    capabilities=[AetherisDurability(tools={"lookup_order": "pure"})],  # others: at_most_once
)


@support.tool_plain
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"id": order_id, "card": "card_4242", "amount": 42.5}  # e.g. a database read


@support.tool_plain
def refund_card(card: str, amount: float) -> str:
    """Refund an amount to a card."""
    key = aetheris.tool_context().idempotency_key  # forward it to the provider
    return f"refund of {amount} to {card}, key {key}"  # e.g. payments.refund(..., key)


@app.agent
async def refund_order(ctx: Context, request: str) -> str:
    return (await support.run(request)).output


async def main() -> None:
    handle = await app.start("refund_order", {"request": "Please refund order o1."})
    worker = app.worker(concurrency=4)
    serving = asyncio.create_task(worker.run())
    try:
        print(f"job {handle.job_id} on {app.database_url}:")
        print(await handle.result(timeout=60))
        store = await app.open_store()
        job = await app.get_job(handle.job_id)
        render.console().print(trace_view.trace_table(job, await store.events(handle.job_id)))
    finally:
        worker.stop()
        await serving
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
