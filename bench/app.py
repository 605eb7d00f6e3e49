"""The Aetheris agents and tools every benchmark runs, defined once.

``python -m bench.core``, the Aetheris entry of ``python -m bench`` (``bench.peers.aetheris``) and
``python -m bench.profile`` run them through ``bench.workloads``. Worker processes load
``bench.app:app`` (bound to ``AETHERIS_DATABASE_URL``); in-process runs build a fresh App per run
with :func:`build_app`. Timings are measured inside the agents and never journaled: they go to
the module-level lists :data:`MARKS` and :data:`GROWTH` and, in worker processes, to files named
in the job's input.

Crashes (W3 of the peer workloads): a worker process started with ``BENCH_AETHERIS_KILL=inside:N``
SIGKILLs itself inside step N right after its line is written; ``before:N`` at the start of step
N's body, before its line. The dying process first writes ``time.time()`` to
``<lines file>.killed``. A fresh worker is started without the variable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aetheris import App, Committed, Context, NotExecuted, tool_context
from aetheris.modelcalls import ModelReply, Usage, model_call
from bench.harness import KILL_ENV, LINES_ENV, exists, write
from bench.peers import common

MARKS: list[float] = []
"""Seconds from just before the first step to just after the last one, one entry per job."""

GROWTH: list[dict[str, Any]] = []
"""W5: one record per entry into the agent (the first run, then each resume): ``entered`` and
``passed`` (``time.time()`` on entering and on passing the last step) and ``times`` (seconds
each ``ctx.step`` took, live or replayed)."""


def inc(i: int) -> int:
    """The step body as a plain function (the runtime runs it in a worker thread)."""
    return common.step(i)


async def ainc(i: int) -> int:
    """The same body as a coroutine function (the runtime awaits it on the event loop)."""
    return common.step(i)


async def nap(seconds: float) -> float:
    """W3-lite's step body: sleep, so that a job is mid-way when its worker is killed."""
    await asyncio.sleep(seconds)
    return seconds


def scripted_reply(messages: list[dict[str, str]]) -> Callable[[], Awaitable[ModelReply]]:
    """W4's model call: the scripted answer, with a usage as a provider reports one."""

    async def call() -> ModelReply:
        return ModelReply(common.scripted_llm(messages), Usage(len(messages) * 60, 60), "scripted")

    return call


def tool(turn: int) -> dict[str, str]:
    return common.scripted_tool(turn)


def _maybe_die(where: str, n: int, lines: str) -> None:
    if os.environ.get(KILL_ENV) == f"{where}:{n}":
        Path(f"{lines}.killed").write_text(repr(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)


def _append(path: str, text: str) -> None:
    with open(path, "a") as f:  # open, append, write, flush, close: one line per step
        f.write(text + "\n")
        f.flush()


async def write_line(lines: str, n: int) -> int:
    """W3's step body: append ``n`` to the lines file (maybe dying before or after it)."""
    _maybe_die("before", n, lines)
    _append(lines, str(n))
    _maybe_die("inside", n, lines)
    return common.step(n)


async def write_line_with_key(lines: str, n: int) -> int:
    """W3's tool body: the line carries the call's idempotency key, so it can be reconciled."""
    _maybe_die("before", n, lines)
    _append(lines, f"{n} {tool_context().idempotency_key}")
    _maybe_die("inside", n, lines)
    return common.step(n)


def reconcile_line(key: str) -> Committed | NotExecuted:
    """Look for the call's line (by its idempotency key) in the lines file."""
    path = Path(os.environ[LINES_ENV])
    if path.exists():
        for line in path.read_text().splitlines():
            number, _, found = line.partition(" ")
            if found == key:
                return Committed(common.step(int(number)))
    return NotExecuted()


def expect_value(got: object, want: object, what: str) -> None:
    if got != want:
        raise ValueError(f"{what} returned {got!r}, expected {want!r}")


async def wait_for_file(path: str) -> None:
    """Outside any step: hold the job until the harness says go (creates ``path``)."""
    while True:
        if exists(Path(path)):
            return
        await asyncio.sleep(0.005)


def build_app(database_url: str | None = None) -> App:
    """A fresh App with the benchmarks' agents and tools, on ``database_url``."""
    app = App(database_url)
    amo_step = app.tool(name="amo_step", effect="at_most_once")(ainc)
    amo_line = app.tool(name="amo_line", effect="at_most_once")(write_line_with_key)
    amo_line_rec = app.tool(name="amo_line_rec", effect="at_most_once", reconcile=reconcile_line)(
        write_line_with_key
    )

    @app.agent
    async def w1_steps(ctx: Context, n: int, body: str = "async", out: str = "") -> int:
        fn = inc if body == "sync" else ainc
        value = 0
        began = time.perf_counter()
        for i in range(n):
            value = await ctx.step("s", fn, i)
        elapsed = time.perf_counter() - began
        MARKS.append(elapsed)
        if out:
            write(Path(out), repr(elapsed))
        return value

    @app.agent
    async def w1_tool(ctx: Context, n: int) -> int:
        value = 0
        began = time.perf_counter()
        for i in range(n):
            value = await amo_step(i)
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
            expect_value(await ctx.step("nap", nap, seconds), seconds, "nap")
        return steps

    @app.agent
    async def w3_lines(ctx: Context, lines: str, gate: str, mode: str, steps: int) -> int:
        await wait_for_file(gate)
        for n in range(1, steps + 1):
            if mode == "step":
                done: int = await ctx.step("line", write_line, lines, n)
            elif mode == "at_most_once":
                done = await amo_line(lines, n)
            else:
                done = await amo_line_rec(lines, n)
            expect_value(done, common.step(n), f"step {n}")
        return steps

    @app.agent
    async def w4_agent(ctx: Context, turns: int) -> int:
        messages: list[dict[str, str]] = []
        began = time.perf_counter()
        for turn in range(turns):
            # A model call journals the conversation as blobs, each message once, and hashes
            # only what the turn added (a step would hash the whole history as its arguments).
            reply = await model_call("scripted", {"messages": messages}, scripted_reply(messages))
            messages.append(reply.response)
            messages.append(await ctx.step("tool", tool, turn))
        MARKS.append(time.perf_counter() - began)
        return len(messages)

    @app.agent
    async def w5_journal(ctx: Context, n: int, out: str = "") -> int:
        times: list[float] = []
        record: dict[str, Any] = {"pid": os.getpid(), "entered": time.time(), "times": times}
        GROWTH.append(record)
        value = 0
        for i in range(n):
            began = time.perf_counter()
            value = await ctx.step("s", ainc, i)
            times.append(time.perf_counter() - began)
        record["passed"] = time.time()
        if out:
            write(Path(f"{out}.{os.getpid()}.json"), json.dumps(record))
        await asyncio.Event().wait()  # outside any step: until the worker stops or dies
        return value

    return app


app = build_app()
