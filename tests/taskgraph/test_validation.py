"""A plan that cannot run is refused, naming each problem, before any node runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aetheris import App, Context, JobStatus
from aetheris.taskgraph import Catalog, PlanInvalid, enable_plans, load, validate
from tests.integration.helpers import run_job


def shop() -> tuple[App, list[str]]:
    app = App("memory://")
    ran: list[str] = []

    @app.tool
    async def lookup(order_id: str) -> dict[str, Any]:
        ran.append(f"lookup {order_id}")
        return {"order_id": order_id, "amount": 42}

    @app.tool(effect="at_most_once")
    async def refund(order_id: str, amount: float, reason: str = "") -> str:
        ran.append(f"refund {order_id}")
        return f"r-{order_id}"

    @app.agent
    async def notify(ctx: Context, text: str) -> str:
        return text

    enable_plans(app)
    return app, ran


def tool(node_id: str, name: str, **args: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "tool", "tool": name, "args": args}


def problems(plan: dict[str, Any], app: App) -> list[str]:
    with pytest.raises(PlanInvalid) as caught:
        validate(plan, Catalog(app.tools, set(app.agents)))
    return caught.value.problems


def ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def test_a_cycle_is_named_node_by_node() -> None:
    app, _ = shop()
    plan = {
        "nodes": [
            tool("a", "lookup", order_id=ref("c.output.order_id")),
            tool("b", "lookup", order_id=ref("a.output.order_id")),
            {**tool("c", "lookup", order_id="o1"), "depends_on": ["b"]},
        ]
    }
    assert problems(plan, app) == ["the plan has a cycle: a -> b -> c -> a"]
    itself = {"nodes": [{**tool("a", "lookup", order_id="o1"), "depends_on": ["a"]}]}
    assert problems(itself, app) == ["the plan has a cycle: a -> a"]


def test_a_missing_input_or_reference_is_refused() -> None:
    app, _ = shop()
    plan = {
        "nodes": [
            tool("a", "lookup", order_id="o1"),
            tool("b", "refund", order_id=ref("a.output.order_id")),
            tool("c", "refund", order_id="o1", amount=ref("zz.output.amount")),
            {**tool("d", "lookup", order_id="o2"), "depends_on": ["nowhere"]},
            tool("e", "lookup", order_id={"$ref": "a.outputs"}),
        ],
        "output": ref("ghost.output"),
    }
    assert problems(plan, app) == [
        "node 'c' refers to node 'zz', which is not in the plan",
        "node 'd' refers to node 'nowhere', which is not in the plan",
        "node 'e': a $ref is 'NODE.output[.path]', not 'a.outputs'",
        "the plan's output refers to node 'ghost', which is not in the plan",
        "node 'b': tool 'refund' needs argument 'amount', which is missing",
    ]


def test_unknown_tools_and_agents_and_arguments_that_break_the_signature() -> None:
    app, _ = shop()
    plan = {
        "nodes": [
            tool("a", "lookup", order_id="o1"),
            tool("a", "lookup", order_id="o2"),
            tool("b", "wire", iban="X"),
            tool("c", "refund", order_id="o1", amount="lots", currency="EUR"),
            {"id": "d", "type": "agent", "agent": "nobody", "input": {}},
        ]
    }
    assert problems(plan, app) == [
        "duplicate node id 'a'",
        "node 'b': unknown tool 'wire' (tools: lookup, refund)",
        "node 'c': tool 'refund' argument 'amount': Input should be a valid number, unable "
        "to parse string as a number (got 'lots')",
        "node 'c': tool 'refund' takes no argument 'currency'",
        "node 'd': unknown agent 'nobody' (agents: aetheris.plan, notify)",
    ]


def test_the_format_itself_is_checked() -> None:
    app, _ = shop()
    assert problems({"nodes": [{"id": "a", "type": "teleport"}]}, app)[0].startswith(
        "node 'a': Input tag 'teleport' found using 'type' does not match"
    )
    assert problems({"nodes": []}, app) == [
        "nodes: Tuple should have at least 1 item after validation, not 0"
    ]
    assert problems({"nodes": [tool("a b", "lookup", order_id="o")]}, app)[0].startswith(
        "node 'a b' field 'id': String should match pattern"
    )


def test_yaml_and_json_files_load(tmp_path: Path) -> None:
    yaml_file = tmp_path / "plan.yaml"
    yaml_file.write_text(
        "nodes:\n  - id: a\n    type: tool\n    tool: lookup\n    args: {order_id: o1}\n"
    )
    assert load(yaml_file).nodes[0].id == "a"
    broken = tmp_path / "plan.json"
    broken.write_text("{nodes: [")
    with pytest.raises(PlanInvalid, match="is neither JSON nor YAML"):
        load(broken)


async def test_an_invalid_plan_fails_its_job_before_any_node_runs() -> None:
    app, ran = shop()
    plan = {
        "nodes": [
            tool("a", "lookup", order_id="o1"),
            tool("b", "refund", order_id="o1", amount="lots"),
        ]
    }
    job = await run_job(app, "aetheris.plan", {"plan": plan})
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "PlanInvalid"
    assert "tool 'refund' argument 'amount'" in job.error["message"]
    assert ran == []
    events = await (await app.open_store()).events(job.id)
    assert not [e for e in events if e.type.value == "op"], "an operation was journaled"
    await app.close()


async def test_a_failed_node_fails_the_plan_and_later_nodes_do_not_run() -> None:
    app, ran = shop()

    @app.tool
    async def explode(why: str) -> str:
        raise ValueError(why)

    plan = {
        "nodes": [
            tool("a", "explode", why="no stock"),
            tool("b", "lookup", order_id="o1"),
            tool("c", "refund", order_id="o1", amount=ref("b.output.amount")),
            {**tool("d", "lookup", order_id="o2"), "depends_on": ["a"]},
        ]
    }
    job = await run_job(app, "aetheris.plan", {"plan": plan})
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "NodeFailed"
    assert "node 'a' failed: ToolFailed" in job.error["message"]
    assert "no stock" in job.error["message"]
    assert ran == ["lookup o1"]  # b ran beside a; nothing after the wave that failed
    await app.close()


async def test_conditions_approvals_and_child_agents() -> None:
    app, ran = shop()
    plan = {
        "nodes": [
            tool("order", "lookup", order_id="o7"),
            {
                "id": "big",
                "type": "condition",
                "check": {"op": "gt", "left": ref("order.output.amount"), "right": 100},
                "then": ["ask"],
                "else": ["tell"],
            },
            {"id": "ask", "type": "approval", "name": "big refund", "payload": ref("order.output")},
            {"id": "tell", "type": "agent", "agent": "notify", "input": {"text": "small"}},
            {**tool("pay", "refund", order_id="o7", amount=1.5), "depends_on": ["ask"]},
            {**tool("pay_small", "refund", order_id="o7", amount=0.5), "depends_on": ["tell"]},
            # where the branches meet: it runs whichever branch ran
            {
                "id": "done",
                "type": "agent",
                "agent": "notify",
                "input": {"text": ref("pay_small.output")},
                "depends_on": ["pay"],
                "join": "any",
            },
            {**tool("never", "lookup", order_id="o8"), "depends_on": ["pay", "pay_small"]},
        ],
        "output": ref("tell.output"),
    }
    job = await run_job(app, "aetheris.plan", {"plan": plan})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["skipped"] == ["ask", "pay", "never"]
    assert job.result["outputs"]["big"] is False
    assert job.result["outputs"]["done"] == "r-o7"
    assert job.result["result"] == "small"
    assert ran == ["lookup o7", "refund o7"]
    await app.close()
