"""PydanticAI agents under Aetheris through ``AetherisDurability``: model requests and tool calls
journaled and replayed without calling the model, a worker killed with SIGKILL mid-run that
resumes without paying the model again, approvals across worker processes, and nothing changed
outside an Aetheris agent."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from aetheris import App, ConfigurationError, Context, JobStatus
from aetheris.integrations.pydantic_ai import AetherisDurability, ToolPolicy
from aetheris.testing import replay, running_worker
from tests import processes
from tests.integration.helpers import run_job, wait_for
from tests.integrations import pydantic_ai_app
from tests.processes import lines, stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# A tool's result reaches the model as the journal gives it back: its keys in order, live too.
ANSWER = 'done: lookup={"amount":42,"order_id":"o-1"}; charge=ch-o-1; notify=sent'
# Outside Aetheris the capability changes nothing: the tool's dict keeps its own order.
UNJOURNALED_ANSWER = 'done: lookup={"order_id":"o-1","amount":42}; charge=ch-o-1; notify=sent'


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the scripted models and the tools of ``pydantic_ai_app`` note their calls."""
    folder = tmp_path / "world"
    folder.mkdir()
    monkeypatch.setattr(pydantic_ai_app, "WORLD", folder)
    return folder


def served(app: App) -> None:
    """Serve ``pydantic_ai_app``'s agents from ``app``."""

    @app.agent
    async def assistant(ctx: Context, request: str) -> str:
        return (await pydantic_ai_app.order_agent.run(request)).output

    @app.agent
    async def refunder(ctx: Context, request: str) -> str:
        return (await pydantic_ai_app.refund_agent.run(request)).output


