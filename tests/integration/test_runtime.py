"""The runtime end to end, in-process, on every store."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

import aetheris
from aetheris import App, Context, EffectState, JobStatus, ParkReason, ToolFailed
from aetheris.journal import EventType, verify_chain
from aetheris.testing import replay, running_worker, simulate_crash

from .helpers import World, crash_worker, run_job, wait_for


class Order(BaseModel):
    id: str
    amount: float


def build(url: str, world: World, *, lease_ttl: float = 1.0) -> App:
    # Beats are at least 0.25 s apart: a 1 s lease outlasts three missed beats on a loaded
    # machine, where 0.5 s (two beats) once expired under a live run before its planned crash.
    app = App(url, lease_ttl=lease_ttl)

    @app.tool
    async def lookup(order_id: str) -> Order:
        world.hit("lookup")
        return Order(id=order_id, amount=12.5)

    @app.tool(effect="idempotent")
    def reserve(order_id: str) -> str:
        world.hit("reserve", aetheris.tool_context().idempotency_key)
        return f"r-{order_id}"

    @app.tool(effect="at_most_once")
    async def charge(amount: float) -> str:
        ctx = aetheris.tool_context()
        world.hit("charge", ctx.idempotency_key)
        return f"ch-{ctx.position}"

    @app.tool
    async def notify(text: str) -> None:
        world.hit("notify")

    @app.agent
    async def refund(ctx: Context, order_id: str) -> dict[str, object]:
        order = await lookup(order_id)
        assert isinstance(order, Order)
        reservation = await reserve(order.id)
        charge_id = await charge(order.amount)
        stamp = ctx.now()
        token = ctx.uuid()
        await notify(f"{charge_id} at {stamp.isoformat()}")
        return {"charge": charge_id, "reservation": reservation, "token": str(token)}

    return app


@pytest.fixture
def world() -> World:
    return World()


async def test_a_job_runs_to_its_result(store_url: str, world: World) -> None:
    app = build(store_url, world)
    job = await run_job(app, "refund", {"order_id": "o1"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["charge"] == "ch-2"
    assert world.calls == {"lookup": 1, "reserve": 1, "charge": 1, "notify": 1}
    events = await (await app.open_store()).events(job.id)
    assert verify_chain(job.id, events).ok
    ops = [(e.position, e.data["kind"], e.data["name"]) for e in events if e.type is EventType.OP]
    assert ops == [
        (0, "tool", "lookup"),
        (1, "tool", "reserve"),
        (2, "tool", "charge"),
        (3, "now", "now"),
        (4, "uuid", "uuid"),
        (5, "tool", "notify"),
    ]
    intents = [e.position for e in events if e.type is EventType.INTENT]
    assert intents == [1, 2]
    await app.close()


async def test_replay_executes_nothing_and_matches(store_url: str, world: World) -> None:
    app = build(store_url, world)
    job = await run_job(app, "refund", {"order_id": "o1"})
    before = dict(world.calls)
    report = await replay(app, job.id)
    assert report.outcome == "matched", report
    assert report.operations == 6
    assert world.calls == before
    await app.close()


async def test_results_keep_their_type_live_and_on_replay(store_url: str) -> None:
    app = App(store_url)
    seen: list[object] = []

    @app.tool
    async def fetch() -> Order:
        return Order(id="x", amount=1.0)

    @app.agent
    async def typed(ctx: Context) -> Order:
        order = await fetch()
        seen.append(order)
        when = ctx.now()
        seen.append(when)
        seen.append(ctx.uuid())
        seen.append(ctx.random())
        return order

    job = await run_job(app, "typed")
    assert job.result == {"id": "x", "amount": 1.0}
    live = list(seen)
    seen.clear()
    assert (await replay(app, job.id)).outcome == "matched"
    assert seen == live
    assert isinstance(seen[0], Order)
    assert isinstance(seen[1], dt.datetime) and seen[1].tzinfo is not None
    assert isinstance(seen[2], uuid.UUID)
    assert (await app.handle(job.id).result()) == Order(id="x", amount=1.0)
    await app.close()


async def test_recorded_errors_are_raised_again_on_replay(store_url: str) -> None:
    app = App(store_url)
    calls = 0

    @app.tool(retry=aetheris.RetryPolicy(max_attempts=1))
    async def flaky() -> int:
        nonlocal calls
        calls += 1
        raise ValueError("boom")

    @app.agent
    async def handles(ctx: Context) -> str:
        try:
            await flaky()
        except ToolFailed as exc:
            return f"handled {exc.error_type}: {exc.message} at {exc.position}"
        return "unreachable"

    job = await run_job(app, "handles")
    assert job.result == "handled ValueError: boom at 0"
    assert (await replay(app, job.id)).outcome == "matched"
    assert calls == 1
    await app.close()


async def test_crash_after_outcome_resumes_without_repeating(store_url: str, world: World) -> None:
    app = build(store_url, world)
    handle = await app.start("refund", {"order_id": "o1"})
    with simulate_crash("after_outcome:charge"):
        await crash_worker(app, handle.job_id)
    assert world.calls == {"lookup": 1, "reserve": 1, "charge": 1}
    job = await run_job_existing(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert world.calls == {"lookup": 1, "reserve": 1, "charge": 1, "notify": 1}
    claims = [
        e for e in await (await app.open_store()).events(job.id) if e.type is EventType.JOB_CLAIMED
    ]
    assert len(claims) == 2 and claims[1].data["recovered_from"] == claims[0].data["owner"]
    await app.close()


async def run_job_existing(
    app: App, job_id: str, *statuses: JobStatus, **options: Any
) -> aetheris.Job:
    async with running_worker(app, poll_interval=0.01, **options):
        return await wait_for(app, job_id, *statuses)


async def test_crash_after_intent_parks_in_doubt_until_resolved(
    store_url: str, world: World
) -> None:
    app = build(store_url, world)
    handle = await app.start("refund", {"order_id": "o1"})
    with simulate_crash("after_intent:charge"):
        await crash_worker(app, handle.job_id)
    job = await run_job_existing(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.EFFECT_IN_DOUBT
    assert job.park_detail is not None and job.park_detail["tool"] == "charge"
    assert world.calls["charge"] == 0
    [doubt] = await (await app.open_store()).effects(states=[EffectState.IN_DOUBT])
    assert doubt.position == 2
    await app.resolve_effect(job.id, 2, not_executed=True, by="alice")
    job = await run_job_existing(app, job.id)
    assert job.status is JobStatus.SUCCEEDED
    assert world.calls == {"lookup": 1, "reserve": 1, "charge": 1, "notify": 1}
    with pytest.raises(aetheris.Conflict):
        await app.resolve_effect(job.id, 2, not_executed=True)
    await app.close()


async def test_crash_after_dispatch_is_in_doubt_and_resolved_committed(
    store_url: str, world: World
) -> None:
    app = build(store_url, world)
    handle = await app.start("refund", {"order_id": "o1"})
    with simulate_crash("after_dispatch:charge"):
        await crash_worker(app, handle.job_id)
    assert world.calls["charge"] == 1
    job = await run_job_existing(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.EFFECT_IN_DOUBT
    await app.resolve_effect(job.id, 2, committed=True, result="ch-external", by="bob")
    job = await run_job_existing(app, job.id)
    assert job.status is JobStatus.SUCCEEDED
    assert job.result["charge"] == "ch-external"
    assert world.calls["charge"] == 1
    events = await (await app.open_store()).events(job.id)
    resolved = [e for e in events if e.type is EventType.EFFECT_RESOLVED]
    assert resolved[0].data["by"] == "bob" and resolved[0].data["resolution"] == "committed"
    assert verify_chain(job.id, events).ok
    await app.close()


async def test_idempotent_tool_reruns_with_the_same_key(store_url: str, world: World) -> None:
    app = build(store_url, world)
    handle = await app.start("refund", {"order_id": "o1"})
    with simulate_crash("after_dispatch:reserve"):
        await crash_worker(app, handle.job_id)
    job = await run_job_existing(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED
    reserve_keys = [k for name, k in world.keys if name == "reserve"]
    assert len(reserve_keys) == 2 and reserve_keys[0] == reserve_keys[1]
    assert world.calls["charge"] == 1
    await app.close()


async def test_pure_step_lost_before_recording_runs_again(store_url: str, world: World) -> None:
    app = build(store_url, world)
    handle = await app.start("refund", {"order_id": "o1"})
    with (
        simulate_crash("in_append:lookup")
        if store_url.startswith("sqlite")
        else simulate_crash("after_dispatch:lookup")
    ):
        await crash_worker(app, handle.job_id)
    job = await run_job_existing(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert world.calls == {"lookup": 2, "reserve": 1, "charge": 1, "notify": 1}
    await app.close()


@pytest.mark.parametrize(
    ("answer", "charges", "expected"),
    [("committed", 0, "ch-reconciled"), ("not_executed", 1, "ch-2"), ("unknown", 0, None)],
)
async def test_reconcile_decides_an_in_doubt_effect(
    store_url: str, answer: str, charges: int, expected: str | None
) -> None:
    app = App(store_url, lease_ttl=0.5)
    world = World()

    def reconcile(key: str) -> aetheris.Committed | aetheris.NotExecuted | None:
        world.hit("reconcile", key)
        if answer == "committed":
            return aetheris.Committed("ch-reconciled")
        return aetheris.NotExecuted() if answer == "not_executed" else None

    @app.tool(effect="at_most_once", reconcile=reconcile)
    async def charge(amount: float) -> str:
        world.hit("charge")
        return f"ch-{aetheris.tool_context().position}"

    @app.agent
    async def pay(ctx: Context) -> str:
        ctx.now()
        ctx.uuid()
        return await charge(3.0)

    handle = await app.start("pay", {})
    with simulate_crash("after_intent:charge"):
        await crash_worker(app, handle.job_id)
    job = await run_job_existing(app, handle.job_id, JobStatus.SUCCEEDED, JobStatus.PARKED)
    assert world.calls["reconcile"] == 1
    assert world.calls["charge"] == charges
    if expected is None:
        assert job.status is JobStatus.PARKED and job.park_reason is ParkReason.EFFECT_IN_DOUBT
    else:
        assert job.status is JobStatus.SUCCEEDED and job.result == expected
    await app.close()


async def test_nondeterminism_parks_with_a_readable_diff(sqlite_url: str) -> None:
    """Two versions of the code share one database, as across a deploy."""
    store_url = sqlite_url
    first = App(store_url, lease_ttl=0.5)
    gate = asyncio.Event()

    @first.tool
    async def a() -> int:
        return 1

    @first.tool
    async def wait() -> int:
        await gate.wait()
        return 2

    @first.agent
    async def flow(ctx: Context) -> int:
        return await a() + await wait()

    handle = await first.start("flow", {})
    async with running_worker(first, poll_interval=0.01, grace=0.0):
        await asyncio.sleep(0.3)
    await first.close()

    second = App(store_url, lease_ttl=0.5)

    @second.tool
    async def b() -> int:
        return 1

    @second.agent(name="flow")
    async def changed(ctx: Context) -> int:
        return await b()

    # A worker that runs jobs of other code as they are (a worker that checks them first
    # hands this one back: tests/integration/test_versions.py).
    job = await run_job_existing(second, handle.job_id, JobStatus.PARKED, on_new_code="proceed")
    assert job.park_reason is ParkReason.NONDETERMINISM
    assert job.park_detail is not None
    assert job.park_detail["position"] == 0
    assert "journal: tool a" in job.park_detail["diff"]
    assert "code:    tool b" in job.park_detail["diff"]
    await second.close()


async def test_retries_with_backoff_are_recorded(store_url: str) -> None:
    app = App(store_url)
    attempts: list[int] = []

    @app.tool(retry=aetheris.RetryPolicy(max_attempts=4, initial_interval=0.001))
    async def flaky() -> str:
        attempts.append(aetheris.tool_context().attempt)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    @app.agent
    async def retrying(ctx: Context) -> str:
        return await flaky()

    job = await run_job(app, "retrying")
    assert job.result == "ok"
    [op] = [e for e in await (await app.open_store()).events(job.id) if e.type is EventType.OP]
    assert op.data["attempts"] == 3
    assert attempts == [1, 2, 3]
    assert [r["type"] for r in op.data["retries"]] == ["ConnectionError", "ConnectionError"]
    await app.close()


async def test_at_most_once_retries_only_retryable_errors(store_url: str) -> None:
    app = App(store_url)
    calls: list[str] = []

    @app.tool(effect="at_most_once", retry=aetheris.RetryPolicy(initial_interval=0.001))
    async def send(kind: str) -> str:
        calls.append(kind)
        attempt = aetheris.tool_context().attempt
        if kind == "retryable" and attempt < 2:
            raise aetheris.RetryableError("connection refused before sending")
        if kind == "broken":
            raise RuntimeError("half sent?")
        return f"{kind} after {attempt}"

    @app.agent
    async def sender(ctx: Context, kind: str) -> str:
        return await send(kind)

    ok = await run_job(app, "sender", {"kind": "retryable"})
    assert ok.result == "retryable after 2"
    broken = await run_job(app, "sender", {"kind": "broken"})
    assert broken.status is JobStatus.FAILED
    assert broken.error is not None and broken.error["cause"] == "RuntimeError"
    assert calls == ["retryable", "retryable", "broken"]
    rows = await (await app.open_store()).effects(job_id=broken.id)
    assert [r.state for r in rows] == [EffectState.FAILED]
    await app.close()


async def test_permanent_failure_compensates_in_reverse(store_url: str) -> None:
    app = App(store_url)
    undone: list[tuple[str, object]] = []

    def refund(req: aetheris.CompensationRequest) -> None:
        undone.append((req.tool, req.result))

    @app.tool(effect="at_most_once", compensate=refund)
    async def charge(amount: float) -> str:
        return f"ch-{amount}"

    @app.tool(effect="idempotent", compensate=refund)
    async def book(seat: str) -> str:
        return f"bk-{seat}"

    @app.tool(retry=aetheris.RetryPolicy(max_attempts=1))
    async def explode() -> None:
        raise RuntimeError("no seats left")

    @app.agent
    async def trip(ctx: Context) -> None:
        await charge(10.0)
        await book("1A")
        await explode()

    job = await run_job(app, "trip")
    assert job.status is JobStatus.COMPENSATED
    assert job.error is not None and job.error["compensated"] == ["book", "charge"]
    assert undone == [("book", "bk-1A"), ("charge", "ch-10.0")]
    rows = {r.tool: r.state for r in await (await app.open_store()).effects(job_id=job.id)}
    assert rows["charge"] is EffectState.COMPENSATED and rows["book"] is EffectState.COMPENSATED
    assert rows["compensate:book"] is EffectState.COMMITTED
    assert (await replay(app, job.id)).outcome == "matched"
    assert len(undone) == 2
    with pytest.raises(aetheris.JobFailed, match="compensated"):
        await app.handle(job.id).result()
    await app.close()


async def test_resolve_as_failed_raises_in_the_agent(store_url: str, world: World) -> None:
    app = build(store_url, world)
    handle = await app.start("refund", {"order_id": "o1"})
    with simulate_crash("after_dispatch:charge"):
        await crash_worker(app, handle.job_id)
    await run_job_existing(app, handle.job_id, JobStatus.PARKED)
    await app.resolve_effect(handle.job_id, 2, fail=True, reason="bank says declined")
    job = await run_job_existing(app, handle.job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and "bank says declined" in job.error["message"]
    assert world.calls["charge"] == 1
    await app.close()


async def test_start_is_idempotent_by_key(store_url: str, world: World) -> None:
    app = build(store_url, world)
    one = await app.start("refund", {"order_id": "o1"}, idempotency_key="order-o1")
    two = await app.start("refund", {"order_id": "o1"}, idempotency_key="order-o1")
    assert one.job_id == two.job_id
    with pytest.raises(aetheris.IdempotencyConflict):
        await app.start("refund", {"order_id": "o2"}, idempotency_key="order-o1")
    await app.close()


async def test_bad_input_is_refused_before_anything_is_written(store_url: str) -> None:
    app = build(store_url, World(), lease_ttl=1)
    app.max_payload_bytes = 1000
    with pytest.raises(aetheris.UnknownAgent, match="known agents: refund"):
        await app.start("refnud", {})
    with pytest.raises(aetheris.InvalidInput, match="order_id: Field required"):
        await app.start("refund", {})
    with pytest.raises(aetheris.InvalidInput, match="extra: Extra inputs"):
        await app.start("refund", {"order_id": "o", "extra": 1})
    with pytest.raises(aetheris.InvalidInput, match="JSON object"):
        await app.start("refund", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(aetheris.InvalidInput, match="over the payload limit"):
        await app.start("refund", {"order_id": "x" * 2000})
    with pytest.raises(aetheris.EncodingError):
        await app.start("refund", {"order_id": float("nan")})
    assert await app.list_jobs() == []
    await app.close()


async def test_non_json_results_fail_the_step_clearly(store_url: str) -> None:
    app = App(store_url)

    @app.tool
    async def weird() -> object:
        return object()

    @app.agent
    async def agent(ctx: Context) -> None:
        await weird()

    job = await run_job(app, "agent")
    assert job.status is JobStatus.FAILED
    assert job.error is not None and "not JSON-serializable" in job.error["message"]
    await app.close()


async def test_tools_outside_agents_run_directly() -> None:
    app = App("memory://")

    @app.tool(effect="at_most_once")
    def add(a: int, b: int) -> int:
        return a + b

    assert await add(1, 2) == 3
    with pytest.raises(aetheris.AetherisError, match="only available inside a tool"):
        aetheris.tool_context()


async def test_two_apps_on_two_databases(tmp_path: object) -> None:
    import pathlib

    root = pathlib.Path(str(tmp_path))
    apps = [App(f"sqlite:///{root / f'db{i}.sqlite'}") for i in range(2)]
    for i, app in enumerate(apps):

        @app.agent(name="who")
        async def who(ctx: Context, i: int = i) -> int:
            return i

    jobs = [await run_job(app, "who") for app in apps]
    assert [j.result for j in jobs] == [0, 1]
    for i, app in enumerate(apps):
        assert [j.id for j in await app.list_jobs()] == [jobs[i].id]
        await app.close()


async def test_sync_twins(tmp_path: object) -> None:
    import pathlib

    url = f"sqlite:///{pathlib.Path(str(tmp_path)) / 'sync.db'}"
    app = App(url)

    @app.agent
    async def hello(ctx: Context, name: str) -> str:
        return f"hello {name}"

    def drive() -> object:
        handle = app.start_sync("hello", {"name": "sync"})
        return handle.job_id

    job_id = await asyncio.to_thread(drive)
    job = await run_job_existing(app, str(job_id))
    assert job.result == "hello sync"
    await app.close()
