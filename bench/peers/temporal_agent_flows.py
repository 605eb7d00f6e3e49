"""A1's Temporal workflow: the PydanticAI agent with PydanticAI's ``TemporalDurability``.

Model requests and function-tool calls run as activities (PydanticAI's Temporal backend does
both), with a 5 s ``start_to_close_timeout`` (PydanticAI's default is 60 s: a lost attempt
would then be retried only after a minute). The run is timed in workflow code through
``temporal_acts`` (passed through the sandbox), only when not replaying, as the other Temporal
workloads are.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.workflow import ActivityConfig

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import TemporalDurability

    import bench.peers.temporal_acts as acts
    from bench.peers import pydantic_agent

ACTIVITY_TIMEOUT_S = 5.0
durability = TemporalDurability(
    activity_config=ActivityConfig(start_to_close_timeout=timedelta(seconds=ACTIVITY_TIMEOUT_S))
)
agent = pydantic_agent.build([durability], name="a1")


@workflow.defn(name="A1Agent")
class A1AgentWorkflow:
    __pydantic_ai_agents__ = (agent,)

    @workflow.run
    async def run(self, spec: dict[str, int | str]) -> int:
        turns = int(spec["turns"])
        began = acts.now()
        await pydantic_agent.run(agent, turns)
        if not workflow.unsafe.is_replaying():
            acts.record(str(spec["tag"]), turns, began, acts.now())
        return turns
