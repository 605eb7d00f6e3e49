"""Model calls as journal entries: recorded once, replayed free, stored linearly, budgeted."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from aetheris import App, Context, JobStatus, journaled_call
from aetheris.errors import ModelCallFailed
from aetheris.journal import EventType
from aetheris.modelcalls import ModelReply, Usage, check_blobs, model_call
from aetheris.pricing import set_price
from aetheris.testing import replay, running_worker, simulate_crash
from tests.integration.helpers import crash_worker, run_job, wait_for


class ScriptedModel:
    """Answers "reply N" to the Nth call, and counts the calls made to it."""

    def __init__(self, tokens: int = 10) -> None:
        self.calls = 0
        self.tokens = tokens

    async def chat(self, messages: list[dict[str, Any]], model: str = "scripted") -> ModelReply:
        async def call() -> ModelReply:
            self.calls += 1
            message = {"role": "assistant", "content": f"reply {self.calls}"}
            usage = Usage(self.tokens - 2, 2)
            return ModelReply({"message": message}, usage, model)

        request = {"messages": messages, "temperature": 0}
        return await model_call(model, request, call, provider="test")


def conversation_app(url: str, model: ScriptedModel, turns: int = 3) -> App:
    app = App(url, lease_ttl=1.0)

    @app.agent
    async def chat(ctx: Context, topic: str) -> list[str]:
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": topic}]
        answers = []
        for turn in range(turns):
            reply = await model.chat(messages)
            message = reply.response["message"]
            answers.append(message["content"])
            messages += [message, {"role": "user", "content": f"and then? ({turn})"}]
        return answers

    return app


async def test_a_model_call_is_journaled_with_usage_cost_and_its_messages_once(
    store_url: str,
) -> None:
    set_price("scripted", input=1.0, output=3.0)
    model = ScriptedModel()
    app = conversation_app(store_url, model)
    job = await run_job(app, "chat", {"topic": "tides"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == ["reply 1", "reply 2", "reply 3"]
    store = await app.open_store()
    calls = [e.data for e in await store.events(job.id) if e.data.get("kind") == "llm"]
    assert [c["usage"] for c in calls] == [{"input_tokens": 8, "output_tokens": 2}] * 3
    assert calls[0]["cost"] == pytest.approx((8 * 1.0 + 2 * 3.0) / 1e6)
    assert [c["request"]["messages"]["count"] for c in calls] == [2, 4, 6]
    # Six messages and six chain nodes: each stored once, though requests repeat them.
    assert len(await store.blobs(job.id)) == 12
    report = await replay(app, job.id)
    assert report.outcome == "matched" and model.calls == 3, "a replay calls no model"
    await app.close()


async def test_a_resumed_job_does_not_call_the_model_again_for_recorded_turns(
    store_url: str,
) -> None:
    model = ScriptedModel()
    app = conversation_app(store_url, model)
    handle = await app.start("chat", {"topic": "tides"})
    with simulate_crash("after_outcome:scripted@2"):
        await crash_worker(app, handle.job_id)
    assert model.calls == 2
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == ["reply 1", "reply 2", "reply 3"]
    assert model.calls == 3, "the two recorded calls were served from the journal"
    await app.close()


async def test_an_exhausted_budget_parks_the_job_until_an_operator_raises_it(
    store_url: str,
) -> None:
    model = ScriptedModel(tokens=10)
    app = conversation_app(store_url, model, turns=4)
    handle = await app.start("chat", {"topic": "tides"}, budget={"tokens": 25})
    async with running_worker(app, poll_interval=0.01):
        parked = await wait_for(app, handle.job_id, JobStatus.PARKED)
        assert parked.park_reason is not None and parked.park_reason.value == "budget"
        assert parked.park_detail is not None
        assert parked.park_detail["spent"]["tokens"] == 30
        assert model.calls == 3, "the fourth call was not made"
        await app.raise_budget(handle.job_id, tokens=100)
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert model.calls == 4
    events = await (await app.open_store()).events(job.id)
    raises = [e.data for e in events if e.type is EventType.OP and e.data["kind"] == "budget"]
    assert [r["result"] for r in raises] == [{"tokens": 100}]
    assert (await replay(app, job.id)).outcome == "matched"
    await app.close()


async def test_a_first_run_has_its_budget_from_its_claim_and_reads_no_events(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedModel(tokens=10)
    app = conversation_app(store_url, model, turns=4)
    store, reads = await app.open_store(), []
    read_events = type(store).events

    async def events(self: Any, job_id: str, **kw: Any) -> Any:
        reads.append(job_id)
        return await read_events(self, job_id, **kw)

    monkeypatch.setattr(type(store), "events", events)
    handle = await app.start("chat", {"topic": "tides"}, budget={"tokens": 25})
    async with running_worker(app, poll_interval=0.01):
        parked = await wait_for(app, handle.job_id, JobStatus.PARKED)
    assert parked.park_reason is not None and parked.park_reason.value == "budget"
    assert model.calls == 3, "the budget held: the fourth call was not made"
    assert handle.job_id not in reads
    await app.close()


async def test_a_cost_budget_with_an_unpriced_model_parks_rather_than_guess(
    store_url: str,
) -> None:
    model = ScriptedModel()
    app = conversation_app(store_url, model, turns=2)

    @app.agent
    async def unpriced(ctx: Context) -> str:
        reply = await model.chat([{"role": "user", "content": "hi"}], model="no-such-model")
        await model.chat([{"role": "user", "content": "again"}], model="no-such-model")
        return str(reply.response["message"]["content"])

    job = await run_job(app, "unpriced", {})
    assert job.status is JobStatus.SUCCEEDED, "no budget: nothing to keep"
    handle = await app.start("unpriced", {}, budget={"cost": 1.0})
    async with running_worker(app, poll_interval=0.01):
        parked = await wait_for(app, handle.job_id, JobStatus.PARKED)
    assert parked.park_detail is not None and "price is unknown" in parked.park_detail["message"]
    await app.close()


async def test_a_failed_model_call_is_recorded_and_raised_again_on_replay(
    store_url: str,
) -> None:
    app = App(store_url)
    attempts = 0

    async def failing() -> ModelReply:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("the endpoint said 400: bad request")

    @app.agent
    async def asks(ctx: Context) -> str:
        try:
            await model_call("m", {"messages": [{"role": "user", "content": "x"}]}, failing)
        except ModelCallFailed as exc:
            return f"caught: {exc.message}"
        return "no failure"

    job = await run_job(app, "asks")
    assert job.result == "caught: the endpoint said 400: bad request"
    assert (await replay(app, job.id)).outcome == "matched" and attempts == 1
    await app.close()


@pytest.mark.parametrize("turns", [10, 100, 200])
async def test_stored_bytes_grow_linearly_with_turns(tmp_path: Any, turns: int) -> None:
    model = ScriptedModel()
    app = conversation_app(f"sqlite:///{tmp_path / 'c.db'}", model, turns=turns)
    job = await run_job(app, "chat", {"topic": "tides " * 50})
    assert job.status is JobStatus.SUCCEEDED, job.error
    store = await app.open_store()
    stored = sum(len(e.body) for e in await store.events(job.id))
    stored += sum(len(b) for b in (await store.blobs(job.id)).values())
    per_turn = stored / turns
    # Each turn adds two messages, two nodes and one event: a constant, whatever came before
    # (a request storing its whole history would grow by ~40 bytes x turns per turn).
    assert per_turn < 1800, f"{stored} bytes for {turns} turns"
    await app.close()


async def test_a_journaled_call_of_an_undeclared_effect_is_never_run_twice(
    store_url: str,
) -> None:
    app = App(store_url, lease_ttl=1.0)
    sent: list[str] = []

    def send(to: str) -> str:
        sent.append(to)
        return f"sent to {to}"

    @app.agent
    async def mailer(ctx: Context) -> str:
        first = await journaled_call("send", send, {"to": "a@example.com"}, effect="idempotent")
        second = await journaled_call("send", send, {"to": "b@example.com"})  # at_most_once
        return f"{first}; {second}"

    handle = await app.start("mailer", {})
    with simulate_crash("after_dispatch:send@2"):
        await crash_worker(app, handle.job_id)
    async with running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is not None and job.park_reason.value == "effect_in_doubt"
    assert sent == ["a@example.com", "b@example.com"], "the second send is in doubt, not re-run"
    await app.close()


async def test_verify_catches_a_missing_or_altered_blob(tmp_path: Any) -> None:
    db = tmp_path / "v.db"
    app = conversation_app(f"sqlite:///{db}", ScriptedModel(), turns=2)
    job = await run_job(app, "chat", {"topic": "tides"})
    store = await app.open_store()
    events, blobs = await store.events(job.id), await store.blobs(job.id)
    assert check_blobs(events, blobs) is None
    first = next(iter(blobs))
    altered = check_blobs(events, {**blobs, first: b"{}"})
    assert altered == (-1, f"blob {first} does not match its bytes")
    await app.close()
    done = verify_without_blob(db, job.id, first)
    assert done.returncode == 1 and "is missing" in done.stderr, done


def verify_without_blob(db: Any, job_id: str, digest: str) -> subprocess.CompletedProcess[str]:
    """Delete a blob as someone with database access could, then run ``aetheris verify``."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM blobs WHERE hash = ?", (digest,))
    env = {**os.environ, "AETHERIS_DATABASE_URL": f"sqlite:///{db}"}
    command = [sys.executable, "-m", "aetheris", "verify", job_id]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)
