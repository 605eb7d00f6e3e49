"""An App served in-process through ``httpx.ASGITransport``, with a key of every role in two
tenants (``acme`` and ``beta``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

import aetheris
from aetheris import App, Context
from aetheris.api import create_api
from aetheris.keys import create_key

ROLES = ("admin", "operator", "approver", "viewer")
TENANTS = ("acme", "beta")
HOOK_SECRET = "whsec_test_3f9a"  # the secret of the hook "paid"


def build_app(url: str = "memory://") -> App:
    app = App(url, lease_ttl=1.0, poll_interval=0.02)

    @app.tool(effect="at_most_once", requires_approval=True)
    async def pay(amount: int) -> str:
        return f"paid {amount}"

    @app.tool(effect="at_most_once")
    async def charge(amount: int) -> str:
        return f"charged {amount}"

    @app.agent
    async def waiter(ctx: Context, label: str = "") -> Any:
        got = await ctx.wait_for_signal("go")
        return {"label": label, "got": got}

    @app.agent
    async def guarded(ctx: Context, amount: int = 1) -> str:
        return await pay(amount)

    @app.agent
    async def refund(ctx: Context, amount: int = 1) -> str:
        return await charge(amount)

    @app.agent
    async def busy(ctx: Context, rounds: int = 400) -> int:
        for _ in range(rounds):  # runs until an operator stops it
            await ctx.step("tick", asyncio.sleep, 0.02)
        return rounds

    @app.agent
    async def quick(ctx: Context, n: int = 0) -> int:
        return await ctx.step("double", lambda: n * 2)

    # Incoming webhooks: a signed one keyed by a JSON pointer, an unsigned one by a function.
    app.hook("paid", key="/data/order_id", secret=HOOK_SECRET, tenant="acme")
    app.hook("ticket", key=lambda body, headers: headers["x-ticket"], insecure=True)
    return app


@dataclass
class Api:
    app: App
    client: httpx.AsyncClient
    tokens: dict[tuple[str, str], str]  # (tenant, role): key

    def auth(self, role: str = "admin", tenant: str = "acme") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[(tenant, role)]}"}

    async def start(
        self, agent: str = "waiter", data: dict[str, Any] | None = None, tenant: str = "acme"
    ) -> str:
        r = await self.client.post(
            "/v1/jobs",
            json={"agent": agent, "input": data or {}},
            headers=self.auth("admin", tenant),
        )
        assert r.status_code == 201, r.text
        job_id: str = r.json()["id"]
        return job_id


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    app = build_app()
    store = await app.open_store()
    tokens = {}
    for tenant in TENANTS:
        for role in ROLES:
            _, tokens[(tenant, role)] = await create_key(
                store, role, tenant, name=f"{role}@{tenant}"
            )
    transport = httpx.ASGITransport(create_api(app, poll_interval=0.02))
    async with httpx.AsyncClient(transport=transport, base_url="http://aetheris") as client:
        yield Api(app, client, tokens)
    await app.close()


__all__ = ["HOOK_SECRET", "ROLES", "TENANTS", "Api", "aetheris", "build_app"]
