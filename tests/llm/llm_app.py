"""An assistant on the model client, for tests that run it in worker processes.

``LLM_WORLD`` names a folder where the ``charge`` tool appends a line per real dispatch;
``AETHERIS_LLM_URL`` is the scripted model server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aetheris import App, Context
from aetheris.llm import ChatModel

app = App(lease_ttl=float(os.environ.get("LLM_LEASE_TTL", "30")))
model = ChatModel("stub", temperature=0, max_retries=2)
WORLD = Path(os.environ.get("LLM_WORLD", "."))


@app.tool
async def lookup(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, "amount": 42}


@app.tool(effect="at_most_once")
async def charge(order_id: str, amount: float) -> str:
    """Charge the customer for an order."""
    with (WORLD / "charges.log").open("a") as log:
        log.write(f"{order_id} {amount}\n")
    return f"ch-{order_id}"


async def converse(messages: list[dict[str, Any]], turns: int = 6) -> str:
    """The tool loop: ask, run the tools the model asks for, until it answers in words."""
    for _ in range(turns):
        result = await model.chat(messages, tools=[lookup, charge])
        messages.append(result.message)
        if not result.tool_calls:
            return result.content or ""
        messages += await model.run_tools(result, [lookup, charge])
    return "gave up"


@app.agent
async def assistant(ctx: Context, request: str) -> str:
    messages = [
        {"role": "system", "content": "You handle orders."},
        {"role": "user", "content": request},
    ]
    return await converse(messages)
