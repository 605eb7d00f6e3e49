"""The model client inside agents: journaled calls, tools, streaming, structured output, and a
worker killed with SIGKILL mid-conversation that resumes without paying the model again."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from aetheris import App, Context, JobStatus
from aetheris.llm import ChatModel, set_price, tool_spec
from aetheris.llm.stub import StubServer
from aetheris.testing import replay
from tests import processes
from tests.integration.helpers import run_job, wait_for
from tests.processes import aetheris_cli

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ORDER_SCRIPT = {
    "replies": [
        {"tool_calls": [{"name": "lookup", "arguments": {"order_id": "o-1"}, "id": "c1"}]},
        {
            "tool_calls": [
                {"name": "charge", "arguments": {"order_id": "o-1", "amount": 42}, "id": "c2"}
            ]
        },
        {"content": "Charged order o-1: ch-o-1."},
    ]
}


def assistant_app(url: str, stub: StubServer, **chat: Any) -> tuple[App, ChatModel]:
    app = App(url, lease_ttl=1.0)
    model = ChatModel("stub", base_url=stub.url, max_retries=1, **chat)

    @app.tool
    async def lookup(order_id: str) -> dict[str, Any]:
        """Look an order up."""
        return {"order_id": order_id, "amount": 42}

    @app.tool(effect="at_most_once")
    async def charge(order_id: str, amount: float) -> str:
        """Charge the customer."""
        return f"ch-{order_id}"

    @app.agent
    async def assistant(ctx: Context, request: str) -> str:
        messages: list[dict[str, Any]] = [{"role": "user", "content": request}]
        for _ in range(5):
            result = await model.chat(messages, tools=[lookup, charge])
            messages.append(result.message)
            if not result.tool_calls:
                return result.content or ""
            messages += await model.run_tools(result, [lookup, charge])
        return "gave up"

    return app, model


async def test_a_tool_loop_is_journaled_and_replays_without_calling_the_model(
    store_url: str,
) -> None:
    set_price("stub", input=0.5, output=1.5)
    with StubServer(ORDER_SCRIPT) as stub:
        app, model = assistant_app(store_url, stub)
        job = await run_job(app, "assistant", {"request": "charge order o-1"})
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.result == "Charged order o-1: ch-o-1."
        assert stub.calls == 3
        # The model saw the tools' JSON schemas and the tool results of earlier turns.
        tools = stub.requests[0]["tools"]
        assert tools[1]["function"]["parameters"]["required"] == ["order_id", "amount"]
        assert stub.requests[2]["messages"][-1]["content"] == '"ch-o-1"'
        events = await (await app.open_store()).events(job.id)
        calls = [e.data for e in events if e.data.get("kind") == "llm"]
        assert [c["name"] for c in calls] == ["stub"] * 3
        assert all(c["usage"]["input_tokens"] > 0 and c["cost"] > 0 for c in calls)
        # Provenance: each tool call names the model answer that asked for it.
        answers = [e.position for e in events if e.data.get("kind") == "llm"]
        tools = {e.data["name"]: e.data for e in events if e.data.get("kind") == "tool"}
        assert tools["lookup"]["proposed_by"] == answers[0]
        assert tools["charge"]["proposed_by"] == answers[1]
        report = await replay(app, job.id)
        assert report.outcome == "matched" and stub.calls == 3, "a replay calls no model"
        await model.aclose()
    await app.close()


async def test_streamed_chunks_reach_the_subscriber_and_only_the_answer_is_journaled(
    tmp_path: Path,
) -> None:
    chunks: list[dict[str, Any]] = []
    with StubServer({"replies": [{"content": "one two three"}]}) as stub:
        app = App(f"sqlite:///{tmp_path / 's.db'}")
        model = ChatModel("stub", base_url=stub.url)

        @app.agent
        async def talk(ctx: Context) -> str:
            reply = await model.chat(
                [{"role": "user", "content": "count"}], stream=True, on_chunk=chunks.append
            )
            return reply.content or ""

        job = await run_job(app, "talk")
        assert job.result == "one two three"
        assert len(chunks) >= 3, chunks
        events = await (await app.open_store()).events(job.id)
        assert sum(1 for e in events if e.data.get("kind") == "llm") == 1
        await model.aclose()
    await app.close()


class Verdict(BaseModel):
    approve: bool
    reason: str


async def test_structured_output_is_parsed_into_the_model_given(tmp_path: Path) -> None:
    script = {"replies": [{"content": '{"approve": true, "reason": "small amount"}'}]}
    with StubServer(script) as stub:
        app = App(f"sqlite:///{tmp_path / 's.db'}")
        model = ChatModel("stub", base_url=stub.url)

        @app.agent
        async def judge(ctx: Context) -> dict[str, Any]:
            reply = await model.chat([{"role": "user", "content": "?"}], response_format=Verdict)
            assert isinstance(reply.parsed, Verdict)
            return reply.parsed.model_dump()

        job = await run_job(app, "judge")
        assert job.result == {"approve": True, "reason": "small amount"}
        sent = stub.requests[0]["response_format"]
        assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Verdict"
        await model.aclose()
    await app.close()


def test_a_tool_spec_carries_the_schema_and_the_first_paragraph_of_the_docstring() -> None:
    app = App("memory://")

    @app.tool
    async def refund(order_id: str, amount: float = 0.0) -> str:
        """Refund an order.

        Longer notes that the model does not need."""
        return order_id

    spec = tool_spec(refund)
    assert spec["function"]["name"] == "refund"
    assert spec["function"]["description"] == "Refund an order."
    assert spec["function"]["parameters"]["required"] == ["order_id"]


# -- a worker process killed mid-conversation --------------------------------------------------


def start_worker(url: str, stub: StubServer, world: Path, crash_at: str | None) -> Any:
    env = {"AETHERIS_LLM_URL": stub.url, "LLM_WORLD": str(world)}
    return processes.start_worker("llm_app:app", url, world, cwd=HERE, crash_at=crash_at, env=env)


async def finish(url: str, stub: StubServer, world: Path, crash_at: str | None) -> Any:
    """Run one job of the assistant; with ``crash_at``, a first worker dies there (SIGKILL)
    and a second one finishes the job. Returns the job."""
    app = App(url)
    handle = await app.start("assistant", {"request": "charge order o-1"})
    if crash_at:
        first = start_worker(url, stub, world, crash_at)
        assert await asyncio.to_thread(first.wait, 60) == -9, "the worker was not killed"
    second = start_worker(url, stub, world, None)
    try:
        job = await wait_for(app, handle.job_id, timeout=60)
    finally:
        second.terminate()
        second.wait(10)
        await app.close()
    return job


@pytest.mark.parametrize("crash_at", ["after_outcome:charge", "after_outcome:stub@2"])
async def test_a_killed_worker_resumes_without_calling_the_model_again(
    tmp_path: Path, crash_at: str
) -> None:
    clean_world, world = tmp_path / "clean", tmp_path / "crashed"
    clean_world.mkdir()
    world.mkdir()
    with StubServer(ORDER_SCRIPT) as stub:
        clean = await finish(f"sqlite:///{tmp_path / 'clean.db'}", stub, clean_world, None)
    started = time.monotonic()
    with StubServer(ORDER_SCRIPT) as stub:
        job = await finish(f"sqlite:///{tmp_path / 'crash.db'}", stub, world, crash_at)
        assert stub.calls == 3, "each recorded turn was served from the journal"
    assert job.status is JobStatus.SUCCEEDED, (job.error, time.monotonic() - started)
    assert job.result == clean.result == "Charged order o-1: ch-o-1."
    assert (world / "charges.log").read_text().splitlines() == ["o-1 42"]


# -- the command line: a budget, its raise, and what the journal shows -------------------------


async def test_a_budget_from_the_command_line_parks_and_a_raise_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    with StubServer(ORDER_SCRIPT) as stub:
        started = aetheris_cli(
            url,
            "start",
            "assistant",
            "--input",
            '{"request": "charge o-1"}',
            "--budget-tokens",
            "10",
        )
        assert started.returncode == 0, started.stderr
        job_id = started.stdout.strip()
        app = App(url)
        worker = start_worker(url, stub, tmp_path, None)
        try:
            parked = await wait_for(app, job_id, JobStatus.PARKED, timeout=30)
            assert parked.park_reason is not None and parked.park_reason.value == "budget"
            assert stub.calls == 2, "the third call waits for the budget"
            raised = aetheris_cli(url, "budget", job_id[:12], "--tokens", "1000")
            assert raised.returncode == 0, raised.stderr
            assert "budget raised to tokens 1000; it resumes" in raised.stdout
            job = await wait_for(app, job_id, timeout=30)
        finally:
            worker.terminate()
            worker.wait(10)
            await app.close()
    assert job.status is JobStatus.SUCCEEDED, job.error
    trace = aetheris_cli(url, "trace", job_id).stdout
    assert "model calls 3:" in trace
    assert "budget#1" in trace and "to tokens 1000" in trace
    assert trace.count("answered") == 3 and "cost unknown" in trace
    shown = json.loads(aetheris_cli(url, "jobs", "show", job_id, "--json").stdout)
    assert shown["model_calls"]["calls"] == 3 and shown["model_calls"]["cost"] is None
