"""A TaskGraph run durably: two lookups in parallel, then a refund of their total.

Run it: ``python examples/plan.py`` (a SQLite file in ``.aetheris/``). The same plan, as a
file, runs with ``aetheris start --plan plan.json`` on a worker of this App.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aetheris import App
from aetheris.taskgraph import enable_plans

app = App()


@app.tool
async def lookup_order(order_id: str) -> dict[str, Any]:
    return {"id": order_id, "amount": 21.25}


@app.tool(effect="at_most_once")
async def refund(amounts: list[float]) -> str:
    return f"refunded {sum(amounts)}"


enable_plans(app)  # the agent aetheris.plan runs {"plan": {...}} with app's tools

PLAN = {
    "nodes": [
        {"id": "a", "type": "tool", "tool": "lookup_order", "args": {"order_id": "o1"}},
        {"id": "b", "type": "tool", "tool": "lookup_order", "args": {"order_id": "o2"}},
        {
            "id": "pay",
            "type": "tool",
            "tool": "refund",
            "args": {"amounts": [{"$ref": "a.output.amount"}, {"$ref": "b.output.amount"}]},
        },
    ],
    "output": {"$ref": "pay.output"},
}


async def main() -> None:
    handle = await app.start("aetheris.plan", {"plan": PLAN})
    worker = app.worker(concurrency=4)
    serving = asyncio.create_task(worker.run())
    try:
        print(f"job {handle.job_id} on {app.database_url}:")
        print((await handle.result(timeout=30))["result"])
    finally:
        worker.stop()
        await serving
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
