"""A diamond-shaped TaskGraph on real worker processes: its two branches run at the same time,
and a worker killed with SIGKILL mid-plan is resumed by another without running a node done."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

from aetheris import App, JobStatus
from aetheris.replay import replay
from tests.processes import lines, start_worker, stop

HERE = Path(__file__).resolve().parent

DIAMOND = {
    "goal": "a diamond",
    "nodes": [
        {"id": "top", "type": "tool", "tool": "fetch", "args": {"node": "top", "order": "o1"}},
        {
            "id": "left",
            "type": "tool",
            "tool": "meet",
            "args": {
                "node": "left",
                "party": ["left", "right"],
                "amount": {"$ref": "top.output.amount"},
            },
        },
        {
            "id": "right",
            "type": "tool",
            "tool": "meet",
            "args": {"node": "right", "party": ["left", "right"], "amount": 2},
            "depends_on": ["top"],
        },
        {
            "id": "bottom",
            "type": "tool",
            "tool": "slow",
            "args": {
                "node": "bottom",
                "left": {"$ref": "left.output"},
                "right": {"$ref": "right.output"},
            },
        },
    ],
    "output": {"$ref": "bottom.output"},
}


async def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def runs(world: Path) -> list[tuple[str, str, float]]:
    return [(w[0], w[1], float(w[2])) for w in (x.split() for x in lines(world / "runs.log"))]


async def test_a_diamond_runs_its_branches_in_parallel_and_resumes_after_sigkill(
    tmp_path: Path, durable_url: str
) -> None:
    world = tmp_path / "world"
    world.mkdir()
    env = {"PLAN_WORLD": str(world), "PLAN_LEASE_TTL": "2"}
    app = App(durable_url)
    first = start_worker("plan_app:app", durable_url, world, cwd=HERE, env=env)
    try:
        handle = await app.start("aetheris.plan", {"plan": DIAMOND})
        await wait_until(lambda: ("start", "bottom") in {r[:2] for r in runs(world)}, "bottom")
        first.send_signal(signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        (world / "release").touch()
        second = start_worker("plan_app:app", durable_url, world, cwd=HERE, env=env)
        try:
            job = await handle.job()
            for _ in range(600):
                job = await handle.job()
                if job.status.terminal:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop(second)
    finally:
        if first.poll() is None:
            first.kill()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["result"] == 42
    assert job.result["outputs"] == {"top": {"order": "o1", "amount": 40}, "left": 40,
                                     "right": 2, "bottom": 42}  # fmt: skip
    log = runs(world)
    started = Counter(node for what, node, _ in log if what == "start")
    ended = Counter(node for what, node, _ in log if what == "end")
    # Every node completed once; only the one the kill interrupted started twice.
    assert ended == {"top": 1, "left": 1, "right": 1, "bottom": 1}
    assert started == {"top": 1, "left": 1, "right": 1, "bottom": 2}
    at = {(what, node): t for what, node, t in log if (what, node) != ("start", "bottom")}
    # The branches overlapped: each began before the other ended (and the barrier held).
    assert at[("start", "left")] < at[("end", "right")]
    assert at[("start", "right")] < at[("end", "left")]
    # The plan and its hash were journaled before the first node ran, and the journal
    # replays against the code without executing anything.
    events = await (await app.open_store()).events(handle.job_id)
    ops = [e.data for e in events if e.type.value == "op"]
    assert ops[0]["name"] == "taskgraph.plan"
    assert ops[0]["result"]["hash"] == job.result["plan_hash"]
    assert [o["name"] for o in ops[1:]] == ["fetch", "meet", "meet", "slow"]
    again = same_code(durable_url)
    report = await replay(again, handle.job_id)
    assert report.outcome == "matched", report
    await again.close()
    await app.close()


def same_code(url: str) -> App:
    """The App of the worker processes (its tools and the plan agent), on ``url``."""
    from aetheris.taskgraph import enable_plans

    from .plan_app import app as served

    again = App(url)
    for definition in served.tools.values():
        again.tool(name=definition.name, effect=definition.effect.value)(definition.fn)
    enable_plans(again)
    return again
