"""Record the saved journals of ``tests/golden`` that come from earlier versions of an agent.

``python -m tests.golden.record`` runs each earlier version below on a fresh SQLite database
with a worker, exports the job's journal (``aetheris-journal/1``, as ``aetheris export ID
--journal`` does) and writes it next to this file. The suite replays them against today's code
(``test_golden.py``), which must report the divergence, not replay past it.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from pydantic import BaseModel

from aetheris import App, Context
from aetheris.bundle import export_bundle
from aetheris.recording import journal_doc
from aetheris.testing import running_worker

HERE = Path(__file__).resolve().parent


class Order(BaseModel):
    id: str
    customer: str
    amount: float
    paid_with: str


def emails_first(app: App) -> None:
    """``refund_order`` as it was before the refund moved ahead of the email: it told the
    customer first. Today's code refunds first, so the journal diverges at position 1."""

    @app.tool
    async def lookup_order(order_id: str) -> Order:
        return Order(id=order_id, customer="ada@example.com", amount=42.5, paid_with="card_4242")

    @app.tool(effect="at_most_once")
    async def refund_card(card: str, amount: float) -> str:
        return "re_0f1e2d3c4b"

    @app.tool(effect="idempotent")
    async def send_email(to: str, text: str) -> str:
        return "queued"

    @app.agent
    async def refund_order(ctx: Context, order_id: str, reason: str) -> dict[str, str]:
        order = await lookup_order(order_id)
        await send_email(order.customer, f"We are refunding {order.amount:.2f} ({reason})")
        refund_id = await refund_card(order.paid_with, order.amount)
        return {"order": order.id, "refund": refund_id, "status": "refunded"}


EARLIER = {
    "refund_order_v0_emails_first.json": (
        emails_first,
        "refund_order",
        {"order_id": "ord-1001", "reason": "damaged in transit"},
    ),
}


async def record(name: str) -> Path:
    define, agent, given = EARLIER[name]
    with tempfile.TemporaryDirectory() as folder:
        app = App(f"sqlite:///{folder}/record.db")
        define(app)
        async with running_worker(app):
            handle = await app.start(agent, given)
            await handle.result(timeout=30)
        doc = journal_doc(await export_bundle(await app.open_store(), handle.job_id))
        await app.close()
    target = HERE / name
    target.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return target


if __name__ == "__main__":
    for each in EARLIER:
        print("wrote", asyncio.run(record(each)))
