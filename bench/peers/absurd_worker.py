"""Absurd task definitions for the benchmark, and the harness's child-process entry points.

The harness (``bench.peers.absurd``) imports ``make_app`` to run W1, W2, W4 and the first part of
W5 in its own process. The crash and recovery parts of W3 and the resume part of W5 need fresh
processes; they run this module::

    python -m bench.peers.absurd_worker w3-crash   --url URL --lease 10 --path lines.txt
    python -m bench.peers.absurd_worker w3-recover --url URL --lease 10 --path lines.txt
    python -m bench.peers.absurd_worker w5-resume  --url URL --steps 10000

Each prints one JSON object on stdout (the crash child prints nothing: it is SIGKILLed).
Standard library, psycopg (through absurd-sdk) and ``bench.peers.common`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from typing import Any

from absurd_sdk import Absurd

from bench.peers import common

QUEUE = "bench"
W3_IDEMPOTENCY_KEY = "w3-lines"
KILL_MODE_ENV = "ABSURD_BENCH_KILL_MODE"  # "inside" or "between": only the W3 crash child sets it
KILL_FILE_ENV = "ABSURD_BENCH_KILL_FILE"  # where the crash child writes time.time() before dying

# Wall-clock marks and per-step times recorded inside the handlers: module-level state of the
# worker process, outside Absurd's durable state.
MARKS: dict[str, float] = {}
STEP_US: list[float] = []


def with_durability(url: str, durability: str) -> str:
    """The connection URL for the SDK: ``process`` turns synchronous_commit off per session."""
    if durability == "process":
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}options=-c%20synchronous_commit%3Doff"
    return url


def _die() -> None:
    path = os.environ.get(KILL_FILE_ENV)
    if path:
        with open(path, "w") as f:
            f.write(repr(time.time()))
            f.flush()
            os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _append_line(path: str, i: int, kill: bool) -> int:
    with open(path, "a") as f:
        f.write(f"{i}\n")
        f.flush()
        os.fsync(f.fileno())
    if kill:
        _die()
    return i


def make_app(url: str) -> Absurd:
    """An Absurd client on queue ``bench`` with every benchmark task registered."""
    app = Absurd(url, queue_name=QUEUE)

    @app.register_task("steps")
    def steps(params: dict[str, Any], ctx: Any) -> int:
        """W1 and W2: sequential steps, each ``common.step(i)``, each checkpointed."""
        value = 0
        MARKS["first_step"] = time.perf_counter()
        for i in range(params["steps"]):
            value = ctx.step("step", lambda i=i: common.step(i))
        MARKS["last_step"] = time.perf_counter()
        return value

    @app.register_task("lines")
    def lines(params: dict[str, Any], ctx: Any) -> int:
        """W3: each step appends its number to a file; the crash child dies at ``kill_at``."""
        mode = os.environ.get(KILL_MODE_ENV, "")
        kill_at = params["kill_at"]
        for i in range(1, params["steps"] + 1):
            kill_inside = mode == "inside" and i == kill_at
            ctx.step("line", lambda i=i, k=kill_inside: _append_line(params["path"], i, k))
            if mode == "between" and i == kill_at:
                _die()  # step i's checkpoint is committed, step i + 1 has not started
        return params["steps"]

    @app.register_task("agent")
    def agent(params: dict[str, Any], ctx: Any) -> int:
        """W4: per turn, a scripted LLM step on the growing messages, then a tool step."""
        messages: list[dict[str, str]] = []
        MARKS["first_step"] = time.perf_counter()
        for turn in range(params["turns"]):
            messages.append(ctx.step("llm", lambda: common.scripted_llm(messages)))
            messages.append(ctx.step("tool", lambda turn=turn: common.scripted_tool(turn)))
        MARKS["last_step"] = time.perf_counter()
        return len(messages)

    @app.register_task("journal")
    def journal(params: dict[str, Any], ctx: Any) -> int:
        """W5: many sequential steps, each timed; then blocks on an event until resumed."""
        MARKS["handler_enter"] = time.time()
        STEP_US.clear()
        for i in range(params["steps"]):
            began = time.perf_counter()
            ctx.step("step", lambda i=i: common.step(i))
            STEP_US.append((time.perf_counter() - began) * 1e6)
        MARKS["passed_last_step"] = time.time()
        if params.get("block"):
            ctx.await_event("resume")
        return params["steps"]

    return app


def _run_worker(app: Absurd, lease: int, worker_id: str) -> threading.Thread:
    thread = threading.Thread(
        target=app.start_worker,
        kwargs={"worker_id": worker_id, "claim_timeout": lease},
        daemon=True,
    )
    thread.start()
    return thread


def _w3_params(path: str) -> dict[str, Any]:
    return {"path": path, "steps": common.W3_STEPS, "kill_at": common.W3_KILL_AT}


def w3_crash(args: argparse.Namespace) -> int:
    """Spawn the W3 task idempotently and run it in this thread until the step body kills us."""
    app = make_app(args.url)
    app.spawn("lines", _w3_params(args.path), idempotency_key=W3_IDEMPOTENCY_KEY)
    app.work_batch(worker_id=f"crash-{os.getpid()}", claim_timeout=args.lease)
    print(json.dumps({"error": "the crash child was not killed"}), flush=True)
    return 3


def w3_recover(args: argparse.Namespace) -> int:
    """A fresh process: repeat the idempotent spawn, run a normal worker until the task ends."""
    began = time.time()
    app = make_app(args.url)
    spawned = app.spawn("lines", _w3_params(args.path), idempotency_key=W3_IDEMPOTENCY_KEY)
    task_id = str(spawned["task_id"])
    worker_started = time.time()
    thread = _run_worker(app, args.lease, f"recover-{os.getpid()}")
    poller = Absurd(args.url, queue_name=QUEUE)  # its own connection, not the worker's
    deadline = time.monotonic() + args.lease + args.timeout
    state = "unknown"
    while time.monotonic() < deadline:
        snapshot = poller.fetch_task_result(task_id)
        state = snapshot.state if snapshot else "missing"
        if state in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.01)
    detected = time.time()
    app.stop_worker()
    thread.join(timeout=10)
    poller.close()
    out = {
        "task_id": task_id,
        "state": state,
        "process_began": began,
        "worker_started": worker_started,
        "detected": detected,
    }
    print(json.dumps(out), flush=True)
    return 0


def w5_resume(args: argparse.Namespace) -> int:
    """A fresh process: wake the blocked 10k-step task and replay it past its last step."""
    began = time.time()
    app = make_app(args.url)
    recovery_start = time.time()
    app.emit_event("resume")
    app.work_batch(worker_id=f"resume-{os.getpid()}", claim_timeout=120)
    snapshot = app.fetch_task_result(args.task_id)
    app.close()
    out = {
        "process_began": began,
        "recovery_start": recovery_start,
        "handler_enter": MARKS.get("handler_enter"),
        "passed_last_step": MARKS.get("passed_last_step"),
        "replayed_steps": len(STEP_US),
        "state": snapshot.state if snapshot else "missing",
    }
    print(json.dumps(out), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.absurd_worker")
    parser.add_argument("command", choices=["w3-crash", "w3-recover", "w5-resume"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--lease", type=int, default=120, help="claim_timeout in seconds")
    parser.add_argument("--path", default="")
    parser.add_argument("--task-id", default="")
    parser.add_argument("--timeout", type=float, default=120.0, help="beyond the lease")
    args = parser.parse_args(argv)
    handler = {"w3-crash": w3_crash, "w3-recover": w3_recover, "w5-resume": w5_resume}
    return handler[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
