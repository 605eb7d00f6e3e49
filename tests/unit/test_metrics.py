"""Prometheus metrics: the exposition format, what a worker counts (operations by kind, waits,
replays, model tokens and cost, claims, takeovers, leases lost, fenced writes, heartbeats), the
store's gauges, and a worker's metrics endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from aetheris import App, Context, EffectState, JobStatus
from aetheris.errors import StoreUnavailable
from aetheris.llm import ChatModel, set_price
from aetheris.llm.stub import StubServer
from aetheris.metrics import NAMES, Metrics, MetricsServer, store_families
from aetheris.observe import Ended, OperationDone, WorkerEvent
from aetheris.prometheus import Counter, Gauge, Histogram, render
from aetheris.store.port import Store, Summary
from aetheris.testing import running_worker
from tests.integration.helpers import wait_for

SCRIPT = {"replies": [{"content": "ok", "usage": {"prompt_tokens": 11, "completion_tokens": 4}}]}


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name{labels}`` in an exposition (it must be there once)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line_start = f"{name}{{{wanted}}} " if labels else f"{name} "
    found = [line for line in text.splitlines() if line.startswith(line_start)]
    assert len(found) == 1, f"{line_start!r} in:\n{text}"
    return float(found[0].rsplit(" ", 1)[1])


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Until ``check()`` holds (the runtime reports from its own tasks), or fail naming it."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


# -- the exposition format ------------------------------------------------------------------------


def test_families_render_the_text_format() -> None:
    counter = Counter("x_total", 'Things, "quoted"\nand new lines.', ("kind",))
    counter.inc('a"b\\c\nd')
    counter.inc("plain", amount=2.5)
    gauge = Gauge("x_level", "A level.")
    gauge.set(3)
    hist = Histogram("x_seconds", "Durations.", ("kind",), (0.1, 1.0))
    for value in (0.05, 0.5, 0.5, 7.0):
        hist.observe(value, "k")
    lines = render([counter, gauge, hist]).splitlines()
    assert lines == [
        '# HELP x_total Things, "quoted"\\nand new lines.',
        "# TYPE x_total counter",
        'x_total{kind="a\\"b\\\\c\\nd"} 1.0',
        'x_total{kind="plain"} 2.5',
        "# HELP x_level A level.",
        "# TYPE x_level gauge",
        "x_level 3.0",
        "# HELP x_seconds Durations.",
        "# TYPE x_seconds histogram",
        'x_seconds_bucket{kind="k",le="0.1"} 1.0',
        'x_seconds_bucket{kind="k",le="1.0"} 3.0',
        'x_seconds_bucket{kind="k",le="+Inf"} 4.0',
        'x_seconds_sum{kind="k"} 8.05',
        'x_seconds_count{kind="k"} 4.0',
    ]


def test_families_refuse_what_the_format_cannot_say() -> None:
    with pytest.raises(ValueError, match="takes labels"):
        Counter("y_total", "Y.", ("a", "b")).inc("only one")
    with pytest.raises(ValueError, match="cannot go down"):
        Counter("y_total", "Y.").inc(amount=-1)
    with pytest.raises(ValueError, match="increasing"):
        Histogram("y_seconds", "Y.", (), (1.0, 0.5))


def test_store_gauges_name_every_status_and_state_and_no_job() -> None:
    summary = Summary(
        {JobStatus.PENDING: 2, JobStatus.PARKED: 1},
        oldest_pending_at=100.0,
        in_doubt=1,
        by_tenant={"acme": {JobStatus.PENDING: 2}, "beta": {JobStatus.PARKED: 1}},
        effects={EffectState.IN_DOUBT: 1, EffectState.COMMITTED: 5},
    )
    text = render(store_families(summary, now=160.0))
    assert sample(text, "aetheris_jobs", tenant="acme", status="pending") == 2
    assert sample(text, "aetheris_jobs", tenant="acme", status="failed") == 0
    assert sample(text, "aetheris_jobs", tenant="beta", status="parked") == 1
    assert sample(text, "aetheris_queue_depth") == 2
    assert sample(text, "aetheris_queue_oldest_pending_age_seconds") == 60
    assert sample(text, "aetheris_effects", state="in_doubt") == 1
    assert sample(text, "aetheris_effects", state="intent") == 0
    assert sample(text, "aetheris_store_up") == 1
    unread = render(store_families(None, now=0.0))
    assert sample(unread, "aetheris_store_up") == 0
    assert "aetheris_jobs{" not in unread


# -- what a worker counts --------------------------------------------------------------------------


def traced_app(url: str, stub: StubServer) -> tuple[App, ChatModel]:
    app = App(url, lease_ttl=1.0)
    model = ChatModel("stub-metered", base_url=stub.url, max_retries=0)

    @app.tool(effect="at_most_once")
    async def pay(amount: int) -> str:
        return f"paid {amount}"

    @app.agent
    async def shop(ctx: Context) -> list[Any]:
        reply = await model.chat([{"role": "user", "content": "pay?"}])
        paid = await pay(3)
        note = await ctx.step("note", lambda: "noted")
        go = await ctx.wait_for_signal("go")
        return [reply.content, paid, note, go]

    return app, model


async def test_a_worker_counts_operations_waits_replays_tokens_and_claims() -> None:
    set_price("stub-metered", input=2.0, output=4.0)
    metrics = Metrics()
    with StubServer(SCRIPT, model="stub-metered") as stub:
        app, model = traced_app("memory://", stub)
        handle = await app.start("shop", {})
        async with running_worker(app, poll_interval=0.01, observer=metrics):
            await wait_for(app, handle.job_id, JobStatus.PARKED)
            await app.signal(handle.job_id, "go", 1)
            job = await wait_for(app, handle.job_id)
        await model.aclose()
    assert job.status is JobStatus.SUCCEEDED, job.error
    text = metrics.render(await (await app.open_store()).summary())
    ops = metrics.histogram("aetheris_operation_duration_seconds")
    assert ops.count("tool", "side_effect_committed") == 1
    assert ops.count("llm", "pure") == 1
    assert ops.count("step", "pure") == 1  # live once; replayed on the resume, not counted
    waits = metrics.histogram("aetheris_wait_duration_seconds")
    assert waits.count("signal", "pure") == 1
    replays = metrics.counter("aetheris_operations_replayed_total")
    assert (replays.get("llm"), replays.get("tool"), replays.get("step")) == (1, 1, 1)
    tokens = metrics.counter("aetheris_llm_tokens_total")
    assert (tokens.get("stub-metered", "input"), tokens.get("stub-metered", "output")) == (11, 4)
    cost = metrics.counter("aetheris_llm_cost_dollars_total").get("stub-metered")
    assert cost == pytest.approx((11 * 2.0 + 4 * 4.0) / 1e6)
    assert sample(text, "aetheris_llm_calls_total", model="stub-metered", outcome="pure") == 1
    assert metrics.counter("aetheris_claims_total").get() == 2
    runs = metrics.histogram("aetheris_job_run_duration_seconds")
    assert (runs.count("parked"), runs.count("succeeded")) == (1, 1)
    assert metrics.gauge("aetheris_worker_runs_active").get() == 0
    assert sample(text, "aetheris_jobs", tenant="default", status="succeeded") == 1
    assert job.id not in text  # no job ids in labels, ever
    await app.close()


class CutOff:
    """A store whose heartbeats and claims fail while ``cut_off`` (a worker paused, or
    partitioned: it cannot extend its lease, nor take the job back)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.cut_off = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)
        if name not in ("heartbeat", "claim"):
            return method

        async def refused(*args: Any, **kwargs: Any) -> Any:
            if self.cut_off:
                raise StoreUnavailable(f"{name}: cut off (test)")
            return await method(*args, **kwargs)

        return refused


