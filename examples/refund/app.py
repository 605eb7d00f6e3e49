"""An order-refund agent: look up the order, refund the card once, email the customer.

The "world" the tools change is a folder of plain files (``.aetheris/demo-world/``), so you can
count what really happened, outside the runtime: one line in ``payments.log`` per refund paid.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from pydantic import BaseModel

import aetheris
from aetheris import App, Context

app = App(lease_ttl=float(os.environ.get("DEMO_LEASE_TTL", "10")))
WORLD = Path(os.environ.get("DEMO_WORLD", ".aetheris/demo-world"))


class Order(BaseModel):
    id: str
    customer: str
    amount: float
    paid_with: str


def _append(name: str, line: str) -> None:
    WORLD.mkdir(parents=True, exist_ok=True)
    with open(WORLD / name, "a") as f:
        f.write(line + "\n")


@app.tool
async def lookup_order(order_id: str) -> Order:
    """Read-only: safe to run again."""
    await asyncio.sleep(0.3)
    return Order(id=order_id, customer="ada@example.com", amount=42.5, paid_with="card_4242")


def already_paid(key: str) -> aetheris.Committed | aetheris.NotExecuted | None:
    """Ask the 'payment provider' whether a refund with this idempotency key went through."""
    path = WORLD / "payments.log"
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        if line.endswith(key):
            return aetheris.Committed(line.split()[0])
    return aetheris.NotExecuted()


@app.tool(effect="at_most_once", reconcile=already_paid)
async def refund_card(card: str, amount: float) -> str:
    """Moves money: must never happen twice. The provider sees our idempotency key."""
    key = aetheris.tool_context().idempotency_key
    await asyncio.sleep(0.3)
    refund_id = "re_" + hashlib.sha256(key.encode()).hexdigest()[:10]  # one per refund
    _append("payments.log", f"{refund_id} {card} {amount:.2f} {key}")
    return refund_id


@app.tool(effect="idempotent")
async def send_email(to: str, text: str) -> str:
    """The mail service de-duplicates by idempotency key, so a re-send is harmless."""
    key = aetheris.tool_context().idempotency_key
    await asyncio.sleep(1.5)
    _append("emails.log", f"{to} {key} {text}")
    return "queued"


@app.agent
async def refund_order(ctx: Context, order_id: str, reason: str) -> dict[str, str]:
    order = await lookup_order(order_id)
    refund_id = await refund_card(order.paid_with, order.amount)
    when = ctx.now().strftime("%Y-%m-%d %H:%M UTC")
    await send_email(order.customer, f"Refunded {order.amount:.2f} ({reason}) on {when}")
    return {"order": order.id, "refund": refund_id, "status": "refunded"}
