"""The README's humans, time and control, runnable: ``python examples/payout.py``.

A payout waits for an invoice (a signal), a person's approval, a durable timer and a child job,
then wires the money after a second approval of that exact call. The driver below plays the
people: it sends the signal and approves each request when the job parks for it.
"""

import asyncio

from aetheris import App, Context, ParkReason

app = App()  # AETHERIS_DATABASE_URL, else sqlite:///.aetheris/aetheris.db


@app.tool(effect="at_most_once", requires_approval=True)  # a human approves each exact call
async def wire(iban: str, amount: float) -> str:
    return f"wired {amount} to {iban}"


@app.agent
async def summarize(ctx: Context, text: str) -> str:
    return text[:200]


@app.agent
async def payout(ctx: Context, iban: str, amount: float) -> str:
    note = await ctx.wait_for_signal("invoice", timeout=86_400)  # SignalTimeout if none
    decision = await ctx.approval("payout", {"amount": amount}, timeout=3600, escalate_to="cfo")
    await ctx.sleep(2)  # durable timer
    summary = await ctx.run_agent("summarize", {"text": note})  # a child job
    receipt = await wire(iban, amount)
    return f"{receipt} for {summary!r}, approved by {decision.by}"


async def main() -> None:
    handle = await app.start("payout", {"iban": "DE89 3704 0044 0532 0130 00", "amount": 120.0})
    worker = app.worker(concurrency=4)
    serving = asyncio.create_task(worker.run())
    try:
        await app.signal(handle.job_id, "invoice", "INV-7: consulting, November")
        approved: set[int] = set()
        while len(approved) < 2:  # the payout, then the wire call itself
            job = await handle.job()
            request = job.park_detail if job.park_reason is ParkReason.APPROVAL else None
            if request is not None and request["position"] not in approved:
                approved.add(request["position"])
                print(f"approving {request.get('name')!r} (position {request['position']})")
                await app.approve(handle.job_id, by="example")
            await asyncio.sleep(0.05)
        print(await handle.result(timeout=30))
    finally:
        worker.stop()
        await serving
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
