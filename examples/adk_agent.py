"""A Google ADK agent run by Aetheris, offline: ``python examples/adk_agent.py``.

A shop agent looks an order up and charges it. A scripted ``BaseLlm`` stands in for Gemini, so
nothing leaves the machine and no Google credentials are needed; with a real model, pass
``model="gemini-..."`` instead. The job runs on the embedded SQLite default with a worker in
this process, then its journal is printed: each model call and tool call is an entry, and the
charge wrote its intent before it was dispatched.
"""

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types

from aetheris import App, Context
from aetheris.cli import render, trace_view
from aetheris.integrations.adk import final_text, run_agent

app = App()  # AETHERIS_DATABASE_URL, else sqlite:///.aetheris/aetheris.db


class ScriptedLlm(BaseLlm):
    """Answers turn N of its script, N being the tool results the request holds."""

    script: list[types.Part]

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        turn = sum(1 for c in llm_request.contents for p in c.parts or [] if p.function_response)
        usage = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=20, candidates_token_count=8
        )
        content = types.Content(role="model", parts=[self.script[turn]])
        yield LlmResponse(content=content, usage_metadata=usage)


def lookup_order(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42.5}  # e.g. a database read


def charge(order_id: str, amount: float) -> str:
    """Charge the customer for an order."""
    return f"ch-{order_id}"  # e.g. payments.charge(...): at most once, even after a crash


model = ScriptedLlm(
    model="scripted",
    script=[
        types.Part(function_call=types.FunctionCall(name="lookup_order", args={"order_id": "o-1"})),
        types.Part(
            function_call=types.FunctionCall(
                name="charge", args={"order_id": "o-1", "amount": 42.5}
            )
        ),
        types.Part(text="Order o-1 is charged: ch-o-1."),
    ],
)
shop = LlmAgent(
    name="shop", instruction="You handle orders.", model=model, tools=[lookup_order, charge]
)


@app.agent
async def support(ctx: Context, request: str) -> str:
    # lookup_order only reads: pure (re-run after a crash); charge is at_most_once (the default).
    events = await run_agent(shop, request, effects={"lookup_order": "pure"})
    return final_text(events)


async def main() -> None:
    handle = await app.start("support", {"request": "Please charge order o-1."})
    worker = app.worker()
    serving = asyncio.create_task(worker.run())
    try:
        print(f"job {handle.job_id} on {app.database_url}:")
        print(await handle.result(timeout=60))
    finally:
        worker.stop()
        await serving
    job = await app.get_job(handle.job_id)
    events = await (await app.open_store()).events(handle.job_id)
    render.show(trace_view.trace_table(job, events))
    await app.close()


if __name__ == "__main__":
    asyncio.run(main())
