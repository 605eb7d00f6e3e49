"""LangGraph on Aetheris: checkpoints in the store (the conformance suite), model and tool calls
journaled one by one, a worker killed with SIGKILL mid-graph, and interrupt() as a park."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode

from aetheris import App, Context, JobStatus
from aetheris.errors import ConfigurationError
from aetheris.integrations.langgraph import (
    AetherisChatModel,
    AetherisCheckpointer,
    AetherisMiddleware,
    DurableTools,
    message_json,
    run_graph,
)
from aetheris.journal import EventType
from aetheris.testing import replay, running_worker
from tests import processes
from tests.integration.helpers import run_job, wait_for
from tests.integrations import langgraph_app as lg
from tests.processes import stop

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture(autouse=True)
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "world"
    folder.mkdir()
    monkeypatch.setenv("LG_WORLD", str(folder))
    return folder


async def operations(app: App, job_id: str) -> list[tuple[str, str]]:
    events = await (await app.open_store()).events(job_id)
    return [(e.data["kind"], e.data["name"]) for e in events if e.type is EventType.OP]


# -- (a) the checkpointer passes LangGraph's conformance suite ------------------------------------


async def test_the_checkpointer_passes_the_conformance_suite(store_url: str) -> None:
    @checkpointer_test(name=f"AetherisCheckpointer on {store_url.split(':')[0]}")
    async def saver() -> AsyncIterator[AetherisCheckpointer]:
        app = App(store_url)
        yield AetherisCheckpointer(app)
        await app.close()

    report = await validate(saver)
    failed = {cap: r.failures for cap, r in report.results.items() if not r.passed}
    assert not failed, failed
    assert len(report.results) == 8 and all(r.detected for r in report.results.values())
    assert report.conformance_level() == "FULL"


class Counter(TypedDict):
    n: int


def test_the_sync_methods_run_a_graph_without_an_event_loop(tmp_path: Path) -> None:
    builder = StateGraph(Counter)
    builder.add_node("double", lambda state: {"n": state["n"] * 2})
    builder.add_edge(START, "double")
    builder.add_edge("double", END)
    saver = AetherisCheckpointer(App(f"sqlite:///{tmp_path / 'sync.db'}"))
    graph = builder.compile(checkpointer=saver)
    config: Any = {"configurable": {"thread_id": "t"}}
    try:
        assert graph.invoke({"n": 21}, config) == {"n": 42}
        assert graph.get_state(config).values == {"n": 42}
        assert len(list(graph.get_state_history(config))) == 3  # input, loop, loop
    finally:
        saver.close()


async def test_a_sync_call_on_the_checkpointers_own_loop_says_what_to_do() -> None:
    saver = AetherisCheckpointer(App("memory://"))
    assert await saver.aget_tuple({"configurable": {"thread_id": "t"}}) is None
    with pytest.raises(ConfigurationError, match="use the async API"):
        saver.get_tuple({"configurable": {"thread_id": "t"}})


# -- (b) in-process: journaled call by call, replayed with no model call ---------------------------


ORDER_OPERATIONS = [
    ("step", "langgraph.thread"),
    ("llm", "scripted"),
    ("tool", "lookup"),
    ("llm", "scripted"),
    ("tool", "charge"),
    ("llm", "scripted"),
]


async def test_a_tool_loop_graph_is_journaled_call_by_call_and_replays(
    store_url: str, world: Path
) -> None:
    app = lg.build(store_url, lease_ttl=1.0)
    job = await run_job(app, "assistant", {"request": "charge order o-1"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == lg.ANSWER
    assert await operations(app, job.id) == ORDER_OPERATIONS
    events = await (await app.open_store()).events(job.id)
    calls = [e.data for e in events if e.data.get("kind") == "llm"]
    assert [c["usage"]["output_tokens"] for c in calls] == [5, 5, 5]
    assert lg.lines(world, "model.log") == ["turn 0", "turn 1", "turn 2"]
    report = await replay(app, job.id)
    assert report.outcome == "matched", report.diff
    assert len(lg.lines(world, "model.log")) == 3, "a replay calls no model"
    assert lg.lines(world, "charges.log") == ["o-1 42"]
    # The thread holds the graph's state: the conversation, tool results included.
    saver = AetherisCheckpointer(app)
    state = await saver.aget_tuple({"configurable": {"thread_id": f"aetheris-{job.id}"}})
    assert state is not None
    messages = state.checkpoint["channel_values"]["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        *["AIMessage", "ToolMessage"] * 2,
        "AIMessage",
    ]
    await app.close()


async def test_create_agent_with_the_middleware_is_journaled_and_replays(world: Path) -> None:
    app = App("memory://")
    middleware = AetherisMiddleware({"lookup": "pure"}, model_name="scripted")
    model = lg.ScriptedChatModel(script=lg.ORDER_SCRIPT)
    agent = create_agent(
        model, lg.TOOLS, middleware=[middleware], checkpointer=AetherisCheckpointer(app)
    )

    @app.agent
    async def shop(ctx: Context, request: str) -> str:
        output = await run_graph(ctx, agent, {"messages": [HumanMessage(request)]})
        return str(output["messages"][-1].content)

    job = await run_job(app, "shop", {"request": "charge order o-1"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == lg.ANSWER
    assert await operations(app, job.id) == ORDER_OPERATIONS
    effects = await (await app.open_store()).effects(job_id=job.id)
    assert [(e.tool, e.effect.value) for e in effects] == [("charge", "at_most_once")]
    assert (await replay(app, job.id)).outcome == "matched"
    assert len(lg.lines(world, "model.log")) == 3
    await app.close()


def test_a_request_is_the_same_whatever_ids_langgraph_drew() -> None:
    one = HumanMessage("hi", id="6f1c0a1e")
    other = HumanMessage("hi", id="0b7d55f3")
    assert message_json(one, with_id=False) == message_json(other, with_id=False)
    assert message_json(one) != message_json(other)
    call = {"name": "charge", "args": {"b": 1, "a": 2}, "id": "c1"}
    reply = AIMessage("", tool_calls=[call], id="lc_run--1")
    assert message_json(reply, with_id=False)["data"]["tool_calls"][0]["id"] == "c1"


async def test_the_wrapper_outside_an_agent_just_calls_the_model(world: Path) -> None:
    model = AetherisChatModel(lg.ScriptedChatModel(script=lg.CONFIRM_SCRIPT))
    answer = await model.ainvoke([HumanMessage("price?")])
    assert answer.content == "Order o-1 costs 42."
    assert lg.lines(world, "model.log") == ["turn 0"]


async def test_a_tool_failure_is_journaled_and_raised_again_on_replay(world: Path) -> None:
    @tool
    async def refund(order_id: str) -> str:
        """Refund an order."""
        lg.note("refunds.log", order_id)
        raise RuntimeError(f"order {order_id} was never paid")

    script = [{"tool_calls": [{"name": "refund", "args": {"order_id": "o-9"}, "id": "r1"}]}]
    app = App("memory://")
    model = AetherisChatModel(lg.ScriptedChatModel(script=script), name="scripted")

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    tools = ToolNode([refund], awrap_tool_call=DurableTools(), handle_tool_errors=False)
    builder.add_node("tools", tools)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", "tools")
    builder.add_edge("tools", END)
    graph = builder.compile(checkpointer=AetherisCheckpointer(app))

    @app.agent
    async def refunder(ctx: Context) -> str:
        await run_graph(ctx, graph, {"messages": [HumanMessage("refund o-9")]})
        return "unreachable"

    job = await run_job(app, "refunder")
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "ToolFailed"
    assert "order o-9 was never paid" in job.error["message"]
    assert (await replay(app, job.id)).outcome == "matched"
    assert lg.lines(world, "refunds.log") == ["o-9"], "the replay raised the recorded failure"
    await app.close()


# -- worker processes ------------------------------------------------------------------------------


def start_worker(url: str, world: Path, crash_at: str | None = None) -> Any:
    env = {"LG_WORLD": str(world)}
    return processes.start_worker(
        "langgraph_app:app", url, world, cwd=HERE, crash_at=crash_at, env=env
    )


async def finish(url: str, world: Path, crash_at: str | None) -> tuple[Any, int]:
    """One job of the order assistant; with ``crash_at`` a first worker dies there (SIGKILL)
    and a second finishes. Returns the job and how many checkpoints its thread holds."""
    app = App(url)
    handle = await app.start("assistant", {"request": "charge order o-1"})
    if crash_at:
        first = start_worker(url, world, crash_at)
        assert await asyncio.to_thread(first.wait, 60) == -9, "the worker was not killed"
    second = start_worker(url, world)
    try:
        job = await wait_for(app, handle.job_id, timeout=60)
        thread = {"configurable": {"thread_id": f"aetheris-{job.id}"}}
        checkpoints = [c async for c in AetherisCheckpointer(app).alist(thread)]
    finally:
        stop(second)
        await app.close()
    return job, len(checkpoints)


# -- (c) a worker killed mid-graph --------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.parametrize("crash_at", ["after_outcome:charge", "after_outcome:scripted@2"])
async def test_a_killed_worker_resumes_the_graph_without_calling_the_model_again(
    tmp_path: Path, crash_at: str
) -> None:
    clean_world, world = tmp_path / "clean", tmp_path / "crashed"
    clean_world.mkdir()
    world.mkdir()
    clean, clean_checkpoints = await finish(f"sqlite:///{tmp_path / 'c.db'}", clean_world, None)
    job, checkpoints = await finish(f"sqlite:///{tmp_path / 'k.db'}", world, crash_at)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == clean.result == lg.ANSWER
    # Each turn was paid once: the recorded ones came from the journal after the crash.
    assert lg.lines(world, "model.log") == ["turn 0", "turn 1", "turn 2"]
    assert lg.lines(world, "charges.log") == ["o-1 42"], "the at_most_once tool ran once"
    # The thread was set back to where the job began: it holds what a clean run leaves.
    assert checkpoints == clean_checkpoints


# -- (d) interrupt() parks the job; a signal resumes it on another worker ----------------------


@pytest.mark.chaos
async def test_an_interrupt_parks_the_job_and_a_signal_resumes_it_on_another_worker(
    durable_url: str, world: Path
) -> None:
    app = lg.build(durable_url)  # the agents' code, for the replay at the end
    handle = await app.start("confirmer", {"request": "ship order o-1"})
    first = start_worker(durable_url, world)
    try:
        parked = await wait_for(app, handle.job_id, JobStatus.PARKED, timeout=60)
    finally:
        stop(first)
    assert parked.park_reason is not None and parked.park_reason.value == "signal"
    assert await app.waiting_for(handle.job_id) == "resume"
    assert lg.lines(world, "charges.log") == ["o-1 42"]
    await app.signal(handle.job_id, "resume", {"approved": True})
    second = start_worker(durable_url, world)
    try:
        job = await wait_for(app, handle.job_id, timeout=60)
    finally:
        stop(second)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == "ch-o-1 sh-o-1"
    # The node ran again from its top after the signal: its model call and charge did not.
    assert lg.lines(world, "model.log") == ["turn 0"]
    assert lg.lines(world, "charges.log") == ["o-1 42"]
    assert lg.lines(world, "shipments.log") == ["o-1"]
    ops = await operations(app, job.id)
    assert ("step", "langgraph.interrupt") in ops and ("signal", "resume") in ops
    assert (await replay(app, job.id)).outcome == "matched"
    assert len(lg.lines(world, "model.log")) == 1
    await app.close()


async def test_an_interrupt_answered_no_skips_what_follows_it(world: Path) -> None:
    app = lg.build("memory://", lease_ttl=1.0)
    job = await run_job(app, "confirmer", {"request": "ship order o-1"}, JobStatus.PARKED)
    await app.signal(job.id, "resume", {"approved": False})
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, job.id)
    assert job.result == "not shipped"
    assert lg.lines(world, "charges.log") == ["o-1 42"]
    assert lg.lines(world, "shipments.log") == []
    await app.close()
