"""The Restate SDK service process of the Restate harness (``bench.peers.restate``).

Run as ``python -m bench.peers.restate_service --port N``: serves one Restate ``Service``
named ``Bench`` over HTTP/2 (cleartext, prior knowledge) with hypercorn, as restate-sdk
documents. Every benchmark step is one ``ctx.run`` (journaled: the SDK proposes the result
and waits for the server to acknowledge it before user code goes on).

Crash injection, read from the environment of the first service process only:
``BENCH_KILL=inside:51`` SIGKILLs this process inside step 51 right after its line is written;
``BENCH_KILL=between:51`` SIGKILLs it after step 51 completed (acknowledged) and before step 52;
``BENCH_KILL=after:10000`` (W5) after step 10,000 completed. ``BENCH_MARK=PATH`` makes a fresh
process write the time at which the replayed workflow passes that step again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from datetime import timedelta
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from restate import Context, InvocationRetryPolicy, Service
from restate import app as restate_app

from bench.peers import common

# Short retry policy (the server default starts at 500 ms and doubles up to 1 min): a crashed
# attempt is retried after 50 ms, 100 ms, 200 ms, then every 250 ms.
RETRY = InvocationRetryPolicy(
    initial_interval=timedelta(milliseconds=50),
    exponentiation_factor=2.0,
    max_interval=timedelta(milliseconds=250),
    max_attempts=1_000,
    on_max_attempts="pause",
)

bench = Service("Bench", invocation_retry_policy=RETRY)

_KILL_MODE, _, _KILL_AT = os.environ.get("BENCH_KILL", "").partition(":")
KILL_AT = int(_KILL_AT) if _KILL_AT else 0
MARK_PATH = os.environ.get("BENCH_MARK", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _append_line(path: str, i: int) -> int:
    """W3's step body: append the step number to a file, flushed; maybe die right after."""
    with open(path, "a") as f:
        f.write(f"{i}\n")
        f.flush()
    if _KILL_MODE == "inside" and i == KILL_AT:
        _write(path + ".killed", f"{time.time()!r}\n")
        _die()
    return common.step(i)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@bench.handler()
async def ping(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """Warm-up: ``n`` journaled steps, so the harness knows the whole path works."""
    value = 0
    for i in range(int(req.get("n", 1))):
        value = await ctx.run_typed("step", common.step, i=i)
    return {"value": value}


@bench.handler()
async def steps(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """W1 and W2: ``n`` sequential journaled steps, each ``common.step(i)``."""
    n = int(req["n"])
    value = 0
    began = time.perf_counter()
    for i in range(n):
        value = await ctx.run_typed("step", common.step, i=i)
    return {"elapsed_s": time.perf_counter() - began, "value": value}


@bench.handler()
async def crashy(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """W3: ``n`` steps, each appending its number to ``req['path']``."""
    n, path = int(req["n"]), str(req["path"])
    for i in range(1, n + 1):
        await ctx.run_typed("line", _append_line, path=path, i=i)
        if _KILL_MODE == "between" and i == KILL_AT:
            _write(path + ".killed", f"{time.time()!r}\n")
            _die()
    return {"done": n}


@bench.handler()
async def agent(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """W4: ``turns`` x (scripted LLM step on the growing message list, scripted tool step)."""
    turns = int(req["turns"])
    messages: list[dict[str, str]] = [{"role": "user", "content": "find the item in stock"}]
    began = time.perf_counter()
    for turn in range(turns):
        answer = await ctx.run_typed("llm", common.scripted_llm, messages=list(messages))
        messages.append(answer)
        result = await ctx.run_typed("tool", common.scripted_tool, turn=turn)
        messages.append(result)
    return {"elapsed_s": time.perf_counter() - began, "messages": len(messages)}


@bench.handler()
async def journal(ctx: Context, req: dict[str, Any]) -> dict[str, Any]:
    """W5: ``n`` sequential steps; the wall time of each goes to ``req['times']`` (a plain
    file, outside Restate's state) once all ran. With ``BENCH_KILL=after:n`` the process is
    then SIGKILLed; a fresh process replays the journal and ``BENCH_MARK`` records when the
    code passes step ``n`` again."""
    n, times_path = int(req["n"]), str(req["times"])
    entered = time.time()
    times: list[float] = []
    for i in range(n):
        began = time.perf_counter()
        await ctx.run_typed("step", common.step, i=i)
        times.append(time.perf_counter() - began)
    passed = time.time()
    if MARK_PATH:
        _write(MARK_PATH, json.dumps({"entered": entered, "passed": passed}))
    else:
        _write(times_path, json.dumps(times))
    if _KILL_MODE == "after" and n == KILL_AT:
        _write(times_path + ".killed", f"{time.time()!r}\n")
        _die()
    return {"steps": n}


app = restate_app(services=[bench])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    # As restate-sdk's own test harness configures hypercorn for a Restate endpoint.
    config.h2_max_concurrent_streams = 2_147_483_647
    config.keep_alive_max_requests = 2_147_483_647
    config.keep_alive_timeout = 2_147_483_647
    config.accesslog = None
    asyncio.run(_serve(config))


async def _serve(config: Config) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await serve(app, config, mode="asgi", shutdown_trigger=stop.wait)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
