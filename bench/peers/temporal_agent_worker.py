"""A Temporal worker process for A1: ``python -m bench.peers.temporal_agent_worker ADDRESS QUEUE
MARKS``. The SDK's ``Worker`` with its defaults plus PydanticAI's ``PydanticAIPlugin`` (its
data converter and sandbox pass-throughs) and the agent's activities (``AgentPlugin``).
SIGTERM stops it gracefully and writes the timing marks to MARKS as JSON.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from pydantic_ai.durable_exec.temporal import AgentPlugin, PydanticAIPlugin
from temporalio.client import Client
from temporalio.worker import Worker

from bench.peers import temporal_acts
from bench.peers.temporal_agent_flows import A1AgentWorkflow, agent


async def serve(address: str, task_queue: str, marks: Path) -> None:
    client = await Client.connect(address, plugins=[PydanticAIPlugin()])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    worker = Worker(
        client, task_queue=task_queue, workflows=[A1AgentWorkflow], plugins=[AgentPlugin(agent)]
    )
    async with worker:
        await stop.wait()
    temporal_acts.dump(marks)


def main() -> None:
    asyncio.run(serve(sys.argv[1], sys.argv[2], Path(sys.argv[3])))


if __name__ == "__main__":
    main()
