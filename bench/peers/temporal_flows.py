"""Temporal workflows for the peer benchmark (run in the SDK's default sandbox).

Every step is either an activity (``workflow.execute_activity``: the server records
ActivityTaskScheduled/Started/Completed in the history before the workflow sees the result) or
a local activity (``workflow.execute_local_activity``: the worker runs it in-process and the
result becomes a MarkerRecorded event written only when the workflow task completes).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

# This form (not "from bench.peers import ...") really passes the module through: with the
# "from" form the sandbox gave each workflow run its own copy of the module (and of MARKS).
with workflow.unsafe.imports_passed_through():
    import bench.peers.temporal_acts as acts


async def call(local: bool, fn: Any, arg: Any, timeout_s: float) -> Any:
    timeout = timedelta(seconds=timeout_s)
    if local:
        return await workflow.execute_local_activity(fn, arg, start_to_close_timeout=timeout)
    return await workflow.execute_activity(fn, arg, start_to_close_timeout=timeout)


def live() -> bool:
    return not workflow.unsafe.is_replaying()


@workflow.defn(name="Steps")
class StepsWorkflow:
    """W1, W2, W5: ``steps`` sequential steps; optionally holds after the last one (W5)."""

    def __init__(self) -> None:
        self._released = False

    @workflow.signal
    def release(self) -> None:
        self._released = True

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        steps, local, tag = int(args["steps"]), bool(args["local"]), str(args["tag"])
        per_step, timeout_s = bool(args.get("per_step")), float(args.get("timeout_s", 60))
        value = 0
        first = acts.now()
        for i in range(steps):
            before = acts.now()
            value = await call(local, acts.step_activity, i, timeout_s)
            if per_step and live():
                acts.record(tag, i + 1, before, acts.now())
        if live():
            acts.record(tag, 0, first, acts.now())
        if args.get("hold"):
            # Passed on the first run and again on every replay: index 1 marks a replay.
            acts.record(tag + "/passed", 0 if live() else 1, acts.now(), acts.now())
            await workflow.wait_condition(lambda: self._released)
        return value


@workflow.defn(name="Agent")
class AgentWorkflow:
    """W4: ``turns`` x (scripted LLM step on the growing message list, scripted tool step)."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        turns, local, tag = int(args["turns"]), bool(args["local"]), str(args["tag"])
        messages: list[dict[str, str]] = []
        first = acts.now()
        for turn in range(turns):
            messages.append(await call(local, acts.llm_activity, list(messages), 60))
            messages.append(await call(local, acts.tool_activity, turn, 60))
        if live():
            acts.record(tag, 0, first, acts.now())
        return len(messages)


@workflow.defn(name="Lines")
class LinesWorkflow:
    """W3: steps 1..``steps``, each appending its number to ``path`` (see append_line)."""

    @workflow.run
    async def run(self, args: dict[str, Any]) -> int:
        local, timeout_s = bool(args["local"]), float(args["timeout_s"])
        for i in range(1, int(args["steps"]) + 1):
            step_args = {"i": i, "path": args["path"], "kill_file": args["kill_file"]}
            await call(local, acts.append_line_activity, step_args, timeout_s)
        return int(args["steps"])


WORKFLOWS = [StepsWorkflow, AgentWorkflow, LinesWorkflow]
