"""Temporal activities for the peer benchmark, plus timing marks kept outside Temporal's state.

Workflow code imports this module through ``workflow.unsafe.imports_passed_through()``, so the
sandbox shares the worker process's real module: ``MARKS`` is one list per worker process and
``now()`` reads the real clock (the sandbox forbids ``time`` calls in workflow code itself).
Marks are written to a JSON file when the worker stops (see ``temporal_worker``); they never
enter Temporal's history.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

from bench.peers import common

# (tag, index, t_before, t_after) in time.monotonic() seconds, which on Linux is CLOCK_MONOTONIC
# and so comparable between the worker and the harness processes.
MARKS: list[tuple[str, int, float, float]] = []

KILL_ENV = "TEMPORAL_BENCH_KILL"  # "inside:51" or "between:52", set only for the first worker
LIVE_ENV = "TEMPORAL_BENCH_LIVE"  # a file that marks of W5's hold point are appended to at once


def now() -> float:
    with workflow.unsafe.sandbox_unrestricted():  # the sandbox forbids clocks in workflow code
        return time.monotonic()


def record(tag: str, index: int, before: float, after: float) -> None:
    MARKS.append((tag, index, before, after))
    if tag.endswith("/passed"):  # the harness waits for these while the worker runs
        with workflow.unsafe.sandbox_unrestricted(), open(os.environ[LIVE_ENV], "a") as f:
            f.write(f"{tag} {index} {after!r}\n")


def dump(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(MARKS))
    os.replace(tmp, path)


@activity.defn(name="step")
async def step_activity(i: int) -> int:
    return common.step(i)


@activity.defn(name="llm")
async def llm_activity(messages: list[dict[str, str]]) -> dict[str, str]:
    return common.scripted_llm(messages)


@activity.defn(name="tool")
async def tool_activity(turn: int) -> dict[str, str]:
    return common.scripted_tool(turn)


@activity.defn(name="append_line")
async def append_line_activity(args: dict[str, Any]) -> int:
    """W3's step: append the step number to a file, flushed; SIGKILL this process if told to."""
    i = int(args["i"])
    mode, _, at = os.environ.get(KILL_ENV, "").partition(":")
    if mode == "between" and at and int(at) == i:
        # The previous step's completion is in the history (the workflow only schedules step i
        # after step i - 1 completed): this kill falls between two steps.
        _note_kill(args["kill_file"])
        os.kill(os.getpid(), signal.SIGKILL)
    with open(args["path"], "a") as f:  # noqa: ASYNC230 - the step body is this small write
        f.write(f"{i}\n")
        f.flush()
    if mode == "inside" and at and int(at) == i:
        _note_kill(args["kill_file"])
        os.kill(os.getpid(), signal.SIGKILL)
    return i


def _note_kill(kill_file: str) -> None:
    with open(kill_file, "w") as f:
        f.write(repr(time.monotonic()))
        f.flush()


ACTIVITIES = [step_activity, llm_activity, tool_activity, append_line_activity]
