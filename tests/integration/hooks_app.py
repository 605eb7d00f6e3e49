"""The App of the incoming-webhook tests, for in-process workers and worker processes
(``aetheris worker --app hooks_app:app`` with ``AETHERIS_DATABASE_URL``)."""

from __future__ import annotations

import os
from typing import Any

import aetheris
from aetheris import App, Context

SECRET = "whsec_integration_5c1e"


def build(url: str | None = None, *, key_suffix: str = "") -> App:
    """``key_suffix``: a changed code that waits on another key than the recorded one."""
    app = App(url, lease_ttl=2.0, poll_interval=0.05)
    app.hook("paid", key="/data/order_id", secret=SECRET)

    @app.tool
    async def reserve(order_id: str) -> str:
        world = os.environ.get("HOOKS_WORLD")
        if world:  # worker processes count their side effects in a file, one O_APPEND write
            fd = os.open(world, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"reserve {order_id}\n".encode())
            finally:
                os.close(fd)
        return f"reserved {order_id}"

    @app.agent
    async def order(ctx: Context, order_id: str) -> dict[str, Any]:
        reserved = await reserve(order_id)
        try:
            event = await ctx.wait_for_signal("paid", key=order_id + key_suffix, timeout=120)
        except aetheris.SignalKeyTaken as taken:
            return {"reserved": reserved, "taken_by": taken.detail["held_by"]}
        return {"reserved": reserved, "amount": event["data"]["amount"]}

    return app


app = build(os.environ.get("AETHERIS_DATABASE_URL", "memory://"))
