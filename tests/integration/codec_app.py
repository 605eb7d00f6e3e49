"""An App whose payloads are encrypted (keys in ``AETHERIS_PAYLOAD_KEY_DIR``), for tests that
run it in worker processes: a payment made at most once, a tool with a secret field, a wait."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aetheris import App, Context


def build(url: str | None = None) -> App:
    app = App(url)

    @app.tool(secret=("card_number",))
    async def lookup(order_id: str) -> dict[str, Any]:
        return {"order": order_id, "card_number": "4242-4242-CARD", "amount": 42}

    @app.tool(effect="at_most_once")
    async def pay(card: str, amount: int) -> str:
        world = os.environ.get("CODEC_WORLD")
        if world:
            _append(Path(world), f"pay {amount}\n")
        return f"paid {amount} from PAYMENT-RECEIPT"

    @app.agent(secret=("ssn", "card"))
    async def checkout(ctx: Context, order_id: str, ssn: str) -> dict[str, Any]:
        order = await lookup(order_id)
        receipt = await pay(order["card_number"], order["amount"])
        note = await ctx.wait_for_signal("note")
        return {"receipt": receipt, "note": note, "ssn": ssn, "card": order["card_number"]}

    return app


def _append(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(line)


app = build()
