"""The planner against a scripted model server: an invalid plan is sent back with its errors,
the valid one runs; a model that never gets it right is a clear error after its attempts."""

from __future__ import annotations

import json
from typing import Any

from aetheris import App, JobStatus
from aetheris.llm import ChatModel
from aetheris.llm.stub import StubServer
from aetheris.planner import enable_goals
from aetheris.replay import replay
from aetheris.taskgraph import enable_plans
from tests.integration.helpers import run_job

CYCLE = {
    "nodes": [
        {"id": "a", "type": "tool", "tool": "lookup", "args": {"order_id": {"$ref": "b.output"}}},
        {"id": "b", "type": "tool", "tool": "lookup", "args": {"order_id": {"$ref": "a.output"}}},
    ]
}
GOOD = {
    "goal": "refund o1",
    "nodes": [
        {"id": "order", "type": "tool", "tool": "lookup", "args": {"order_id": "o1"}},
        {
            "id": "pay",
            "type": "tool",
            "tool": "refund",
            "args": {"order_id": "o1", "amount": {"$ref": "order.output.amount"}},
        },
    ],
    "output": {"$ref": "pay.output"},
}


def shop(url: str, stub: StubServer, **options: Any) -> tuple[App, list[str]]:
    app = App(url)
    model = ChatModel("stub", base_url=stub.url, max_retries=1)
    app.on_close = model.aclose  # type: ignore[attr-defined]
    ran: list[str] = []

    @app.tool
    async def lookup(order_id: str) -> dict[str, Any]:
        """Look an order up."""
        ran.append(f"lookup {order_id}")
        return {"order_id": order_id, "amount": 42}

    @app.tool(effect="at_most_once")
    async def refund(order_id: str, amount: float) -> str:
        """Refund an order."""
        ran.append(f"refund {order_id} {amount}")
        return f"r-{order_id}"

    enable_goals(app, model, **options)
    return app, ran


async def test_an_invalid_plan_is_sent_back_and_the_valid_one_runs(store_url: str) -> None:
    script = {
        "replies": [
            {"content": json.dumps(CYCLE)},
            {"content": "Here you go:\n```json\n" + json.dumps(GOOD) + "\n```"},
        ]
    }
    with StubServer(script) as stub:
        app, ran = shop(store_url, stub)
        job = await run_job(app, "aetheris.goal", {"goal": "refund order o1"})
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.result["result"] == "r-o1"
        assert ran == ["lookup o1", "refund o1 42"]
        first, second = stub.requests
        system = first["messages"][0]["content"]
        assert "refund (at_most_once): Refund an order." in system
        assert '"amount": {"title": "Amount", "type": "number"}' in system
        assert first["messages"][1]["content"] == "Goal: refund order o1"
        retry = second["messages"][-1]["content"]
        assert retry.startswith("That plan is invalid: the plan has a cycle: a -> b -> a.")
        # The plans are journaled model calls: a replay asks the model nothing.
        assert (await replay(app, job.id)).outcome == "matched"
        assert stub.calls == 2
        await close(app)


async def test_a_model_that_never_plans_right_fails_after_its_attempts() -> None:
    unknown = {"nodes": [{"id": "a", "type": "tool", "tool": "wire", "args": {}}]}
    script = {"replies": [{"content": "I would rather chat."}, {"content": json.dumps(unknown)}]}
    with StubServer(script) as stub:
        app, ran = shop("memory://", stub, max_attempts=2)
        job = await run_job(app, "aetheris.goal", {"goal": "refund order o1"})
        assert job.status is JobStatus.FAILED
        assert job.error is not None and job.error["type"] == "PlanningFailed"
        message = job.error["message"]
        assert message.startswith("no valid plan after 2 answers from the model: answer 1: ")
        assert "the answer is not JSON" in message
        assert "answer 2: node 'a': unknown tool 'wire' (tools: lookup, refund)" in message
        assert ran == [] and stub.calls == 2
        await close(app)


async def test_a_failed_node_is_planned_again_when_asked() -> None:
    broken = {
        "nodes": [
            {"id": "order", "type": "tool", "tool": "lookup", "args": {"order_id": "o1"}},
            {
                "id": "pay",
                "type": "tool",
                "tool": "refund",
                "args": {"order_id": "o1", "amount": {"$ref": "order.output.total"}},
            },
        ]
    }
    script = {"replies": [{"content": json.dumps(broken)}, {"content": json.dumps(GOOD)}]}
    with StubServer(script) as stub:
        app, ran = shop("memory://", stub, replans=1)
        job = await run_job(app, "aetheris.goal", {"goal": "refund order o1"})
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.result["result"] == "r-o1"
        again = stub.requests[1]["messages"][1]["content"]
        assert "A previous plan for this goal failed: node 'pay' failed: " in again
        assert "order.output has no 'total'" in again
        assert '"order": {"amount": 42, "order_id": "o1"}' in again
        assert ran == ["lookup o1", "lookup o1", "refund o1 42"]
        await close(app)


async def close(app: App) -> None:
    await app.on_close()  # type: ignore[attr-defined]
    await app.close()


async def test_llm_nodes_and_a_tool_that_needs_approval_in_one_plan(store_url: str) -> None:
    plan = {
        "nodes": [
            {"id": "tone", "type": "llm", "prompt": "Say a tone.", "system": "Be brief."},
            {"id": "sum", "type": "llm", "prompt": {"add": [1, 2]}, "json": True},
            {"id": "order", "type": "tool", "tool": "lookup", "args": {"order_id": "o3"}},
            {
                "id": "pay",
                "type": "tool",
                "tool": "wire",
                "args": {"amount": {"$ref": "sum.output.total"}, "note": {"$ref": "tone.output"}},
            },
        ],
        "output": {"$ref": "pay.output"},
    }
    script = {
        "replies": [
            {"match": "tone", "content": "calm"},
            {"match": "add", "content": '{"total": 3}'},
        ]
    }
    with StubServer(script) as stub:
        app, ran = shop(store_url, stub)
        model = ChatModel("stub", base_url=stub.url, max_retries=1)
        enable_plans(app, model=model)

        @app.tool(effect="at_most_once", requires_approval=True)
        async def wire(amount: int, note: str) -> str:
            ran.append(f"wire {amount} {note}")
            return f"w-{amount}"

        job = await run_job(app, "aetheris.plan", {"plan": plan}, JobStatus.PARKED)
        assert job.park_detail is not None and job.park_detail["name"] == "tool:wire"
        assert job.park_detail["payload"]["kwargs"] == {"amount": 3, "note": "calm"}
        assert ran == ["lookup o3"]
        await app.approve(job.id, by="maria", args_hash=job.park_detail["args_hash"])
        job = await run_job_again(app, job.id)
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.result["result"] == "w-3"
        assert ran == ["lookup o3", "wire 3 calm"]
        assert stub.calls == 2
        assert (await replay(app, job.id)).outcome == "matched"
        await model.aclose()
        await close(app)


async def run_job_again(app: App, job_id: str) -> Any:
    from aetheris.testing import running_worker
    from tests.integration.helpers import wait_for

    async with running_worker(app, poll_interval=0.01):
        return await wait_for(app, job_id)
