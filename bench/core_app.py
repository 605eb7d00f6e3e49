"""The agents and tools the core benchmark runs (``python -m bench.core``).

Workers load ``bench.core_app:app``, bound to ``AETHERIS_DATABASE_URL``; the in-process part of the
benchmark builds one fresh App per run with :func:`build_app`. Step timings of W1 are appended to
:data:`MARKS`, a plain module-level list: they are measured inside the agent and never journaled.
"""

from __future__ import annotations

import time

from aetheris import App, Context

MARKS: list[float] = []
"""Seconds from the start of the first step to the end of the last one, one entry per W1 job."""


def inc(i: int) -> int:
    """The step body: a plain function (the runtime runs it in a worker thread)."""
    return i + 1


async def ainc(i: int) -> int:
    """The same body as a coroutine function (the runtime awaits it on the event loop)."""
    return i + 1


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

    return app


app = build_app()