async def test_a_three_tool_run_is_journaled_and_replays_without_calling_the_model(
    world: Path, tmp_path: Path
) -> None:
    app = App(f"sqlite:///{tmp_path / 'a.db'}")
    served(app)
    job = await run_job(app, "assistant", {"request": "charge order o-1"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == ANSWER
    assert lines(world / "model.log") == ["orders"] * 4
    events = await (await app.open_store()).events(job.id)
    ops = [e.data for e in events if e.type.value == "op"]
    assert [(op["kind"], op["name"]) for op in ops] == [
        ("llm", "orders"),
        ("tool", "lookup"),
        ("llm", "orders"),
        ("tool", "charge"),
        ("llm", "orders"),
        ("tool", "notify"),
        ("llm", "orders"),
    ]
    assert all(op["usage"]["input_tokens"] > 0 for op in ops if op["kind"] == "llm")
    # The effect classes: lookup declared pure (no intent), charge undeclared (at_most_once).
    intents = {e.data["name"]: e.data["effect"] for e in events if e.type.value == "intent"}
    assert intents == {"charge": "at_most_once", "notify": "idempotent"}
    report = await replay(app, job.id)
    assert report.outcome == "matched", report
    assert lines(world / "model.log") == ["orders"] * 4, "a replay calls no model"
    assert lines(world / "charges.log") == ["o-1 42.0"]
    await app.close()


async def test_a_model_retry_from_a_tool_reaches_the_model_live_and_on_replay(
    tmp_path: Path,
) -> None:
    asked: list[list[ModelMessage]] = []
    tries: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        asked.append(messages)
        turn = sum(1 for m in messages if m.kind == "response")
        if turn < 2:
            return ModelResponse(parts=[ToolCallPart("lookup", {"order_id": f"o-{turn}"})])
        return ModelResponse(parts=[TextPart("found")])

    agent = Agent(FunctionModel(script, model_name="m"), capabilities=[AetherisDurability()])

    @agent.tool_plain
    def lookup(order_id: str) -> str:
        tries.append(order_id)
        if order_id == "o-0":
            raise ModelRetry("no such order, try o-1")
        return "o-1 found"

    app = App(f"sqlite:///{tmp_path / 'r.db'}")

    @app.agent
    async def finder(ctx: Context) -> str:
        return (await agent.run("find it")).output

    job = await run_job(app, "finder")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "found" and tries == ["o-0", "o-1"]
    retried = asked[1][-1].parts[0]
    assert retried.part_kind == "tool-return" and retried.outcome == "retried"
    assert "no such order, try o-1" in retried.model_response_str()
    events = await (await app.open_store()).events(job.id)
    failed = [e.data for e in events if e.type.value == "op" and e.data.get("error")]
    assert failed == [failed[0]] and failed[0]["error"]["type"] == "ModelRetry"
    # The replayed retry is handed to PydanticAI as a ModelRetry again: otherwise the second
    # request (which carries the retry prompt) would differ and the replay would diverge.
    report = await replay(app, job.id)
    assert report.outcome == "matched", report
    assert len(asked) == 3 and tries == ["o-0", "o-1"]
    await app.close()


async def test_tool_calls_of_one_response_run_one_after_another_in_the_models_order(
    tmp_path: Path,
) -> None:
    seen: list[str] = []

    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if any(m.kind == "response" for m in messages):
            return ModelResponse(parts=[TextPart("both")])
        calls = [ToolCallPart("slow", {"name": "a"}), ToolCallPart("fast", {"name": "b"})]
        return ModelResponse(parts=calls)

    agent = Agent(FunctionModel(script, model_name="m"), capabilities=[AetherisDurability()])

    @agent.tool_plain
    async def slow(name: str) -> str:
        seen.append(f"{name} begins")
        await asyncio.sleep(0.05)
        seen.append(f"{name} ends")
        return name

    @agent.tool_plain
    async def fast(name: str) -> str:
        seen.append(f"{name} begins")
        seen.append(f"{name} ends")
        return name

    app = App(f"sqlite:///{tmp_path / 'o.db'}")

    @app.agent
    async def both(ctx: Context) -> str:
        return (await agent.run("go")).output

    job = await run_job(app, "both")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert seen == ["a begins", "a ends", "b begins", "b ends"]
    events = await (await app.open_store()).events(job.id)
    tools = [e.data["name"] for e in events if e.type.value == "op" and e.data["kind"] == "tool"]
    assert tools == ["slow", "fast"]
    assert (await replay(app, job.id)).outcome == "matched"
    await app.close()


async def test_a_tool_the_model_invents_is_neither_dispatched_nor_journaled(
    tmp_path: Path,
) -> None:
    def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if not any(m.kind == "response" for m in messages):
            return ModelResponse(parts=[ToolCallPart("wire_money", {"to": "mallory"})])
        return ModelResponse(parts=[TextPart(messages[-1].parts[0].model_response_str())])

    agent = Agent(FunctionModel(script, model_name="m"), capabilities=[AetherisDurability()])

    @agent.tool_plain
    def lookup(order_id: str) -> str:
        return order_id

    app = App(f"sqlite:///{tmp_path / 'u.db'}")

    @app.agent
    async def inventive(ctx: Context) -> str:
        return (await agent.run("go")).output

    job = await run_job(app, "inventive")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert "Unknown tool name: 'wire_money'" in job.result
    events = await (await app.open_store()).events(job.id)
    assert [e.data["kind"] for e in events if e.type.value in ("op", "intent")] == ["llm", "llm"]
    assert (await replay(app, job.id)).outcome == "matched"
    await app.close()


async def test_a_streamed_run_journals_its_final_response(tmp_path: Path) -> None:
    calls: list[int] = []

    async def words(messages: list[ModelMessage], info: AgentInfo) -> Any:
        calls.append(1)
        for word in ["one ", "two ", "three"]:
            yield word

    agent = Agent(
        FunctionModel(stream_function=words, model_name="words"),
        capabilities=[AetherisDurability()],
    )
    app = App(f"sqlite:///{tmp_path / 's.db'}")

    @app.agent
    async def streamer(ctx: Context) -> str:
        async with agent.run_stream("count") as result:
            return "".join([text async for text in result.stream_text(delta=True)])

    job = await run_job(app, "streamer")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "one two three"
    events = await (await app.open_store()).events(job.id)
    assert [e.data["name"] for e in events if e.data.get("kind") == "llm"] == ["words"]
    report = await replay(app, job.id)
    assert report.outcome == "matched" and calls == [1]
    await app.close()


async def test_a_rejected_approval_reaches_the_model_as_a_denial(
    world: Path, tmp_path: Path
) -> None:
    app = App(f"sqlite:///{tmp_path / 'd.db'}")
    served(app)
    handle = await app.start("refunder", {"request": "refund o-1"})
    async with running_worker(app, poll_interval=0.01):
        parked = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert parked.park_detail is not None
        assert parked.park_detail["payload"]["args"] == {"order_id": "o-1", "amount": 42}
        await app.reject(handle.job_id, reason="over the limit")
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "denied: The tool call was rejected: over the limit"
    assert lines(world / "refunds.log") == []
    await app.close()


async def test_outside_an_aetheris_agent_the_agent_runs_normally(world: Path) -> None:
    result = await pydantic_ai_app.order_agent.run("charge order o-1")
    assert result.output == UNJOURNALED_ANSWER
    assert lines(world / "model.log") == ["orders"] * 4
    assert lines(world / "charges.log") == ["o-1 42.0"]
    # The approval is PydanticAI's own again: the run ends waiting for it.
    with pytest.raises(Exception, match="DeferredToolRequests"):
        await pydantic_ai_app.refund_agent.run("refund o-1")
    assert lines(world / "refunds.log") == []


def test_an_unknown_effect_class_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"'sometimes'.*'at_most_once'"):
        AetherisDurability(tools={"charge": "sometimes"})
    durability = AetherisDurability(tools={"lookup": ToolPolicy("pure")})
    assert durability.policy("lookup").effect == "pure"
    assert durability.policy("anything").effect == "at_most_once"


# -- worker processes ------------------------------------------------------------------------


def start_worker(url: str, world: Path, crash_at: str | None = None) -> Any:
    env = {"PYD_WORLD": str(world)}
    return processes.start_worker(
        "pydantic_ai_app:app", url, world, cwd=HERE, crash_at=crash_at, env=env
    )


async def finish(url: str, world: Path, crash_at: str | None) -> Any:
    """One job of the assistant; with ``crash_at`` a first worker dies there (SIGKILL) and a
    second one finishes the job."""
    app = App(url)
    handle = await app.start("assistant", {"request": "charge order o-1"})
    if crash_at:
        first = start_worker(url, world, crash_at)
        assert await asyncio.to_thread(first.wait, 60) == -9, "the worker was not killed"
        assert lines(world / "model.log") == ["orders"] * 2
    second = start_worker(url, world)
    try:
        return await wait_for(app, handle.job_id, timeout=60)
    finally:
        stop(second)
        await app.close()


async def test_a_worker_killed_after_the_second_tool_resumes_without_calling_the_model_again(
    tmp_path: Path,
) -> None:
    clean_world, world = tmp_path / "clean", tmp_path / "crashed"
    clean_world.mkdir()
    world.mkdir()
    clean = await finish(f"sqlite:///{tmp_path / 'clean.db'}", clean_world, None)
    job = await finish(f"sqlite:///{tmp_path / 'crash.db'}", world, "after_outcome:charge")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == clean.result == ANSWER
    assert lines(world / "model.log") == lines(clean_world / "model.log") == ["orders"] * 4
    assert lines(world / "charges.log") == ["o-1 42.0"]
    assert lines(world / "notices.log") == ["o-1 charged"]


async def test_an_approval_parks_the_job_and_another_worker_process_runs_the_tool(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'approval.db'}"
    app = App(url)
    handle = await app.start("refunder", {"request": "refund o-1"})
    first = start_worker(url, tmp_path)
    try:
        parked = await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=60)
    finally:
        stop(first)
    assert parked.park_reason is not None and parked.park_reason.value == "approval"
    assert parked.park_detail is not None and parked.park_detail["name"] == "tool:refund"
    assert lines(tmp_path / "refunds.log") == [], "nothing is dispatched before the approval"
    await app.approve(handle.job_id, by="alice")
    second = start_worker(url, tmp_path)
    try:
        job = await wait_for(app, handle.job_id, timeout=60)
    finally:
        stop(second)
        await app.close()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "success: re-o-1"
    assert lines(tmp_path / "refunds.log") == ["o-1 42.0"]
    assert lines(tmp_path / "model.log") == ["refunds"] * 2, "the first turn was not asked again"
