"""What the fake tools do when a simulated process calls them.

A tool call takes seeded virtual time (so kills, pauses and cancels land inside it), may meet a
fault at its two sites (``tool:before`` the effect, ``tool:after`` it), and writes its effect
to the world ledger only while its process is alive. It also checks two promises of a graceful
stop (SIGTERM): no new step starts, and no tool is cancelled mid-call.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aetheris import CompensationRequest, Control, RetryableError, ToolContext
from tests.sim.loop import current_process
from tests.sim.world import Dispatch

if TYPE_CHECKING:
    import random

    from aetheris import Clock
    from tests.sim.faulty import Faults
    from tests.sim.process import SimProcess
    from tests.sim.trace import Trace
    from tests.sim.world import World


class ToolRunner:
    """Mixin of :class:`~tests.sim.sim.Sim`: the behaviour of the fake tools."""

    world: World
    faults: Faults
    reader: Any
    clock: Clock
    latency: random.Random
    trace: Trace

    def violate(self, kind: str, message: str, *, job: str | None = None) -> None:
        """Record a violation (provided by the simulation)."""
        raise NotImplementedError

    def now(self) -> float:
        """Virtual time (provided by the simulation)."""
        raise NotImplementedError

    def fault_injected(self, proc: SimProcess, key: tuple[str, int], fault: Any) -> None:
        """Trace a fault (provided by the simulation)."""
        raise NotImplementedError

    def _process(self, what: str) -> SimProcess:
        proc = current_process.get()
        if proc is None:
            self.violate("tool_outside_process", f"{what} ran outside any worker (a replay?)")
            raise RuntimeError(f"{what} ran outside a simulated process")
        proc.check_alive()
        return proc

    async def run_tool(
        self, ctx: ToolContext, tool: str, effect: str, label: str, mode: str
    ) -> Any:
        """One call of a fake tool by a running job."""
        proc = self._process(tool)
        call = (ctx.job_id, ctx.position)
        if proc.stopping and call not in proc.calls:  # a retry of a call begun before is fine
            self.violate(
                "stopping_worker_started_step",
                f"{proc.name} dispatched {tool} at {ctx.position} after its SIGTERM",
                job=ctx.job_id,
            )
        proc.calls.add(call)
        once = effect == "at_most_once"
        self.trace.add("tool", proc=proc.name, tool=tool, job=ctx.job_id, pos=ctx.position)
        self.world.enter(ctx.idempotency_key, proc.name, ctx.job_id, once)
        try:
            return await self._body(proc, ctx, tool, effect, label, mode)
        except asyncio.CancelledError:
            if proc.alive and proc.stopping and not proc.paused_since_stop:
                await self._stop_cancelled(proc, ctx, tool)
            raise
        finally:
            self.world.leave(ctx.idempotency_key, proc.name, ctx.job_id, once)

    async def _stop_cancelled(self, proc: SimProcess, ctx: ToolContext, tool: str) -> None:
        """A tool of a stopping worker was cancelled: by the stop, unless its job's own end."""
        job = await self.reader.get_job(ctx.job_id)
        if job is not None and job.control is Control.CANCEL:
            return  # an operator's cancel interrupts a running tool, by design
        if job is not None and job.deadline is not None and self.clock.time() >= job.deadline:
            return  # so does a deadline
        self.violate(
            "stop_cancelled_tool",
            f"{proc.name}'s graceful stop cancelled {tool} at {ctx.position} mid-call",
            job=ctx.job_id,
        )

    async def _body(
        self, proc: SimProcess, ctx: ToolContext, tool: str, effect: str, label: str, mode: str
    ) -> Any:
        await self._site(proc, "tool:before")
        await self._latency(proc)
        if mode == "flaky" and ctx.attempt == 1:
            raise RetryableError(f"{label}: try again")
        if mode == "fail":
            raise ValueError(f"{label}: refused for good")
        result = f"{tool}:{label}"
        if effect != "pure":
            entry = Dispatch(
                tool,
                effect,
                ctx.idempotency_key,
                ctx.job_id,
                ctx.position,
                label,
                proc.name,
                round(self.now(), 6),
                result,
            )
            self.world.dispatch(entry)
            self.trace.add("effect", tool=tool, job=ctx.job_id, pos=ctx.position, proc=proc.name)
        await self._site(proc, "tool:after")
        await self._latency(proc)
        return result

    async def run_compensation(self, ctx: ToolContext, request: CompensationRequest) -> Any:
        """A compensation of ``request``'s effect, recorded in the world by its key."""
        proc = self._process(f"compensate:{request.tool}")
        await self._latency(proc)
        self.world.compensate(request.idempotency_key)
        self.trace.add("compensated", job=ctx.job_id, of=request.position, proc=proc.name)
        return "undone"

    async def _site(self, proc: SimProcess, site: str) -> None:
        key, fault = self.faults.draw(site, False)
        if fault is not None:
            self.fault_injected(proc, key, fault)
            if fault.kind in ("kill", "kill_after"):
                raise proc.kill(fault)
            if fault.kind == "pause":
                proc.pause(fault.duration)
        await proc.ready()

    async def _latency(self, proc: SimProcess) -> None:
        draw = self.latency.random()
        seconds = 0.01 if draw < 0.2 else round(self.latency.uniform(0.02, 1.5), 6)
        await asyncio.sleep(seconds)
        await proc.ready()
