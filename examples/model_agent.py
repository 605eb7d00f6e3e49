"""An agent on a model: ``python examples/model_agent.py``.

Offline it talks to a scripted OpenAI-compatible server started here; set ``AETHERIS_LLM_URL``
(and ``AETHERIS_LLM_MODEL``, ``AETHERIS_LLM_API_KEY`` if needed) to use a real one: vLLM,
Ollama (``http://127.0.0.1:11434/v1``), llama.cpp's server, LM Studio or a hosted API.
Every model call is a journal entry with its tokens and cost; a resumed job pays no model again.
"""

import asyncio
import os
from typing import Any

from aetheris import App, Budget, Context
from aetheris.llm import ChatModel, set_price

app = App()
model = ChatModel(os.environ.get("AETHERIS_LLM_MODEL", "local"), temperature=0)
set_price("local", input=0, output=0)  # a model on your own machine costs nothing


@app.tool
async def lookup_order(order_id: str) -> dict[str, Any]:
    """Look an order up by its id."""
    return {"id": order_id, "amount": 42.5, "status": "delivered"}


@app.tool(effect="at_most_once")
async def refund(order_id: str, amount: float) -> str:
    """Refund an order (at most once, whatever happens to the worker)."""
    return f"refunded {amount} for {order_id}"


@app.agent
async def support(ctx: Context, question: str) -> str:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a support agent. Use the tools."},
        {"role": "user", "content": question},
    ]
    for _ in range(6):
        answer = await model.chat(messages, tools=[lookup_order, refund])
        messages.append(answer.message)
        if not answer.tool_calls:
            return answer.content or ""
        messages += await model.run_tools(answer, [lookup_order, refund])
    return "no answer after six turns"


SCRIPT = {  # what the scripted server answers, turn by turn
    "replies": [
        {"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "o1"}, "id": "c1"}]},
        {"tool_calls": [{"name": "refund", "arguments": {"order_id": "o1", "amount": 42.5}}]},
        {"content": "Order o1 is refunded: 42.5."},
    ]
}


async def main() -> None:
    handle = await app.start(
        "support", {"question": "Please refund order o1."}, budget=Budget(tokens=20_000)
    )
    worker = app.worker(concurrency=4)
    serving = asyncio.create_task(worker.run())
    try:
        print(f"job {handle.job_id} on {app.database_url}:")
        print(await handle.result(timeout=120))
        print(f"see its model calls: aetheris trace {handle.job_id}")
    finally:
        worker.stop()
        await serving
        await model.aclose()
        await app.close()


if __name__ == "__main__":
    if os.environ.get("AETHERIS_LLM_URL"):
        asyncio.run(main())
    else:
        from aetheris.llm.stub import StubServer

        with StubServer(SCRIPT) as stub:
            model = ChatModel("local", base_url=stub.url, temperature=0)
            asyncio.run(main())
