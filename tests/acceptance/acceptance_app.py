"""The App that the acceptance tests' worker processes serve (``--app acceptance_app:app``).

The database comes from ``AETHERIS_DATABASE_URL``. The "world" the tools change is a folder of
plain files named by ``ACCEPTANCE_WORLD``, so a test can count what really happened outside the
runtime: one line in ``charges.log`` per charge dispatched, one line in ``naps.log`` per nap
begun.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aetheris
from aetheris import App, Context

app = App(lease_ttl=2, poll_interval=0.05)

CARD = "card_4242"
PRICE = 12.5


def world() -> Path:
    path = Path(os.environ.get("ACCEPTANCE_WORLD", ".aetheris/acceptance-world"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _append(name: str, line: str) -> None:
    with open(world() / name, "a") as f:
        f.write(line + "\n")


@app.tool
async def lookup_order(order_id: str) -> dict[str, Any]:
    """Read-only: safe to run again."""
    return {"id": order_id, "card": CARD, "price": PRICE}


@app.tool(effect="at_most_once")
async def charge(card: str, amount: float) -> str:
    """Moves money: one line in charges.log per dispatch, never two for one job."""
    key = aetheris.tool_context().idempotency_key
    _append("charges.log", f"{card} {amount:.2f} {key}")
    return f"ch_{key[-8:]}"


@app.tool
async def nap(label: str, seconds: float) -> str:
    """A slow pure step: note that it began, then sleep."""
    _append("naps.log", label)
    await asyncio.sleep(seconds)
    return f"{label} rested"


@app.agent
async def place_order(ctx: Context, order_id: str, quantity: int = 1) -> dict[str, object]:
    order = await lookup_order(order_id)
    amount = float(order["price"]) * quantity
    charge_id = await charge(str(order["card"]), amount)
    return {"order_id": order_id, "charge": charge_id, "amount": amount}


@app.agent
async def slow_order(ctx: Context, order_id: str, seconds: float = 1.0) -> dict[str, object]:
    """Charge, then take a slow step: a worker stopped mid-nap must not charge again."""
    order = await lookup_order(order_id)
    charge_id = await charge(str(order["card"]), float(order["price"]))
    rested = await nap(order_id, seconds)
    return {"order_id": order_id, "charge": charge_id, "rested": rested}


@app.agent
async def reviewed_order(ctx: Context, order_id: str) -> dict[str, object]:
    """Charge only after a human approves, then wait for the warehouse's signal."""
    order = await lookup_order(order_id)
    decision = await ctx.approval("charge", {"order_id": order_id, "price": order["price"]})
    charge_id = await charge(str(order["card"]), float(order["price"]))
    parcel = await ctx.wait_for_signal("shipped")
    return {"charge": charge_id, "approved_by": decision.by, "parcel": parcel}
