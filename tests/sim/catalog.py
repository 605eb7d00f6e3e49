"""The simulated application: fake tools acting on the world ledger and one plan-driven agent.

The agent ``interp`` interprets a plan (a list of operations) from its input, so the workload
generator can draw any mix of tools, waits, children and parallel branches while the agent code
stays fixed. Two versions exist: v2 inserts ``ctx.now()`` before every ``charge``, the kind of
harmless-looking change a deploy brings between two attempts of one job.

Tools and agents read the running simulation and process from context variables, so one set of
module-level functions serves every seed and every process (no per-seed closures to rebuild).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import aetheris
from aetheris import (
    App,
    ApprovalRejected,
    ApprovalTimeout,
    ChildFailed,
    Committed,
    CompensationRequest,
    Context,
    NotExecuted,
    RetryPolicy,
    SignalTimeout,
)
from aetheris.tools import Reconciliation

current_sim: contextvars.ContextVar[Any] = contextvars.ContextVar("sim_current", default=None)
"""The running simulation (its tool, world and fault hooks)."""

AGENT = "interp"
_catalog = App("memory://", name="sim-catalog")
_ONCE = RetryPolicy(max_attempts=1)


async def _act(tool: str, effect: str, label: str, mode: str = "") -> Any:
    return await current_sim.get().run_tool(aetheris.tool_context(), tool, effect, label, mode)


def reconcile_ship(key: str) -> Reconciliation:
    """Answers from the world ledger: happened (with its result), did not, or cannot tell yet."""
    answer, result = current_sim.get().world.honest_answer(key)
    if answer == "committed":
        return Committed(result)
    return NotExecuted() if answer == "not_executed" else None


async def undo(request: CompensationRequest) -> Any:
    """Compensation of ``ship`` and ``book``: recorded in the world, keyed by the effect."""
    return await current_sim.get().run_compensation(aetheris.tool_context(), request)


@_catalog.tool(effect="pure")
async def lookup(label: str) -> Any:
    """A read: no effect on the world."""
    return await _act("lookup", "pure", label)


@_catalog.tool(effect="idempotent")
async def notify(label: str) -> Any:
    """Safe to repeat with its idempotency key."""
    return await _act("notify", "idempotent", label)


@_catalog.tool(effect="idempotent", compensate=undo)
async def book(label: str) -> Any:
    """Idempotent, with a compensation."""
    return await _act("book", "idempotent", label)


@_catalog.tool(effect="idempotent")
async def flaky(label: str) -> Any:
    """Idempotent; its first attempt fails with a retryable error."""
    return await _act("flaky", "idempotent", label, "flaky")


@_catalog.tool(effect="at_most_once")
async def charge(label: str) -> Any:
    """At most once, no reconcile: an interrupted charge parks in doubt for an operator."""
    return await _act("charge", "at_most_once", label)


@_catalog.tool(effect="at_most_once", reconcile=reconcile_ship, compensate=undo)
async def ship(label: str) -> Any:
    """At most once, reconciled from the world, compensated on failure."""
    return await _act("ship", "at_most_once", label)


@_catalog.tool(effect="at_most_once", requires_approval=True)
async def wire(label: str) -> Any:
    """At most once, and only after a human approved exactly this call."""
    return await _act("wire", "at_most_once", label)


@_catalog.tool(effect="pure", retry=_ONCE)
async def explode(label: str) -> Any:
    """Fails for good (the agent's own failure, which triggers compensation)."""
    return await _act("explode", "pure", label, "fail")


TOOLS = {t.name: t for t in (lookup, notify, book, flaky, charge, ship, wire, explode)}


async def _step_body(label: str) -> str:
    return f"step {label}"


Handler = Callable[[Context, list[Any], int], Awaitable[Any]]


async def _tool(ctx: Context, op: list[Any], version: int) -> Any:
    if op[0] == "charge" and version >= 2:
        ctx.now()  # v2: a timestamp taken before every charge
    return await TOOLS[op[0]](op[1])


async def _wire(ctx: Context, op: list[Any], version: int) -> Any:
    try:
        return await wire(op[1])
    except (ApprovalRejected, ApprovalTimeout):
        return "not approved"


async def _step(ctx: Context, op: list[Any], version: int) -> Any:
    return await ctx.step(op[1], _step_body, op[1])


async def _now(ctx: Context, op: list[Any], version: int) -> Any:
    return ctx.now().isoformat()


async def _uuid(ctx: Context, op: list[Any], version: int) -> Any:
    return str(ctx.uuid())


async def _random(ctx: Context, op: list[Any], version: int) -> Any:
    return ctx.random()


async def _signal(ctx: Context, op: list[Any], version: int) -> Any:
    try:
        return await ctx.wait_for_signal(op[1], timeout=op[2])
    except SignalTimeout:
        return "timeout"


async def _approval(ctx: Context, op: list[Any], version: int) -> Any:
    try:
        decision = await ctx.approval(op[1], {"label": op[1]}, timeout=op[2])
    except (ApprovalRejected, ApprovalTimeout):
        return False
    return decision.approved


async def _sleep(ctx: Context, op: list[Any], version: int) -> Any:
    await ctx.sleep(op[1])
    return "slept"


async def _child(ctx: Context, op: list[Any], version: int) -> Any:
    token = str(ctx.uuid())  # a value drawn by the parent, passed in the child's input
    try:
        return await ctx.run_agent(AGENT, {"plan": op[1], "token": token})
    except ChildFailed:
        return "child failed"


async def _gather(ctx: Context, op: list[Any], version: int) -> Any:
    return list(await asyncio.gather(*(_run(ctx, sub, version) for sub in op[1])))


async def _swallow(ctx: Context, op: list[Any], version: int) -> Any:
    try:
        return await _run(ctx, op[1], version)
    except Exception as exc:  # what many agent frameworks do around a tool call
        current_sim.get().agent_caught(ctx.job_id, exc)
        return f"swallowed {type(exc).__name__}"


HANDLERS: dict[str, Handler] = {
    **{name: _tool for name in TOOLS if name != "wire"},
    "wire": _wire,
    "step": _step,
    "now": _now,
    "uuid": _uuid,
    "random": _random,
    "signal": _signal,
    "approval": _approval,
    "sleep": _sleep,
    "child": _child,
    "gather": _gather,
    "swallow": _swallow,
}


async def _run(ctx: Context, op: list[Any], version: int) -> Any:
    return await HANDLERS[op[0]](ctx, op, version)


async def _interpret(ctx: Context, plan: list[list[Any]], version: int) -> list[Any]:
    return [await _run(ctx, op, version) for op in plan]


async def interp_v1(ctx: Context, **input: Any) -> Any:
    """The agent as first deployed."""
    return await _interpret(ctx, input["plan"], 1)


async def interp_v2(ctx: Context, **input: Any) -> Any:
    """The agent after a deploy: a ``ctx.now()`` before every charge."""
    return await _interpret(ctx, input["plan"], 2)


def install(app: App, version: int) -> App:
    """Register the agent (in ``version``) on ``app``."""
    app.agent(name=AGENT)(interp_v2 if version >= 2 else interp_v1)
    return app
