"""OpenTelemetry spans of runs, tools, steps and model calls (the in-memory span exporter):
the span tree, its attributes, the trace context a tool and the model server receive, and
replayed operations marked as such on a resumed run, never as work done again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import aetheris
from aetheris import App, Context, JobStatus
from aetheris import tracing as aetheris_tracing
from aetheris.llm import ChatModel, set_price
from aetheris.llm.stub import StubServer
from aetheris.testing import simulate_crash
from tests.integration.helpers import crash_worker, run_job, wait_for

USAGE = {"prompt_tokens": 7, "completion_tokens": 3}
SCRIPT = {"replies": [{"content": "Refund approved.", "usage": USAGE}]}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    aetheris_tracing.install(provider)
    try:
        yield exporter
    finally:
        aetheris_tracing.uninstall()
        provider.shutdown()


def parent(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def traceparent(span: ReadableSpan) -> str:
    ctx = span.get_span_context()
    assert ctx is not None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


async def test_a_job_with_a_tool_and_a_model_call_is_one_tree(
    spans: InMemorySpanExporter,
) -> None:
    set_price("stub-traced", input=1.0, output=2.0)
    seen: dict[str, Any] = {}
    with StubServer(SCRIPT, model="stub-traced") as stub:
        app = App("memory://", lease_ttl=1.0)
        model = ChatModel("stub-traced", base_url=stub.url, max_retries=0)

        @app.tool(effect="at_most_once")
        async def refund(order: str) -> str:
            ctx = aetheris.tool_context()
            seen["traceparent"], seen["fencing_token"] = ctx.traceparent, ctx.fencing_token
            return f"refunded {order}"

        @app.agent
        async def support(ctx: Context, order: str) -> str:
            reply = await model.chat([{"role": "user", "content": f"refund {order}?"}])
            return f"{reply.content} {await refund(order)}"

        job = await run_job(app, "support", {"order": "o-1"})
        assert job.status is JobStatus.SUCCEEDED, job.error
        await model.aclose()
        await app.close()
        headers = stub.traceparents

    found = spans.get_finished_spans()
    [run] = by_name(found, "run support")
    [llm] = by_name(found, "llm stub-traced")
    [tool] = by_name(found, "tool refund")
    assert run.parent is None
    assert parent(llm) == parent(tool) == run.context.span_id
    assert {s.context.trace_id for s in (run, llm, tool)} == {run.context.trace_id}
    assert llm.kind is SpanKind.CLIENT and tool.kind is SpanKind.INTERNAL
    assert llm.start_time is not None and tool.start_time is not None
    assert llm.start_time < tool.start_time  # the journal's order
    run_attributes = dict(run.attributes or {})
    assert run_attributes["aetheris.job.id"] == job.id
    assert run_attributes["aetheris.agent"] == "support"
    assert run_attributes["aetheris.outcome"] == "succeeded"
    assert run_attributes["aetheris.fencing_token"] == 1
    assert run_attributes["aetheris.resumed"] is False
    tool_attributes = dict(tool.attributes or {})
    assert {k: tool_attributes[k] for k in ("aetheris.position", "aetheris.kind")} == {
        "aetheris.position": 1,
        "aetheris.kind": "tool",
    }
    assert tool_attributes["aetheris.attempt"] == 1
    assert tool_attributes["aetheris.effect"] == "at_most_once"
    assert tool_attributes["aetheris.outcome"] == "side_effect_committed"
    assert tool_attributes["aetheris.fencing_token"] == seen["fencing_token"] == 1
    llm_attributes = dict(llm.attributes or {})
    assert llm_attributes["aetheris.position"] == 0
    assert llm_attributes["gen_ai.usage.input_tokens"] == 7
    assert llm_attributes["gen_ai.usage.output_tokens"] == 3
    assert llm_attributes["aetheris.cost"] == pytest.approx(7 * 1.0 / 1e6 + 3 * 2.0 / 1e6)
    # The trace context went with the work: into the tool, and to the model server.
    assert seen["traceparent"] == traceparent(tool)
    assert headers == [traceparent(llm)]
    assert not any(s.attributes and s.attributes.get("aetheris.replayed") for s in found)


def resumable_app(calls: list[str]) -> App:
    app = App("memory://", lease_ttl=0.5)

    @app.tool(effect="idempotent")
    async def first() -> str:
        calls.append("first")
        return "one"

    @app.agent
    async def flow(ctx: Context) -> list[Any]:
        a = await first()
        b = await ctx.step("second", lambda: "two")
        go = await ctx.wait_for_signal("go")
        c = await ctx.step("third", lambda: "three")
        return [a, b, go, c]

    return app


def replayed(found: tuple[ReadableSpan, ...]) -> dict[str, dict[str, Any]]:
    return {
        s.name: dict(s.attributes or {})
        for s in found
        if (s.attributes or {}).get("aetheris.replayed")
    }


async def test_a_run_resumed_after_a_park_marks_the_replayed_steps(
    spans: InMemorySpanExporter,
) -> None:
    calls: list[str] = []
    app = resumable_app(calls)
    job = await run_job(app, "flow", {}, JobStatus.PARKED)
    first_run = spans.get_finished_spans()
    assert {s.name for s in first_run} == {"run flow", "tool first", "step second"}
    assert not replayed(first_run)
    [parked] = by_name(first_run, "run flow")
    assert dict(parked.attributes or {})["aetheris.outcome"] == "parked"
    assert dict(parked.attributes or {})["aetheris.reason"] == "signal"
    spans.clear()

    await app.signal(job.id, "go", "yes")
    async with aetheris.testing.running_worker(app, poll_interval=0.01):
        job = await wait_for(app, job.id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert calls == ["first"]  # nothing ran twice
    resumed = spans.get_finished_spans()
    [run] = by_name(resumed, "run flow")
    assert dict(run.attributes or {})["aetheris.resumed"] is True
    marked = replayed(resumed)
    assert set(marked) == {"tool first", "step second"}
    assert marked["tool first"]["aetheris.position"] == 0
    for name in marked:
        [span] = by_name(resumed, name)
        assert span.start_time == span.end_time  # nothing ran: no duration
        assert parent(span) == run.context.span_id
    [signal] = by_name(resumed, "signal go")
    waited = dict(signal.attributes or {})
    assert waited["aetheris.replayed"] is False and waited["aetheris.waited_seconds"] >= 0
    [third] = by_name(resumed, "step third")
    assert not dict(third.attributes or {}).get("aetheris.replayed")
    assert dict(third.attributes or {})["aetheris.position"] == 3
    await app.close()


async def test_a_run_resumed_after_a_crash_marks_the_replayed_steps(
    spans: InMemorySpanExporter,
) -> None:
    calls: list[str] = []
    app = resumable_app(calls)
    handle = await app.start("flow", {})
    with simulate_crash("after_outcome:second"):
        await crash_worker(app, handle.job_id)
    crashed = spans.get_finished_spans()
    [dead] = by_name(crashed, "run flow")
    assert dict(dead.attributes or {})["aetheris.outcome"] == "crashed"
    assert dead.status.status_code is StatusCode.ERROR
    spans.clear()
    await app.signal(handle.job_id, "go", 1)
    async with aetheris.testing.running_worker(app, poll_interval=0.01):
        job = await wait_for(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    resumed = spans.get_finished_spans()
    # The step whose record landed before the crash is replayed; the tool too.
    assert set(replayed(resumed)) == {"tool first", "step second"}
    assert calls == ["first"]
    await app.close()


async def test_install_from_env_refuses_what_it_does_not_know() -> None:
    assert aetheris_tracing.install_from_env({}) is None
    assert aetheris_tracing.install_from_env({"AETHERIS_TRACING": "0"}) is None
    with pytest.raises(aetheris.ConfigurationError, match="AETHERIS_TRACING='jaeger'"):
        aetheris_tracing.install_from_env({"AETHERIS_TRACING": "jaeger"})
