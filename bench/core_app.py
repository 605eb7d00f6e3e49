"""The agents and tools the core benchmark runs (``python -m bench.core``).

Workers load ``bench.core_app:app``, bound to ``AETHERIS_DATABASE_URL``; the in-process part of the
benchmark builds one fresh App per run with :func:`build_app`. Timings are measured inside the
agents and appended to plain module-level lists (:data:`MARKS`, :data:`STEP_TIMES`,
:data:`ENTERED`, :data:`PASSED`): they are never journaled.
"""

from __future__ import annotations

import asyncio
import time

from aetheris import App, Context

MARKS: list[float] = []
"""Seconds from the start of the first step to the end of the last one, one entry per W1 job."""

STEP_TIMES: list[float] = []
"""W5: seconds each ``ctx.step`` took, in order (live steps, then replayed ones on a resume)."""

ENTERED: list[float] = []
"""W5: ``time.time()`` each time the agent function was entered (first run, then each resume)."""

PASSED: list[float] = []
"""W5: ``time.time()`` each time the agent passed its last counted step (live or replayed)."""


def inc(i: int) -> int:
    """The step body: a plain function (the runtime runs it in a worker thread)."""
    return i + 1


async def ainc(i: int) -> int:
    """The same body as a coroutine function (the runtime awaits it on the event loop)."""
    return i + 1


async def nap(seconds: float) -> float:
    """W3's step body: sleep, so that a job is mid-way when its worker is killed."""
    await asyncio.sleep(seconds)
    return seconds


def expect_nap(took: float, seconds: float) -> None:
    if took != seconds:
        raise ValueError(f"nap returned {took}, expected {seconds}")


async def block_forever() -> int:
    """W5's final step: waits on an event nobody sets, until the worker is stopped."""
    await asyncio.Event().wait()
    return 0


def build_app(database_url: str | None = None) -> App:
    """A fresh App with the benchmark's agents and tool, on ``database_url``."""
    app = App(database_url)
    bump = app.tool(name="bump", effect="at_most_once")(ainc)

    @app.agent
    async def w1_steps(ctx: Context, n: int, body: str) -> int:
        fn = inc if body == "sync" else ainc
        value = 0
        began = time.perf_counter()
        for i in range(n):
            value = await ctx.step("s", fn, i)
        MARKS.append(time.perf_counter() - began)
        return value

    @app.agent
    async def w1_tool(ctx: Context, n: int) -> int:
        value = 0
        began = time.perf_counter()
        for i in range(n):
            value = await bump(i)
        MARKS.append(time.perf_counter() - began)
        return value

    @app.agent
    async def w2_job(ctx: Context, steps: int = 10) -> int:
        value = 0
        for i in range(steps):
            value = await ctx.step("s", ainc, i)
        return value

    @app.agent
    async def w3_naps(ctx: Context, steps: int, seconds: float) -> int:
        for _ in range(steps):
            took: float = await ctx.step("nap", nap, seconds)
            expect_nap(took, seconds)
        return steps

    @app.agent
    async def w5_growth(ctx: Context, n: int) -> int:
        ENTERED.append(time.time())
        value = 0
        for i in range(n):
            began = time.perf_counter()
            value = await ctx.step("s", ainc, i)
            STEP_TIMES.append(time.perf_counter() - began)
        PASSED.append(time.time())
        blocked: int = await ctx.step("block", block_forever)
        return value + blocked

    return app


app = build_app()
