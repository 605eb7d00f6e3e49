"""OpenAI Agents SDK agents under Aetheris: model calls and tool calls journaled, handoffs,
replay that calls nothing, a worker killed with SIGKILL mid-run, and approvals of tools that
need them, decided from the command line while no worker holds the job."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, function_tool
from agents.memory import SQLiteSession
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.tool import LocalShellTool
from pydantic import BaseModel

from aetheris import App, ConfigurationError, Context, Job, JobStatus, ParkReason
from aetheris.integrations.openai_agents import run_agent
from aetheris.testing import replay, running_worker, simulate_crash
from tests import processes
from tests.integration.helpers import crash_worker, run_job, wait_for
from tests.integrations import openai_agents_app
from tests.integrations.openai_agents_app import REFUND, ScriptProvider
from tests.processes import aetheris_cli, lines, stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


class Receipt(BaseModel):
    charge_id: str
    amount: float


def billing_graph(charged: list[str]) -> tuple[Agent[Any], ScriptedModel]:
    """A triage agent that hands off to billing, which looks an order up and charges it."""
    model = ScriptedModel(
        [
            [function_call("transfer_to_billing", {}, call_id="h1")],
            [function_call("lookup", {"order_id": "o-1"}, call_id="c1")],
            [function_call("charge", {"order_id": "o-1", "amount": 42}, call_id="c2")],
            [assistant_message("Charged order o-1.")],
        ]
    )

    @function_tool
    def lookup(order_id: str) -> dict[str, Any]:
        """Look an order up."""
        return {"order_id": order_id, "amount": 42}

    @function_tool
    def charge(order_id: str, amount: float) -> Receipt:
        """Charge the customer."""
        charged.append(order_id)
        return Receipt(charge_id=f"ch-{order_id}", amount=amount)

    billing = Agent(name="billing", instructions="You bill.", model=model, tools=[lookup, charge])
    triage = Agent(name="triage", instructions="You route.", model=model, handoffs=[billing])
    return triage, model


async def test_a_run_with_a_handoff_is_journaled_and_replays_without_calling_anything(
    store_url: str,
) -> None:
    charged: list[str] = []
    triage, model = billing_graph(charged)
    app = App(store_url)

    @app.agent
    async def support(ctx: Context, request: str) -> str:
        result = await run_agent(triage, request, effects={"lookup": "pure"})
        return str(result.final_output)

    job = await run_job(app, "support", {"request": "charge order o-1"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "Charged order o-1."
    assert len(model.calls) == 4 and charged == ["o-1"]
    assert model.calls[1].system_instructions == "You bill.", "the handoff reached billing"
    # The tool's output reached the model as the SDK shows it (str() of the returned model).
    last_input = model.calls[3].input
    assert last_input[-1]["output"] == "charge_id='ch-o-1' amount=42.0"
    events = await (await app.open_store()).events(job.id)
    ops = [(e.data["kind"], e.data["name"]) for e in events if e.type.value == "op"]
    assert ops == [
        ("llm", "ScriptedModel"),
        ("llm", "ScriptedModel"),
        ("tool", "lookup"),
        ("llm", "ScriptedModel"),
        ("tool", "charge"),
        ("llm", "ScriptedModel"),
    ]
    intents = [e.data["name"] for e in events if e.type.value == "intent"]
    assert intents == ["charge"], "only the at_most_once tool writes an intent first"
    report = await replay(app, job.id)
    assert report.outcome == "matched", report.diff
    assert len(model.calls) == 4 and charged == ["o-1"], "a replay calls no model and no tool"
    await app.close()


async def test_a_failing_tool_gives_the_model_the_same_error_live_and_on_replay(
    sqlite_url: str,
) -> None:
    model = ScriptedModel(
        [[function_call("explode", {"why": "no stock"}, call_id="e1")], [assistant_message("ok")]]
    )

    @function_tool
    def explode(why: str) -> str:
        """Always fails."""
        raise RuntimeError(why)

    agent = Agent(name="a", model=model, tools=[explode])
    app = App(sqlite_url)

    @app.agent
    async def fragile(ctx: Context) -> str:
        result = await run_agent(agent, "go")
        return str(result.final_output)

    job = await run_job(app, "fragile")
    assert job.status is JobStatus.SUCCEEDED, job.error
    said = model.calls[1].input[-1]["output"]
    assert said.startswith("An error occurred while running the tool"), said
    events = await (await app.open_store()).events(job.id)
    (recorded,) = [e.data for e in events if e.type.value == "op" and e.data["kind"] == "tool"]
    assert recorded["result"] == said, "the SDK's error message is the call's recorded outcome"
    report = await replay(app, job.id)
    assert report.outcome == "matched", report.diff
    assert len(model.calls) == 2
    await app.close()


async def test_a_rejected_approval_tells_the_model_and_the_tool_never_runs(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OA_WORLD", str(tmp_path))
    provider = ScriptProvider(REFUND, None)
    agent = Agent(name="r", model="scripted", tools=[openai_agents_app.refund])
    app = App(sqlite_url)

    @app.agent
    async def refunds(ctx: Context) -> str:
        result = await run_agent(agent, "refund o-1", run_config=RunConfig(model_provider=provider))
        return str(result.final_output)

    job = await run_job(app, "refunds", {}, JobStatus.PARKED)
    assert job.park_reason is ParkReason.APPROVAL
    assert job.park_detail is not None
    assert job.park_detail["payload"]["kwargs"] == {"arguments": {"order_id": "o-1", "amount": 42}}
    await app.reject(job.id, reason="not this one")
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, job.id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert not (tmp_path / "refunds.log").exists(), "a rejected tool is never dispatched"
    assert provider.model.calls == 2, "the first turn came from the journal after the park"
    await app.close()


def test_what_cannot_be_journaled_is_refused_with_the_reason() -> None:
    agent = Agent(name="a", tools=[openai_agents_app.lookup])
    with pytest.raises(ConfigurationError, match=r"effects names tools that no agent .* lokup"):
        asyncio.run(run_agent(agent, "x", effects={"lokup": "pure"}))
    shell = Agent(name="sh", tools=[LocalShellTool(executor=lambda request: "")])
    with pytest.raises(ConfigurationError, match="runs locally outside a FunctionTool"):
        asyncio.run(run_agent(shell, "x"))
    with pytest.raises(ConfigurationError, match="does not take a session"):
        asyncio.run(run_agent(agent, "x", session=SQLiteSession("s")))


# -- worker processes ------------------------------------------------------------------------


def start_worker(url: str, world: Path, crash_at: str | None = None) -> Any:
    env = {"OA_WORLD": str(world), "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    return processes.start_worker(
        "openai_agents_app:app", url, world, cwd=HERE, crash_at=crash_at, env=env
    )


async def uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Job:
    """The shop agent's job run in this process, with nothing in its way."""
    world = tmp_path / "uninterrupted"
    world.mkdir()
    monkeypatch.setenv("OA_WORLD", str(world))
    app = App(f"sqlite:///{world / 'a.db'}")
    app.agent(openai_agents_app.shop)
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
    monkeypatch.setenv("OA_WORLD", str(tmp_path))
    app = App(f"sqlite:///{tmp_path / 'a.db'}", lease_ttl=0.5)
    app.agent(openai_agents_app.shop)
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


async def test_an_approval_parks_the_job_and_a_cli_approval_resumes_it_on_another_worker(
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
    assert parked.park_reason is ParkReason.APPROVAL
    assert not (tmp_path / "refunds.log").exists(), "nothing is refunded before the approval"
    assert parked.park_detail is not None
    assert parked.park_detail["payload"]["tool"] == "refund"
    approved = aetheris_cli(url, "approve", handle.job_id, "--by", "ops")
    assert approved.returncode == 0, approved.stderr
    second = start_worker(url, tmp_path)
    try:
        job = await wait_for(app, handle.job_id, timeout=60)
    finally:
        stop(second)
        await app.close()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "Refund of order o-1 done."
    assert lines(tmp_path / "refunds.log") == ["o-1 42"]
    assert len(lines(tmp_path / "model.log")) == 2, "the turn before the park was not asked again"
