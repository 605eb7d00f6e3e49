"""The README's first agent, runnable: ``python examples/first_agent.py``.

It starts a job, serves it with a worker in this process until it ends, and prints the result.
Run it again: the idempotency key gives back the same job, and nothing is paid twice.
"""

import asyncio
from typing import Any

import aetheris
from aetheris import App, Context

app = App()  # AETHERIS_DATABASE_URL, else sqlite:///.aetheris/aetheris.db


@app.tool  # pure: re-run if lost before it was recorded
async def lookup_order(order_id: str) -> dict[str, Any]:
    return {"id": order_id, "card": "card_4242", "amount": 42.5}  # e.g. a database read


@app.tool(effect="at_most_once")  # never dispatched twice, even after a crash
async def refund_card(card: str, amount: float) -> str:
    key = aetheris.tool_context().idempotency_key  # forward it to the provider
    return f"refund of {amount} to {card}, key {key}"  # e.g. payments.refund(..., key)


@app.agent
async def refund_order(ctx: Context, order_id: str) -> dict[str, object]:
    order = await lookup_order(order_id)
    refund = await refund_card(order["card"], order["amount"])
    return {"refund": refund, "at": ctx.now().isoformat()}


async def main() -> None:
    handle = await app.start("refund_order", {"order_id": "o1"}, idempotency_key="refund-o1")
    worker = app.worker(concurrency=4)
    serving = asyncio.create_task(worker.run())
    try:
        print(f"job {handle.job_id} on {app.database_url}:")
        print(await handle.result(timeout=30))
    finally:
        worker.stop()
        await serving
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
