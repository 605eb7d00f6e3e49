"""A job started and watched through an Aetheris server with ``aetheris.Client``.

To stay self-contained, this file serves its own App on a free local port (as
``aetheris server --app remote_client:app`` would), makes an API key and runs a worker in the
same process; the part that a remote program would run is ``watch``.

    python examples/remote_client.py
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

import aetheris
from aetheris import App, Context
from aetheris.api import create_api
from aetheris.keys import create_key

app = App(lease_ttl=2, poll_interval=0.05)


@app.tool(effect="at_most_once")
async def charge(order_id: str, amount: float) -> str:
    return f"ch_{order_id}"


@app.agent
async def place_order(ctx: Context, order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "charge": await charge(order_id, 12.5)}


async def watch(url: str, api_key: str) -> None:
    async with aetheris.Client(url, api_key) as client:
        handle = await client.start("place_order", {"order_id": "42"}, idempotency_key="order-42")
        async for event in client.stream(handle.job_id):
            print(event.seq, event.type, event.data.get("name", ""))
        print(await handle.result(timeout=30))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def main() -> None:
    _, api_key = await create_key(await app.open_store(), "operator", "default")
    port = free_port()
    config = uvicorn.Config(create_api(app), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    stop = asyncio.Event()
    working = asyncio.create_task(app.run_worker(concurrency=2, stop=stop))
    for _ in range(500):  # uvicorn sets a flag once it listens, not an event
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        await watch(f"http://127.0.0.1:{port}", api_key)
    finally:
        stop.set()
        server.should_exit = True
        await asyncio.gather(serving, working)
        await app.close()


if __name__ == "__main__":
    asyncio.run(main())
