"""The App the browser tests look at: a pipeline whose stages wait for the test to let them
go (so a test sees a job mid-run, then watches it advance), a tool that needs approval, a
charge that can be left in doubt, and a scripted model call (tokens, cost, messages)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from aetheris import App, Context
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.pricing import set_price

MODEL = "ui-scripted"


class Gates:
    """Stage ``i`` of a pipeline waits until the test opens gate ``i``; all in one event loop."""

    def __init__(self) -> None:
        self.events: dict[int, asyncio.Event] = defaultdict(asyncio.Event)

    async def wait(self, stage: int) -> dict[str, int]:
        await self.events[stage].wait()
        return {"stage": stage}

    def open(self, stage: int) -> None:
        self.events[stage].set()


async def ask_model(question: str) -> str:
    """One journaled model call, answered by a script (no network)."""

    async def call() -> ModelReply:
        message = {"role": "assistant", "content": f"Plan for {question}: three stages."}
        return ModelReply({"message": message}, Usage(42, 9), MODEL)

    messages = [
        {"role": "system", "content": "You plan pipelines. Be brief."},
        {"role": "user", "content": question},
    ]
    reply = await model_call(MODEL, {"messages": messages, "temperature": 0}, call, provider="test")
    return str(reply.response["message"]["content"])


def build_app(gates: Gates) -> App:
    set_price(MODEL, input=0.5, output=1.5)
    # A short lease, so that a crashed worker's job is taken over soon; not so short that a
    # busy machine (the suite runs two processes on two cores) misses a heartbeat.
    app = App("memory://", lease_ttl=2.0, poll_interval=0.02)

    @app.tool(effect="at_most_once", requires_approval=True)
    async def pay(amount: int, to: str) -> str:
        return f"paid {amount} to {to}"

    @app.tool(effect="at_most_once")
    async def charge(amount: int) -> dict[str, Any]:
        return {"charge": f"ch_{amount}"}

    @app.tool(effect="idempotent")
    async def reserve(item: str) -> str:
        return f"reserved {item}"

    @app.agent
    async def pipeline(ctx: Context, stages: int = 3) -> list[Any]:
        plan = await ask_model(f"{stages} stages")
        done: list[Any] = [plan, await reserve("slot")]
        for stage in range(stages):
            done.append(await ctx.step("stage", gates.wait, stage))
        return done

    @app.agent
    async def guarded(ctx: Context, amount: int = 5) -> str:
        return await pay(amount, to="ACME Corp")

    @app.agent
    async def refund(ctx: Context, amount: int = 3) -> Any:
        return await charge(amount)

    return app
