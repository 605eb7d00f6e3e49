"""Forks: a new job that replays the first N entries of another for free and goes live after."""

from __future__ import annotations

from typing import Any

import pytest

from aetheris import App, Context, JobStatus
from aetheris.errors import Conflict, InvalidInput, JobNotFound
from aetheris.journal import EventType, verify_chain
from aetheris.modelcalls import ModelReply, Usage, model_call
from aetheris.testing import running_worker, simulate_crash
from tests.integration.helpers import World, crash_worker, run_job, wait_for


class ScriptedModel:
    """Answers "reply N" to the Nth call made to it, and counts them."""

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, messages: list[dict[str, Any]]) -> ModelReply:
        async def call() -> ModelReply:
            self.calls += 1
            message = {"role": "assistant", "content": f"reply {self.calls}"}
            return ModelReply({"message": message}, Usage(8, 2), "scripted")

        return await model_call("scripted", {"messages": messages}, call, provider="test")


def planner_app(url: str, model: ScriptedModel, world: World) -> App:
    """quote (tool) -> ask the model -> charge (at-most-once tool) the quote's amount -> notify."""
    app = App(url, lease_ttl=1.0)

    @app.tool
    async def quote(item: str) -> int:
        world.hit("quote")
        return len(item) * 10

    @app.tool(effect="at_most_once")
    async def charge(amount: int) -> str:
        world.hit("charge")
        return f"charged {amount}"

    @app.tool(effect="idempotent")
    async def notify(text: str) -> str:
        world.hit("notify")
        return f"sent: {text}"

    @app.agent
    async def buy(ctx: Context, item: str) -> dict[str, Any]:
        amount = await quote(item)  # position 0
        reply = await model.chat([{"role": "user", "content": f"buy {item} for {amount}?"}])  # 1
        receipt = await charge(amount)  # position 2: depends on entry 0
        sent = await notify(f"{receipt}; {reply.response['message']['content']}")  # 3
        return {"amount": amount, "receipt": receipt, "sent": sent}

    return app


async def _run_fork(app: App, fork_id: str) -> Any:
    async with running_worker(app, poll_interval=0.01):
        return await wait_for(app, fork_id)


async def test_a_fork_replays_the_first_n_entries_for_free_and_runs_live_after(
    store_url: str,
) -> None:
    model, world = ScriptedModel(), World()
    app = planner_app(store_url, model, world)
    origin = await run_job(app, "buy", {"item": "kite"})
    assert origin.status is JobStatus.SUCCEEDED, origin.error
    assert (model.calls, world.calls["quote"], world.calls["charge"]) == (1, 1, 1)

    handle = await app.fork(origin.id, 2)  # keep quote and the model's answer
    fork = await _run_fork(app, handle.job_id)
    assert fork.status is JobStatus.SUCCEEDED, fork.error
    assert fork.result == origin.result
    assert model.calls == 1, "the recorded model answer was served, not asked again"
    assert world.calls["quote"] == 1, "the recorded tool result was served"
    assert world.calls["charge"] == 2 and world.calls["notify"] == 2, "live after position 2"

    store = await app.open_store()
    fork_events = await store.events(fork.id)
    assert fork_events[0].data["forked_from"] == {"job": origin.id, "at": 2}
    links = [e.data for e in await store.events(origin.id) if e.type is EventType.JOB_FORKED]
    assert links == [{"fork": fork.id, "at": 2, "edited": None, "by": None}]
    assert verify_chain(fork.id, fork_events).ok
    assert verify_chain(origin.id, await store.events(origin.id)).ok
    rows = {e.position: e.state for e in await store.effects(job_id=fork.id)}
    assert rows[2].value == "committed", "charged live in the fork"
    await app.close()


async def test_a_fork_with_an_edited_output_runs_differently_downstream(store_url: str) -> None:
    model, world = ScriptedModel(), World()
    app = planner_app(store_url, model, world)
    origin = await run_job(app, "buy", {"item": "kite"})
    assert origin.result["amount"] == 40

    handle = await app.fork(origin.id, 0, output=7)  # "what if the quote had been 7?"
    fork = await _run_fork(app, handle.job_id)
    assert fork.status is JobStatus.SUCCEEDED, fork.error
    assert fork.result["amount"] == 7 and fork.result["receipt"] == "charged 7"
    assert world.calls["quote"] == 1, "the edited entry is served, the tool not called"
    assert model.calls == 2, "the model is asked live after the edited entry"

    store = await app.open_store()
    edited = next(e for e in await store.events(fork.id) if e.position == 0)
    assert edited.data["result"] == 7
    assert edited.data["edited"]["original"] == {"result": 40}
    assert len(edited.data["edited"]["original_hash"]) == 64
    assert (await store.events(fork.id))[0].data["forked_from"] == {
        "job": origin.id,
        "at": 0,
        "edited": 0,
    }
    await app.close()


async def test_forking_a_whole_journal_and_after_it(store_url: str) -> None:
    model, world = ScriptedModel(), World()
    app = planner_app(store_url, model, world)
    origin = await run_job(app, "buy", {"item": "kite"})
    fork = await _run_fork(app, (await app.fork(origin.id, 4)).job_id)
    assert fork.status is JobStatus.SUCCEEDED and fork.result == origin.result
    assert sum(world.calls.values()) == 3 and model.calls == 1, "nothing ran again"
    with pytest.raises(InvalidInput, match=r"out of range.*holds 4 entries"):
        await app.fork(origin.id, 5)
    with pytest.raises(InvalidInput, match="no recorded result at position 4"):
        await app.fork(origin.id, 4, output=1)
    with pytest.raises(InvalidInput, match=">= 0"):
        await app.fork(origin.id, -1)
    with pytest.raises(JobNotFound):
        await app.fork("no-such-job", 0)
    with pytest.raises(Conflict, match="already exists"):
        await app.fork(origin.id, 1, new_id=origin.id)
    await app.close()


async def test_an_effect_in_doubt_cannot_be_forked_past(store_url: str) -> None:
    world = World()
    app = App(store_url, lease_ttl=1.0)

    @app.tool(effect="at_most_once")
    async def pay(amount: int) -> str:
        world.hit("pay")
        raise RuntimeError("never reached")

    @app.agent
    async def payer(ctx: Context) -> None:
        await ctx.step("prepare", lambda: 1)
        await pay(5)

    store = await app.open_store()
    handle = await app.start("payer", {})
    # The worker died between the intent and the outcome: the effect is in doubt.
    with simulate_crash("after_intent:pay"):
        await crash_worker(app, handle.job_id)
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is not None and job.park_reason.value == "effect_in_doubt"
    with pytest.raises(Conflict, match=r"'pay' at position 1 .*at_most_once, in doubt"):
        await app.fork(handle.job_id, 2)
    fork = await app.fork(handle.job_id, 1)  # before it: fine
    assert (await store.get_job(fork.job_id)) is not None
    await app.close()
