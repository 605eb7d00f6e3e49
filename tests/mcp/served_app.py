"""The App behind ``aetheris mcp serve`` in tests/mcp/test_mcp_serve.py: a refund that waits for
a person's approval (answered through MCP), and a greeting that ends at once. Its worker runs
as a process (``aetheris worker --app served_app:app``) on ``AETHERIS_DATABASE_URL``."""

from __future__ import annotations

from aetheris import App, ApprovalRejected, Context

app = App(lease_ttl=2, poll_interval=0.05)


@app.tool(effect="at_most_once")
async def pay_back(order_id: str, amount: float) -> str:
    return f"refund-{order_id}-{amount:g}"


@app.agent
async def refund(ctx: Context, order_id: str, amount: float) -> dict[str, object]:
    """Refund ``amount`` on ``order_id`` once a person approves it."""
    try:
        decision = await ctx.approval("refund", {"order_id": order_id, "amount": amount})
    except ApprovalRejected as exc:
        return {"refunded": False, "reason": str(exc)}
    receipt = await pay_back(order_id, amount)
    return {"refunded": True, "receipt": receipt, "approved_by": decision.by}


@app.agent
async def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"
