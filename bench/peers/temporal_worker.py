"""One Temporal worker process: ``python -m bench.peers.temporal_worker ADDRESS QUEUE MARKS``.

The SDK's ``Worker`` with its defaults (sandboxed workflow runner, 100 slots per task kind,
sticky cache of 1,000 workflows). SIGTERM stops it gracefully and writes the timing marks kept
by ``temporal_acts`` to MARKS as JSON.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from bench.peers import temporal_acts, temporal_flows


async def serve(address: str, task_queue: str, marks: Path) -> None:
    client = await Client.connect(address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=temporal_flows.WORKFLOWS,
        activities=temporal_acts.ACTIVITIES,
    )
    async with worker:
        await stop.wait()
    temporal_acts.dump(marks)


def main() -> None:
    address, task_queue, marks = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    asyncio.run(serve(address, task_queue, marks))


if __name__ == "__main__":
    main()
