"""An outgoing webhook, end to end: a receiver checks the signature of a job's end.

To stay self-contained, this file runs the receiver (a plain ``http.server`` on a free local
port), subscribes it to ``job.completed``, runs a job with a worker and then delivers the
outbox once, as ``aetheris server`` does all the time. The part a receiving service would
have is ``receive``.

    python examples/webhooks.py
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aetheris import App, Context
from aetheris.webhooks import Deliverer, create_webhook, verify_signature

app = App(lease_ttl=2, poll_interval=0.05)
received: list[dict[str, Any]] = []


@app.agent
async def greet(ctx: Context, name: str) -> str:
    return await ctx.step("greeting", lambda: f"hello {name}")


def receive(secret: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """In your web framework's handler: check the request, then use the event."""
    if not verify_signature(
        secret, headers["Aetheris-Timestamp"], body, headers["Aetheris-Signature"]
    ):
        raise PermissionError("not signed by Aetheris")
    event: dict[str, Any] = json.loads(body)  # deduplicate on event["id"]
    return event


def serve_receiver(secret: list[str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            try:
                headers = {name.title(): value for name, value in self.headers.items()}
                received.append(receive(secret[0], headers, body))
            except PermissionError:
                self.send_response(401)
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def main() -> None:
    secret: list[str] = []
    receiver = serve_receiver(secret)
    url = f"http://127.0.0.1:{receiver.server_address[1]}/aetheris"
    store = await app.open_store()
    hook = await create_webhook(store, "default", url, ["job.completed"])
    secret.append(hook.secret)  # shown once: a real receiver keeps it in its configuration
    handle = await app.start("greet", {"name": "Ada"})
    stop = asyncio.Event()
    working = asyncio.create_task(app.run_worker(stop=stop))
    print(await handle.result(timeout=30))
    stop.set()
    await working
    async with Deliverer(store) as deliverer:  # what the server runs while it serves
        await deliverer.deliver_due()
    [delivery] = await store.deliveries(webhook_id=hook.id)
    print(delivery.state.value, received[0]["type"], received[0]["data"]["summary"])
    receiver.shutdown()
    await app.close()


if __name__ == "__main__":
    asyncio.run(main())
