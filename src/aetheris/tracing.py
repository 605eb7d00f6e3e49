"""OpenTelemetry traces of runs, tools, steps and model calls (``pip install 'aetheris[otel]'``).

``aetheris.tracing.install()`` (or env ``AETHERIS_TRACING`` for ``aetheris worker``: see
:func:`install_from_env`) has every worker of the process started afterwards report to an
OpenTelemetry tracer (of ``tracer_provider``, else the global one):

* a span per run of a job (``run AGENT``: one claim, to its end, park or hand-back), its root;
* under it a span per live operation: ``tool NAME``, ``step NAME``, ``compensation NAME`` (from
  the first attempt to the outcome, retries included) and ``llm MODEL`` (kind ``CLIENT``), with
  the job id, position, kind, name, attempt, fencing token, and for a model call its tokens and
  cost (``gen_ai.*`` and ``aetheris.cost``);
* the trace context goes with the work: a tool reads it as ``tool_context().traceparent`` (to
  send as the ``traceparent`` header of its HTTP calls), the model client sends it with each
  request, and OpenTelemetry's own context is current inside the span, so instrumented
  libraries (httpx, requests, database drivers) join the trace by themselves.

Replayed operations (a resumed run answers from the journal what earlier runs recorded) are
spans too, so that a trace shows where the run resumed, but marked ``aetheris.replayed=true``
and of no duration: nothing ran again. A wait that ended (a signal, an approval, a timer, a
child job) is a span of no duration at the moment it ended, with ``aetheris.waited_seconds``;
its time parked belongs to no run.

Each run is its own trace (a parked job holds no process, and no span is open across runs);
``aetheris.job.id`` finds every run of a job.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from aetheris import observe
from aetheris.errors import ConfigurationError

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as missing:  # pragma: no cover - the otel extra is not installed
    raise ConfigurationError(
        f"tracing needs OpenTelemetry ({missing}): pip install 'aetheris[otel]'"
    ) from None

__all__ = ["Tracing", "install", "install_from_env", "uninstall"]

_FAILED_RUNS = frozenset({"failed", "runtime_failure", "crashed"})
_AttributeValue = str | bool | int | float


def _traceparent(span: trace.Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (``None`` for a span that is not recorded)."""
    found = span.get_span_context()
    if not found.is_valid:
        return None
    return f"00-{found.trace_id:032x}-{found.span_id:016x}-{int(found.trace_flags):02x}"


class _Span:
    """An open span, current in this context until :meth:`end`."""

    __slots__ = ("_span", "_token", "run", "traceparent")

    def __init__(self, span: trace.Span, run: bool) -> None:
        self._span = span
        self.run = run
        self.traceparent = _traceparent(span)
        self._token = otel_context.attach(trace.set_span_in_context(span))

    def end(self, ended: observe.Ended) -> None:
        span = self._span
        attributes: dict[str, _AttributeValue] = {"aetheris.outcome": ended.outcome}
        if ended.reason:
            attributes["aetheris.reason"] = ended.reason
        if ended.error:
            attributes["error.type"] = ended.error
        if not self.run:
            attributes["aetheris.attempts"] = ended.attempts
        if ended.model is not None:
            attributes.update(_usage(ended))
        span.set_attributes(attributes)
        failed = ended.outcome in _FAILED_RUNS if self.run else ended.outcome == "permanent_failure"
        if failed:
            span.set_status(Status(StatusCode.ERROR, ended.error or ended.outcome))
        span.end()
        otel_context.detach(self._token)


def _usage(ended: observe.Ended) -> dict[str, _AttributeValue]:
    found: dict[str, _AttributeValue] = {
        "gen_ai.response.model": ended.model or "",
        "gen_ai.usage.input_tokens": ended.input_tokens,
        "gen_ai.usage.output_tokens": ended.output_tokens,
    }
    if ended.cost is not None:
        found["aetheris.cost"] = ended.cost
    return found