def stallable_app(url: str, release: asyncio.Event) -> App:
    app = App(url, lease_ttl=0.5)

    @app.agent
    async def hold(ctx: Context) -> str:
        await ctx.step("hold", release.wait)
        return "held"

    return app


@pytest.mark.parametrize("heal", [False, True], ids=["fenced", "lost"])
async def test_leases_taken_over_lost_and_fenced_are_counted(heal: bool) -> None:
    release = asyncio.Event()
    first, second = stallable_app("memory://", release), stallable_app("memory://", release)
    store = await first.open_store()
    partition = CutOff(store)
    first._store = partition  # type: ignore[assignment]  # the first worker's own way in
    second._store = store
    one, two = Metrics(), Metrics()
    handle = await first.start("hold")
    async with running_worker(first, poll_interval=0.01, observer=one):
        await until(lambda: one.counter("aetheris_claims_total").get() == 1, "a claim")
        partition.cut_off = True
        async with running_worker(second, poll_interval=0.01, observer=two):
            # Its lease expires: the second worker takes the job over.
            takeovers = two.counter("aetheris_lease_takeovers_total")
            await until(lambda: takeovers.get() == 1, "a takeover")
            if heal:  # the first worker's next heartbeat finds the lease gone
                partition.cut_off = False
                lost = one.counter("aetheris_leases_lost_total")
                await until(lambda: lost.get() == 1, "the lease found lost")
            release.set()  # the first run (if it still runs) now writes, and is fenced
            job = await wait_for(second, handle.job_id)
            fenced = one.counter("aetheris_fenced_writes_total")
            if not heal:
                await until(lambda: fenced.get() == 1, "a fenced write")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert fenced.get() == (0 if heal else 1)
    ended = one.histogram("aetheris_job_run_duration_seconds")
    assert ended.count("lease_lost") == 1
    assert two.counter("aetheris_claims_total").get() == 1
    await first.close()


async def test_heartbeats_are_counted_with_the_last_ones_time() -> None:
    release = asyncio.Event()
    app = stallable_app("memory://", release)
    metrics = Metrics()
    before = time.time()
    handle = await app.start("hold")
    async with running_worker(app, poll_interval=0.01, observer=metrics):
        beats = metrics.counter("aetheris_worker_heartbeats_total")
        await until(lambda: beats.get() >= 1, "a heartbeat")
        release.set()
        await wait_for(app, handle.job_id)
    last = metrics.gauge("aetheris_worker_last_heartbeat_timestamp_seconds").get()
    assert before <= last <= time.time()
    await app.close()


def test_every_family_a_worker_renders_is_named() -> None:
    metrics = Metrics()
    metrics.operation_ended("llm", "m", Ended("pure", model="m", input_tokens=1), 0.1)
    metrics.operation_done(OperationDone("j", 0, "signal", "go", 1, "pure", False, 3.0))
    metrics.worker_event(WorkerEvent("fenced", "w", 0.0))
    text = metrics.render(None)
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert declared == NAMES


# -- a worker's endpoint ---------------------------------------------------------------------------


async def test_a_worker_serves_its_metrics_to_whoever_has_the_token() -> None:
    app = App("memory://")
    store = await app.open_store()
    metrics = Metrics()
    metrics.worker_event(WorkerEvent("claimed", "w", 0.0))
    server = MetricsServer(metrics, store, asyncio.get_running_loop(), token="s3cret").start()
    try:
        async with httpx.AsyncClient() as client:
            refused = await client.get(server.url)
            wrong = await client.get(server.url, headers={"Authorization": "Bearer nope"})
            elsewhere = await client.get(server.url.replace("/metrics", "/other"))
            ok = await client.get(server.url, headers={"Authorization": "Bearer s3cret"})
    finally:
        server.stop()
        await app.close()
    assert (refused.status_code, wrong.status_code, elsewhere.status_code) == (401, 401, 404)
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert sample(ok.text, "aetheris_claims_total") == 1
    assert sample(ok.text, "aetheris_store_up") == 1
