"""The agents and tools of the Aetheris peer harness (``python -m bench.peers.aetheris``).

Worker processes load ``bench.peers.aetheris_app:app`` (bound to ``AETHERIS_DATABASE_URL``); the
in-process workloads build a fresh App per run with :func:`build_app`. Timings are measured inside
the agents and kept outside the journal: in :data:`MARKS` (in-process) or in plain files named in
the job's input (worker processes).

Crashes: a worker process started with ``BENCH_AETHERIS_KILL=inside:N`` SIGKILLs itself inside
step N right after its line is written; ``before:N`` at the start of step N's body, before its
line. The dying process first writes ``time.time()`` to ``<lines file>.killed``. A fresh worker
is started without the variable.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from pathlib import Path

from aetheris import App, Committed, Context, NotExecuted, tool_context
from bench.peers import common

KILL_ENV = "BENCH_AETHERIS_KILL"
LINES_ENV = "BENCH_AETHERIS_W3_LINES"  # where the reconcile function looks for its line

MARKS: list[float] = []
"""Seconds from just before the first step to just after the last one, one entry per job."""


async def ainc(i: int) -> int:
    """Every benchmark step's body: ``common.step(i)`` as a coroutine function."""
    return common.step(i)


def llm(messages: list[dict[str, str]]) -> dict[str, str]:
    return common.scripted_llm(messages)


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


def write(path: str, text: str) -> None:
    Path(path).write_text(text)


def exists(path: str) -> bool:
    return os.path.exists(path)


def expect_step(got: int, n: int) -> None:
    if got != common.step(n):
        raise ValueError(f"step {n} returned {got}")


async def wait_for_file(path: str) -> None:
    """Outside any step: hold the job until the harness says go (creates ``path``)."""
    for _ in itertools.count():
        if exists(path):
            return
        await asyncio.sleep(0.005)


def build_app(database_url: str | None = None) -> App:
    """A fresh App with the harness's agents and tools, on ``database_url``."""
    app = App(database_url)
    amo_step = app.tool(name="amo_step", effect="at_most_once")(ainc)
    amo_line = app.tool(name="amo_line", effect="at_most_once")(write_line_with_key)
    amo_line_rec = app.tool(name="amo_line_rec", effect="at_most_once", reconcile=reconcile_line)(
        write_line_with_key
    )

    @app.agent
    async def w1_steps(ctx: Context, n: int, out: str = "") -> int:
        value = 0
        began = time.perf_counter()
        for i in range(n):
            value = await ctx.step("s", ainc, i)
        elapsed = time.perf_counter() - began
        MARKS.append(elapsed)
        if out:
            write(out, repr(elapsed))
        return value

    @app.agent
    async def w1_amo(ctx: Context, n: int) -> int:
        value = 0
        began = time.perf_counter()
        for i in range(n):
            value = await amo_step(i)
        MARKS.append(time.perf_counter() - began)
        return value

    @app.agent
    async def w2_job(ctx: Context, steps: int) -> int:
        value = 0
        for i in range(steps):
            value = await ctx.step("s", ainc, i)
        return value

    @app.agent
    async def w3_lines(ctx: Context, lines: str, gate: str, mode: str, steps: int) -> int:
        await wait_for_file(gate)
        for n in range(1, steps + 1):
            if mode == "step":
                done: int = await ctx.step("line", write_line, lines, n)
                expect_step(done, n)
            elif mode == "at_most_once":
                expect_step(await amo_line(lines, n), n)
            else:
                expect_step(await amo_line_rec(lines, n), n)
        return steps

    @app.agent
    async def w4_agent(ctx: Context, turns: int) -> int:
        messages: list[dict[str, str]] = []
        began = time.perf_counter()
        for turn in range(turns):
            messages.append(await ctx.step("llm", llm, messages))
            messages.append(await ctx.step("tool", tool, turn))
        MARKS.append(time.perf_counter() - began)
        return len(messages)

    @app.agent
    async def w5_journal(ctx: Context, n: int, out: str) -> int:
        entered = time.time()
        times: list[float] = []
        value = 0
        for i in range(n):
            began = time.perf_counter()
            value = await ctx.step("s", ainc, i)
            times.append(time.perf_counter() - began)
        passed = time.time()
        record = {"pid": os.getpid(), "entered": entered, "passed": passed, "times": times}
        write(f"{out}.{os.getpid()}.json", json.dumps(record))
        await asyncio.Event().wait()  # outside any step: blocks until the process dies
        return value

    return app


app = build_app()
