"""An OpenAI Agents SDK agent run by Aetheris, offline: ``python examples/openai_agents_agent.py``.

A triage agent hands off to billing, which looks an order up and charges it. A scripted model
(``agents.testing.ScriptedModel``) stands in for OpenAI, so nothing leaves the machine; with a
real model, drop ``model=`` and set ``OPENAI_API_KEY``. The job runs on the embedded SQLite
default with a worker in this process, then its journal is printed: each model call and tool
call is an entry, and the charge wrote its intent before it was dispatched.
"""

import asyncio
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ScriptedModel, assistant_message, function_call

from aetheris import App, Context
from aetheris.cli import render, trace_view
from aetheris.integrations.openai_agents import run_agent

set_tracing_disabled(True)  # the SDK would export traces to OpenAI
app = App()  # AETHERIS_DATABASE_URL, else sqlite:///.aetheris/aetheris.db

model = ScriptedModel(
    [
        [function_call("transfer_to_billing", {}, call_id="h1")],
        [function_call("lookup_order", {"order_id": "o-1"}, call_id="c1")],
        [function_call("charge", {"order_id": "o-1", "amount": 42.5}, call_id="c2")],
        [assistant_message("Order o-1 is charged: ch-o-1.")],
    ]
)


@function_tool
def lookup_order(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42.5}  # e.g. a database read


@function_tool
def charge(order_id: str, amount: float) -> str:
    """Charge the customer for an order."""
    return f"ch-{order_id}"  # e.g. payments.charge(...): at most once, even after a crash


billing = Agent(
    name="billing", instructions="You bill orders.", model=model, tools=[lookup_order, charge]
)
triage = Agent(name="triage", instructions="You route requests.", model=model, handoffs=[billing])


@app.agent
async def support(ctx: Context, request: str) -> str:
    # lookup_order only reads: pure (re-run after a crash); charge is at_most_once (the default).
    result = await run_agent(triage, request, effects={"lookup_order": "pure"})
    return str(result.final_output)


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
