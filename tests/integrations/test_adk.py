"""Google ADK agents under Aetheris: model calls and tool calls journaled, sub-agent transfer,
ids that are the same on every run, replay that calls nothing, a worker killed with SIGKILL
mid-run, and tool confirmations as approvals decided while no worker holds the job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.tools import ToolContext
from google.adk.tools.base_toolset import BaseToolset
from google.genai import types

from aetheris import App, ConfigurationError, Context, Job, JobStatus, ParkReason
from aetheris.integrations.adk import REJECTED, final_text, run_agent
from aetheris.testing import replay, running_worker, simulate_crash
from tests import processes
from tests.integration.helpers import crash_worker, run_job, wait_for
from tests.integrations import adk_app
from tests.integrations.adk_app import REFUND, ScriptedLlm, call
from tests.processes import aetheris_cli, lines, stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def billing_tree(charged: list[str]) -> tuple[LlmAgent, ScriptedLlm, ScriptedLlm]:
    """A triage agent that transfers to its billing sub-agent."""
    router = ScriptedLlm(model="router", script=[[call("transfer_to_agent", agent_name="billing")]])
    model = ScriptedLlm(
        model="scripted",
        script=[
            [call("lookup", order_id="o-1")],
            [call("charge", order_id="o-1", amount=42)],
            [types.Part(text="Charged order o-1.")],
        ],
    )

    def charge(order_id: str, amount: float, tool_context: ToolContext) -> str:
        """Charge the customer."""
        charged.append(order_id)
        tool_context.state["charged"] = order_id
        return f"ch-{order_id}"

    billing = LlmAgent(
        name="billing", instruction="You bill.", model=model, tools=[adk_app.lookup, charge]
    )
    triage = LlmAgent(name="triage", instruction="You route.", model=router, sub_agents=[billing])
    return triage, router, model


async def test_a_transfer_and_tools_are_journaled_and_replay_without_calling_anything(
    store_url: str,
) -> None:
    charged: list[str] = []
    triage, router, model = billing_tree(charged)
    app = App(store_url)

    @app.agent
    async def support(ctx: Context, request: str) -> dict[str, Any]:
        events = await run_agent(triage, request, effects={"lookup": "pure"})
        ids = [c.id for e in events for c in e.get_function_calls()]
        deltas = [e.actions.state_delta for e in events if e.actions.state_delta]
        return {"text": final_text(events), "call_ids": ids, "state": deltas}

    job = await run_job(app, "support", {"request": "charge order o-1"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["text"] == "Charged order o-1."
    assert job.result["state"] == [{"charged": "o-1"}], "the tool's state change reached ADK"
    assert len(job.result["call_ids"]) == 3
    assert (router.calls, model.calls) == (1, 3) and charged == ["o-1"]
    events = await (await app.open_store()).events(job.id)
    ops = [(e.data["kind"], e.data["name"]) for e in events if e.type.value == "op"]
    assert ops == [
        ("llm", "router"),
        ("llm", "scripted"),
        ("tool", "lookup"),
        ("llm", "scripted"),
        ("tool", "charge"),
        ("llm", "scripted"),
    ]
    assert [e.data["name"] for e in events if e.type.value == "intent"] == ["charge"]
    # The replay compares the job's end too: the same ADK call ids and the same state delta.
    report = await replay(app, job.id)
    assert report.outcome == "matched", report.diff
    assert (router.calls, model.calls) == (1, 3), "a replay calls no model"
    assert charged == ["o-1"], "a replay calls no tool"
    await app.close()


async def test_a_rejected_confirmation_answers_the_model_and_the_tool_never_runs(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADK_WORLD", str(tmp_path))
    model = ScriptedLlm(model="scripted", script=REFUND)
    app = App(sqlite_url)

    @app.agent
    async def refunds(ctx: Context) -> list[Any]:
        events = await run_agent(adk_app.refund_agent(model), "refund o-1")
        return [r.response for e in events for r in e.get_function_responses()]

    job = await run_job(app, "refunds", {}, JobStatus.PARKED)
    assert job.park_reason is ParkReason.APPROVAL and job.park_detail is not None
    assert job.park_detail["payload"]["kwargs"] == {"args": {"order_id": "o-1", "amount": 42}}
    await app.reject(job.id, reason="not this one")
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, job.id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == [REJECTED], "the model got ADK's own rejection answer"
    assert not (tmp_path / "refunds.log").exists(), "a rejected tool is never dispatched"
    assert model.calls == 2, "the turn before the park came from the journal"
    await app.close()


class Shelf(BaseToolset):
    async def get_tools(self, readonly_context: Any = None) -> list[Any]:
        return []


def test_what_cannot_be_journaled_is_refused_with_the_reason() -> None:
    model = ScriptedLlm(model="scripted", script=[])
    agent = LlmAgent(name="a", model=model, tools=[adk_app.lookup])
    with pytest.raises(ConfigurationError, match=r"effects names tools that no agent .* lokup"):
        asyncio.run(run_agent(agent, "x", effects={"lokup": "pure"}))
    shelf = LlmAgent(name="s", model=model, tools=[Shelf()])
    with pytest.raises(ConfigurationError, match="Shelf is a toolset"):
        asyncio.run(run_agent(shelf, "x"))


# -- worker processes ------------------------------------------------------------------------


def start_worker(url: str, world: Path, crash_at: str | None = None) -> Any:
    env = {"ADK_WORLD": str(world)}
    return processes.start_worker("adk_app:app", url, world, cwd=HERE, crash_at=crash_at, env=env)


async def uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Job:
    """The shop agent's job run in this process, with nothing in its way."""
    world = tmp_path / "uninterrupted"
    world.mkdir()
    monkeypatch.setenv("ADK_WORLD", str(world))
    app = App(f"sqlite:///{world / 'a.db'}")
    app.agent(adk_app.shop)
    job = await run_job(app, "shop", {"request": "charge order o-1"})
    await app.close()
    assert len(lines(world / "model.log")) == 3 and lines(world / "charges.log") == ["o-1 42"]
    return job