class Tracing:
    """An :class:`~aetheris.observe.Observer` that turns what runs into OpenTelemetry spans."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer = provider.get_tracer("aetheris")

    def run_started(self, run: observe.RunStarted) -> observe.Scope:
        attributes: Mapping[str, _AttributeValue] = {
            "aetheris.job.id": run.job_id,
            "aetheris.agent": run.agent,
            "aetheris.tenant": run.tenant,
            "aetheris.run": run.run,
            "aetheris.fencing_token": run.epoch,
            "aetheris.worker": run.worker,
            "aetheris.resumed": run.resumed,
        }
        # A new trace: no span of the worker's loop is the parent of a run.
        span = self.tracer.start_span(
            f"run {run.agent}", context=otel_context.Context(), attributes=attributes
        )
        return _Span(span, run=True)

    def operation_started(self, op: observe.OperationStarted) -> observe.Scope:
        attributes = {
            **_operation(op.job_id, op.position, op.kind, op.name, op.epoch),
            "aetheris.attempt": op.attempt,
            "aetheris.effect": op.effect,
        }
        if op.kind == "llm":
            attributes["gen_ai.request.model"] = op.name
        kind = SpanKind.CLIENT if op.kind == "llm" else SpanKind.INTERNAL
        span = self.tracer.start_span(f"{op.kind} {op.name}", kind=kind, attributes=attributes)
        return _Span(span, run=False)

    def operation_done(self, op: observe.OperationDone) -> None:
        attributes: dict[str, Any] = {
            **_operation(op.job_id, op.position, op.kind, op.name, op.epoch),
            "aetheris.outcome": op.outcome,
            "aetheris.replayed": op.replayed,
        }
        if op.waited is not None:
            attributes["aetheris.waited_seconds"] = op.waited
        now = time.time_ns()
        span = self.tracer.start_span(f"{op.kind} {op.name}", attributes=attributes, start_time=now)
        span.end(end_time=now)

    def worker_event(self, event: observe.WorkerEvent) -> None:
        """Leases are the worker's business, not a run's: metrics count them."""


def _operation(job_id: str, position: int, kind: str, name: str, epoch: int) -> dict[str, Any]:
    return {
        "aetheris.job.id": job_id,
        "aetheris.position": position,
        "aetheris.kind": kind,
        "aetheris.name": name,
        "aetheris.fencing_token": epoch,
    }


_installed: Tracing | None = None


def install(tracer_provider: trace.TracerProvider | None = None) -> Tracing:
    """Trace every worker of this process started from now on (replacing an earlier
    :func:`install`), with ``tracer_provider`` (default: OpenTelemetry's global one)."""
    global _installed
    uninstall()
    _installed = Tracing(tracer_provider)
    observe.install(_installed)
    return _installed


def uninstall() -> None:
    """Stop tracing workers started from now on."""
    global _installed
    if _installed is not None:
        observe.uninstall(_installed)
        _installed = None


def install_from_env(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """Install tracing as env ``AETHERIS_TRACING`` asks: unset, ``0`` or ``off``: not at all;
    ``1`` or ``on``: with the global tracer provider (configured by the application, or by
    ``opentelemetry-instrument``); ``console``: spans printed on standard output; ``otlp``:
    exported with OTLP over HTTP (``OTEL_EXPORTER_OTLP_*`` settings; needs
    ``opentelemetry-exporter-otlp-proto-http``)."""
    value = (environ if environ is not None else os.environ).get("AETHERIS_TRACING", "")
    value = value.strip().lower()
    if value in ("", "0", "off", "false"):
        return None
    if value in ("1", "on", "true"):
        return install()
    if value in ("console", "otlp"):
        return install(_sdk_provider(value))
    raise ConfigurationError(
        f"AETHERIS_TRACING={value!r}: expected 1 (the global tracer provider), console, otlp or 0"
    )


def _sdk_provider(exporter_name: str) -> trace.TracerProvider:
    """An SDK tracer provider exporting spans to the console or over OTLP/HTTP."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as missing:  # pragma: no cover - the otel extra is not installed
        raise ConfigurationError(f"{missing}: pip install 'aetheris[otel]'") from None
    exporter: Any
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigurationError(
                "AETHERIS_TRACING=otlp needs pip install opentelemetry-exporter-otlp-proto-http"
            ) from None
        exporter = OTLPSpanExporter()
    service = os.environ.get("OTEL_SERVICE_NAME", "aetheris-worker")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider
