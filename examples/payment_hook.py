"""An incoming webhook wakes the agent waiting for it: ``python examples/payment_hook.py``.

The payment provider knows its order id, not the job: the hook says where the id is in its
request, and the agent waits on that id. The request is signed with the hook's secret; the
provider would POST it to ``/v1/hooks/paid`` of ``aetheris server``. Here it goes through the
same ASGI app in-process, and a worker runs in the same process.
"""

import asyncio
import json
import time

import httpx

from aetheris import App, Context
from aetheris.api import create_api
from aetheris.signing import headers

app = App()  # AETHERIS_DATABASE_URL, else sqlite:///.aetheris/aetheris.db
SECRET = "whsec_example"  # in production: secret_env="PAYMENTS_HOOK_SECRET"

app.hook("paid", key="/data/order_id", secret=SECRET)  # POST /v1/hooks/paid


@app.agent
async def checkout(ctx: Context, order_id: str) -> str:
    event = await ctx.wait_for_signal("paid", key=order_id, timeout=86_400)
    return f"order {order_id} paid: {event['data']['amount']} {event['data']['currency']}"


async def main() -> None:
    order_id = f"o-{int(time.time())}"
    handle = await app.start("checkout", {"order_id": order_id})
    stop = asyncio.Event()
    working = asyncio.create_task(app.run_worker(concurrency=2, stop=stop))
    data = {"order_id": order_id, "amount": 42, "currency": "EUR"}
    body = json.dumps({"type": "payment.succeeded", "data": data}).encode()
    signed = {**headers(SECRET, body, time.time()), "Aetheris-Event-Id": f"evt_{order_id}"}
    transport = httpx.ASGITransport(create_api(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as provider:
        answer = await provider.post("/v1/hooks/paid", content=body, headers=signed)
        print(answer.status_code, answer.json())  # 202; delivered_to: the job, or null if early
    print(await handle.result(timeout=30))
    stop.set()
    await working
    await app.close()


if __name__ == "__main__":
    asyncio.run(main())