async def test_a_worker_killed_after_the_second_tool_call_resumes_without_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = await uninterrupted(tmp_path, monkeypatch)
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    app = App(url)
    handle = await app.start("shop", {"request": "charge order o-1"})
    first = start_worker(url, tmp_path, "after_outcome:charge")
    assert await asyncio.to_thread(first.wait, 60) == -9, "the worker was not killed"
    assert len(lines(tmp_path / "model.log")) == 2 and lines(tmp_path / "charges.log")
    second = start_worker(url, tmp_path)
    try:
        job = await wait_for(app, handle.job_id, timeout=60)
    finally:
        stop(second)
        await app.close()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == clean.result == "Charged order o-1: ch-o-1."
    assert len(lines(tmp_path / "model.log")) == 3, "each recorded turn came from the journal"
    assert lines(tmp_path / "charges.log") == ["o-1 42"], "the charge ran once"


async def test_a_crash_after_a_model_call_resumes_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADK_WORLD", str(tmp_path))
    app = App(f"sqlite:///{tmp_path / 'a.db'}", lease_ttl=0.5)
    app.agent(adk_app.shop)
    handle = await app.start("shop", {"request": "charge order o-1"})
    with simulate_crash("after_outcome:scripted@2"):
        await crash_worker(app, handle.job_id)
    assert len(lines(tmp_path / "model.log")) == 2 and not lines(tmp_path / "charges.log")
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert len(lines(tmp_path / "model.log")) == 3
    assert lines(tmp_path / "charges.log") == ["o-1 42"]
    await app.close()


async def test_a_confirmation_parks_the_job_and_a_cli_approval_resumes_it_on_another_worker(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    app = App(url)
    handle = await app.start("refunds", {"request": "refund order o-1"})
    first = start_worker(url, tmp_path)
    try:
        parked = await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=60)
    finally:
        stop(first)
    assert parked.park_reason is ParkReason.APPROVAL and parked.park_detail is not None
    assert parked.park_detail["payload"]["tool"] == "refund"
    assert not (tmp_path / "refunds.log").exists(), "nothing is refunded before the approval"
    approved = aetheris_cli(url, "approve", handle.job_id, "--by", "ops")
    assert approved.returncode == 0, approved.stderr
    second = start_worker(url, tmp_path)
    try:
        job = await wait_for(app, handle.job_id, timeout=60)
    finally:
        stop(second)
        await app.close()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "Refund handled."
    assert lines(tmp_path / "refunds.log") == ["o-1 42"]
    assert len(lines(tmp_path / "model.log")) == 2, "the turn before the park was not asked again"
