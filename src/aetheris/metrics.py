"""Prometheus metrics: an :class:`~aetheris.observe.Observer` that counts, and the store's
counts read at each scrape.

``Metrics`` (one per worker, passed as its ``observer``) counts what the runtime reports:
runs and how they ended, live operations' latency by kind, waits, replayed operations, model
tokens and cost by model, claims, takeovers of expired leases, leases lost, fenced writes and
heartbeats. :func:`store_families` turns the store's :class:`~aetheris.store.port.Summary`
into gauges at scrape time: jobs by tenant and status, queue depth and the age of the oldest
pending job, effects by state (``in_doubt``: someone must look). The API server's ``/metrics``
and a worker's (``aetheris worker --metrics-port``) both serve those gauges: aggregate them with
``max`` across instances, not ``sum``.

Labels never carry a job id (or anything a tenant chose but its name): a series per job would
grow without end, and a scrape would list another tenant's jobs. Every name is in
:data:`NAMES`, which the dashboard and alert rules in ``deploy/`` are tested against.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aetheris.observe import (
    Ended,
    OperationDone,
    OperationStarted,
    RunStarted,
    Scope,
    WorkerEvent,
)
from aetheris.prometheus import CONTENT_TYPE, Counter, Family, Gauge, Histogram, render
from aetheris.store.port import EffectState, JobStatus, Store, Summary

__all__ = ["NAMES", "Metrics", "MetricsServer", "store_families"]

log = logging.getLogger("aetheris.metrics")
SCRAPE_TIMEOUT = 10.0  # seconds to read the store's summary for one scrape

WORK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WAIT_BUCKETS = (0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
_LEASES = {
    "claimed": "aetheris_claims_total",
    "takeover": "aetheris_lease_takeovers_total",
    "lost": "aetheris_leases_lost_total",
    "fenced": "aetheris_fenced_writes_total",
}


def _families() -> dict[str, Family]:
    """The families a worker counts, by name."""
    found: list[Family] = [
        Histogram(
            "aetheris_operation_duration_seconds",
            "Live durable operations (tool, step, llm, compensation): dispatch to outcome, "
            "retries included.",
            ("kind", "outcome"),
            WORK_BUCKETS,
        ),
        Histogram(
            "aetheris_wait_duration_seconds",
            "Waits (signal, approval, sleep, child) from their first park to their end.",
            ("kind", "outcome"),
            WAIT_BUCKETS,
        ),
        Counter(
            "aetheris_operations_replayed_total",
            "Operations answered from the journal on a resumed run (nothing ran again).",
            ("kind",),
        ),
        Histogram(
            "aetheris_job_run_duration_seconds",
            "Runs of jobs (claim to end, park or hand-back) by how they ended.",
            ("outcome",),
            RUN_BUCKETS,
        ),
        Gauge("aetheris_worker_runs_active", "Runs in progress in this worker."),
        *_model_families(),
        *_lease_families(),
    ]
    return {f.name: f for f in found}


def _model_families() -> list[Family]:
    return [
        Counter("aetheris_llm_calls_total", "Model calls made.", ("model", "outcome")),
        Counter(
            "aetheris_llm_tokens_total",
            "Tokens of model calls made (replayed calls cost none).",
            ("model", "direction"),
        ),
        Counter(
            "aetheris_llm_cost_dollars_total",
            "Cost of model calls made, in dollars (calls of unknown price count 0).",
            ("model",),
        ),
    ]


def _lease_families() -> list[Family]:
    return [
        Counter("aetheris_claims_total", "Jobs claimed by this worker."),
        Counter(
            "aetheris_lease_takeovers_total",
            "Claims that took over an expired lease (its worker died or stalled).",
        ),
        Counter(
            "aetheris_leases_lost_total",
            "Leases this worker found taken by another worker (its runs were stopped).",
        ),
        Counter(
            "aetheris_fenced_writes_total",
            "Writes refused because another worker holds the job now (LeaseLost).",
        ),
        Counter("aetheris_worker_heartbeats_total", "Heartbeats this worker sent."),
        Gauge(
            "aetheris_worker_last_heartbeat_timestamp_seconds",
            "When this worker last sent a heartbeat (Unix time).",
        ),
    ]


def store_families(summary: Summary | None, now: float) -> list[Family]:
    """Gauges of the store's ``summary`` (read at ``now``); ``None``: it could not be read."""
    up = Gauge("aetheris_store_up", "Whether the store's summary could be read at this scrape.")
    up.set(0.0 if summary is None else 1.0)
    jobs = Gauge("aetheris_jobs", "Jobs by tenant and status.", ("tenant", "status"))
    depth = Gauge("aetheris_queue_depth", "Pending jobs (waiting for a worker), all tenants.")
    age = Gauge(
        "aetheris_queue_oldest_pending_age_seconds",
        "Age of the oldest pending job (0 when none is pending).",
    )
    effects = Gauge("aetheris_effects", "Effects of the ledger by state.", ("state",))
    if summary is not None:
        for tenant, counts in sorted(summary.by_tenant.items()):
            for status in JobStatus:
                jobs.set(counts.get(status, 0), tenant, status.value)
        depth.set(summary.jobs.get(JobStatus.PENDING, 0))
        oldest = summary.oldest_pending_at
        age.set(0.0 if oldest is None else max(0.0, now - oldest))
        for state in EffectState:
            effects.set(summary.effects.get(state, 0), state.value)
    return [up, jobs, depth, age, effects]


def _names() -> frozenset[str]:
    families = [*_families().values(), *store_families(None, 0.0)]
    return frozenset(f.name for f in families)


NAMES = _names()
"""Every metric family exported (histograms add ``_bucket``, ``_sum`` and ``_count``)."""


@dataclass(slots=True)
class _RunScope:
    metrics: Metrics
    began: float
    traceparent: str | None = None

    def end(self, ended: Ended) -> None:
        self.metrics.run_ended(ended, time.monotonic() - self.began)


@dataclass(slots=True)
class _OperationScope:
    metrics: Metrics
    kind: str
    name: str
    began: float
    traceparent: str | None = None

    def end(self, ended: Ended) -> None:
        self.metrics.operation_ended(self.kind, self.name, ended, time.monotonic() - self.began)


class Metrics:
    """Counts what a worker's runs report (an :class:`~aetheris.observe.Observer`)."""

    def __init__(self) -> None:
        self.families = _families()
        self._ops = self.histogram("aetheris_operation_duration_seconds")
        self._waits = self.histogram("aetheris_wait_duration_seconds")
        self._runs = self.histogram("aetheris_job_run_duration_seconds")
        self._active = self.gauge("aetheris_worker_runs_active")

    def counter(self, name: str) -> Counter:
        found = self.families[name]
        assert isinstance(found, Counter)
        return found

    def gauge(self, name: str) -> Gauge:
        found = self.families[name]
        assert isinstance(found, Gauge)
        return found

    def histogram(self, name: str) -> Histogram:
        found = self.families[name]
        assert isinstance(found, Histogram)
        return found

    # -- the observer ---------------------------------------------------------------------------

    def run_started(self, run: RunStarted) -> Scope:
        self._active.add(1)
        return _RunScope(self, time.monotonic())

    def run_ended(self, ended: Ended, seconds: float) -> None:
        self._active.add(-1)
        self._runs.observe(seconds, ended.outcome)

    def operation_started(self, op: OperationStarted) -> Scope:
        return _OperationScope(self, op.kind, op.name, time.monotonic())

    def operation_ended(self, kind: str, name: str, ended: Ended, seconds: float) -> None:
        self._ops.observe(seconds, kind, ended.outcome)
        if kind != "llm":
            return
        model = ended.model or name
        self.counter("aetheris_llm_calls_total").inc(model, ended.outcome)
        tokens = self.counter("aetheris_llm_tokens_total")
        tokens.inc(model, "input", amount=ended.input_tokens)
        tokens.inc(model, "output", amount=ended.output_tokens)
        cost = self.counter("aetheris_llm_cost_dollars_total")
        cost.inc(model, amount=ended.cost or 0.0)

    def operation_done(self, op: OperationDone) -> None:
        if op.replayed:
            self.counter("aetheris_operations_replayed_total").inc(op.kind)
        elif op.waited is not None:
            self._waits.observe(op.waited, op.kind, op.outcome)

    def worker_event(self, event: WorkerEvent) -> None:
        if event.kind == "heartbeat":
            self.counter("aetheris_worker_heartbeats_total").inc()
            self.gauge("aetheris_worker_last_heartbeat_timestamp_seconds").set(event.at)
        else:
            self.counter(_LEASES[event.kind]).inc()

    # -- exposition -----------------------------------------------------------------------------

    def render(self, summary: Summary | None = None, *, store: bool = True) -> str:
        """The exposition: this worker's families, then (``store``) the summary's gauges."""
        families = list(self.families.values())
        if store:
            families += store_families(summary, time.time())
        return render(families)


# -- serving a worker's metrics ---------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._send(404, "not found: metrics are at /metrics\n")
        elif not self.server.allows(self.headers.get("Authorization", "")):
            self._send(401, "unauthorized: send Authorization: Bearer <metrics token>\n")
        else:
            self._send(200, self.server.scrape(), CONTENT_TYPE)

    def _send(self, status: int, text: str, kind: str = "text/plain; charset=utf-8") -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a scrape every few seconds is not news."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], scrape: Callable[[], str], token: str | None):
        self.scrape = scrape
        self.token = token
        super().__init__(address, _Handler)

    def allows(self, header: str) -> bool:
        if not self.token:
            return True
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), self.token)


class MetricsServer:
    """``GET /metrics`` of a worker, served from a thread (the event loop keeps running jobs).

    ``metrics`` are rendered with the gauges of ``store``'s summary, read in ``loop`` (the
    worker's) at each scrape. ``token``: if set, scrapes must send ``Authorization: Bearer
    TOKEN``. Listens on ``host:port`` (port 0: any free port; see :attr:`url`).
    """

    def __init__(
        self,
        metrics: Metrics,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
    ) -> None:
        self.metrics = metrics
        self._store = store
        self._loop = loop
        self._server = _Server((host, port), self.scrape, token)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="aetheris-metrics", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        text = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{text}]" if ":" in text else text
        return f"http://{shown}:{port}/metrics"

    def scrape(self) -> str:
        """The exposition; without the store's gauges if its summary cannot be read now."""
        summary: Summary | None = None
        try:
            running = asyncio.run_coroutine_threadsafe(self._store.summary(), self._loop)
            summary = running.result(timeout=SCRAPE_TIMEOUT)
        except Exception as exc:  # any reason: the scrape still answers, store_up says 0
            log.warning("metrics: the store's summary could not be read: %s", exc)
        return self.metrics.render(summary)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
