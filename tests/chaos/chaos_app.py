"""The App that chaos tests run in real worker processes.

Every tool records its side effect as a line in a file of the "world" directory (env
``CHAOS_WORLD``), written with one ``O_APPEND`` write, so a SIGKILL never leaves half a line and
the test can count what really happened outside the runtime.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aetheris
from aetheris import App, Context

app = App(
    lease_ttl=float(os.environ.get("CHAOS_LEASE_TTL", "2")),
    poll_interval=0.05,
    max_recoveries=int(os.environ.get("CHAOS_MAX_RECOVERIES", "5")),
)
WORLD = Path(os.environ.get("CHAOS_WORLD", "."))
PACE = float(os.environ.get("CHAOS_PACE", "0"))


def record(log: str, line: str) -> None:
    fd = os.open(WORLD / log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def lines(log: str) -> list[str]:
    path = WORLD / log
    return path.read_text().splitlines() if path.exists() else []


async def pace(n: int, salt: int) -> None:
    """A deterministic pause per job and step, so that kills land inside steps."""
    if PACE:
        await asyncio.sleep(PACE * (1 + (n * 7 + salt * 13) % 5) / 3)


@app.tool
async def lookup(n: int) -> dict[str, int]:
    await pace(n, 1)
    record("lookups.log", aetheris.tool_context().job_id)
    return {"n": n, "amount": n * 10}


@app.tool(effect="idempotent")
async def reserve(n: int) -> str:
    await pace(n, 2)
    record("reserves.log", aetheris.tool_context().idempotency_key)
    return f"r{n}"


@app.tool(effect="at_most_once")
async def charge(amount: int) -> str:
    key = aetheris.tool_context().idempotency_key
    await pace(amount, 3)
    record("charges.log", key)
    return f"ch-{amount}"


def charge_reconcile(key: str) -> aetheris.Committed | aetheris.NotExecuted:
    return aetheris.Committed("ch-seen") if key in lines("charges.log") else aetheris.NotExecuted()


@app.tool(effect="at_most_once", reconcile=charge_reconcile)
async def charge_r(amount: int) -> str:
    key = aetheris.tool_context().idempotency_key
    record("charges.log", key)
    return f"ch-{amount}"


@app.tool
async def notify(text: str) -> None:
    record("notifies.log", aetheris.tool_context().job_id)


@app.tool(effect="at_most_once")
async def slow_charge(seconds: float) -> str:
    key = aetheris.tool_context().idempotency_key
    record("slow.log", f"begin {key}")
    await asyncio.sleep(seconds)
    record("slow.log", f"end {key}")
    return "slow-done"


@app.tool(effect="at_most_once")
async def after_slow() -> str:
    record("after_slow.log", aetheris.tool_context().idempotency_key)
    return "after"


@app.agent
async def order(ctx: Context, n: int) -> dict[str, object]:
    found = await lookup(n)
    reservation = await reserve(n)
    total = await ctx.step("total", lambda a: a + 1, found["amount"])
    charged = await charge(total)
    await notify(f"{charged} {reservation}")
    return {"n": n, "charge": charged}


@app.agent
async def order_reconciled(ctx: Context, n: int) -> str:
    await lookup(n)
    return await charge_r(n)


@app.agent
async def zombie(ctx: Context, seconds: float) -> str:
    await slow_charge(seconds)
    return await after_slow()


# -- human in the loop, time and children ------------------------------------------------------


@app.tool
async def probe(n: int) -> int:
    await pace(n, 4)
    record("probes.log", f"{aetheris.tool_context().job_id} {n}")
    return n * n


@app.agent
async def approve_then_pay(ctx: Context, n: int) -> dict[str, object]:
    await lookup(n)
    await reserve(n)
    decision = await ctx.approval("pay", {"n": n})
    charged = await charge(n)
    receipt = await ctx.wait_for_signal("receipt")
    await notify(f"{charged} {receipt}")
    return {"charge": charged, "by": decision.by, "receipt": receipt}


@app.agent
async def sleeper(ctx: Context, seconds: float) -> str:
    await lookup(0)
    await ctx.sleep(seconds)
    await notify("woke")
    return "woke"


@app.agent
async def parent_of(ctx: Context, n: int) -> object:
    await lookup(n)
    result = await ctx.run_agent("order", {"n": n})
    await notify(f"child said {result}")
    return result


@app.agent
async def fan_out(ctx: Context, n: int) -> list[int]:
    return list(await asyncio.gather(*(probe(i) for i in range(n))))


@app.agent
async def slow_then_charge(ctx: Context, seconds: float) -> str:
    await slow_charge(seconds)
    return await after_slow()


# -- integrity: the cases of the guarantees' regression tests (tests/chaos/test_integrity.py) ----

VERSION = int(os.environ.get("CHAOS_VERSION", "1"))


@app.agent
async def versioned(ctx: Context, n: int) -> str:
    if VERSION >= 2:
        ctx.now()  # v2 inserts a durable operation in front of the charge
    return await charge(n)


def refund(request: aetheris.CompensationRequest) -> None:
    record("refunds.log", request.idempotency_key)


def charge_rc_reconcile(key: str) -> aetheris.Committed | aetheris.NotExecuted:
    return aetheris.Committed("ch-seen") if key in lines("charges.log") else aetheris.NotExecuted()


@app.tool(effect="at_most_once", reconcile=charge_rc_reconcile, compensate=refund)
async def charge_rc(amount: int) -> str:
    record("charges.log", aetheris.tool_context().idempotency_key)
    return f"ch-{amount}"


def fail_for_good(n: int) -> None:
    raise ValueError(f"no stock for order {n}")


@app.agent
async def charge_then_fail(ctx: Context, n: int) -> None:
    await charge_rc(n)
    await ctx.step("stock", fail_for_good, n)


@app.agent
async def echo(ctx: Context, token: str) -> str:
    record("echo.log", token)
    return token


@app.agent
async def parent_with_token(ctx: Context, n: int) -> object:
    token = str(ctx.uuid())  # the child's input is built from a value the journal holds
    return {"token": token, "child": await ctx.run_agent("echo", {"token": token})}


@app.agent
async def parent_after_probe(ctx: Context, n: int) -> object:
    await probe(n)
    return await ctx.run_agent("echo", {"token": f"child of {ctx.job_id}"})


@app.agent
async def swallow(ctx: Context, n: int) -> str:
    try:
        return await charge(n)
    except Exception as exc:  # an agent may swallow its own failures, never the runtime's
        record("swallowed.log", repr(exc))
        return "swallowed"


@app.agent
async def nul_result(ctx: Context, n: int) -> str:
    await lookup(n)
    return "a\x00b"


@app.tool
async def slow_step(i: int, seconds: float) -> int:
    record("steps.log", f"begin {i}")
    await asyncio.sleep(seconds)
    record("steps.log", f"end {i}")
    return i


@app.agent
async def steps_then_charge(ctx: Context, n: int, seconds: float) -> str:
    for i in range(n):
        await slow_step(i, seconds)
    return await charge(n)
