"""User code as a user writes it: it must pass ``mypy --strict`` (checked by the toolchain test)."""

from __future__ import annotations

import aetheris
from aetheris import App, Context

app = App("memory://")


@app.tool
async def lookup(order_id: str) -> dict[str, float]:
    return {"amount": 1.0}


@app.tool(effect="at_most_once", retry=aetheris.RetryPolicy(max_attempts=2))
async def charge(amount: float) -> str:
    return aetheris.tool_context().idempotency_key


@app.tool(effect="idempotent")
def send(to: str) -> int:
    return len(to)


async def double(n: int) -> int:
    return 2 * n


@app.agent
async def refund(ctx: Context, order_id: str) -> str:
    order = await lookup(order_id)
    receipt: str = await charge(order["amount"])
    sent: int = await send("ada@example.com")
    stamp = ctx.now().isoformat()
    total: int = await ctx.step("total", lambda: sent + 1)
    doubled = await ctx.step("double", double, total)  # an async body: its result type flows
    assert doubled + 1 > 0
    return f"{receipt} {stamp} {total}"


async def main() -> object:
    handle = await app.start(refund, {"order_id": "o1"})
    return await handle.result(timeout=1.0)
