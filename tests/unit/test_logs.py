"""Structured logs: the job, position and fencing token on every line, from the context the
runtime binds (not from each call), as text or as one JSON object per line; and the supervisor
of ``aetheris run`` reads both."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from aetheris import App, ConfigurationError, Context, JobStatus
from aetheris.cli.supervisor import parse_line
from aetheris.logs import ContextFilter, JsonFormatter, TextFormatter, format_from_env
from aetheris.observe import SILENT, Live
from tests.integration.helpers import run_job


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield out, handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def records(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_lines_carry_what_the_context_binds(captured: tuple[io.StringIO, Any]) -> None:
    out, _ = captured
    log = logging.getLogger("tests.logs")
    log.info("outside any job")
    run = Live("job-1", 7, None, SILENT)
    log.info("in the run")
    op = Live("job-1", 7, 3, SILENT)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("in the operation")
    op.end()
    log.info("back in the run", extra={"position": 9})  # a value given is kept
    run.end()
    log.info("after")
    found = records(out)
    fields = [{k: r.get(k) for k in ("job_id", "position", "fencing_token")} for r in found]
    assert fields == [
        {"job_id": None, "position": None, "fencing_token": None},
        {"job_id": "job-1", "position": None, "fencing_token": 7},
        {"job_id": "job-1", "position": 3, "fencing_token": 7},
        {"job_id": "job-1", "position": 9, "fencing_token": 7},
        {"job_id": None, "position": None, "fencing_token": None},
    ]
    assert found[2]["level"] == "ERROR" and "RuntimeError: boom" in found[2]["exc_info"]
    assert found[0]["logger"] == "tests.logs" and found[0]["message"] == "outside any job"
    assert found[0]["time"].endswith("Z")


def test_the_text_format_ends_lines_with_the_fields() -> None:
    record = logging.LogRecord("aetheris.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    ContextFilter().filter(record)
    assert TextFormatter().format(record).endswith(" INFO aetheris.x hello you")
    run = Live("j", 2, 5, SILENT)
    record = logging.LogRecord("aetheris.x", logging.INFO, __file__, 1, "hi", (), None)
    ContextFilter().filter(record)
    run.end()
    assert (
        TextFormatter()
        .format(record)
        .endswith(" INFO aetheris.x hi [job_id=j position=5 fencing_token=2]")
    )


async def test_a_runs_lines_carry_its_job_position_and_fencing_token(
    captured: tuple[io.StringIO, Any],
) -> None:
    out, _ = captured
    app = App("memory://", lease_ttl=1.0)
    tool_log = logging.getLogger("tests.tool")

    @app.tool(effect="at_most_once")
    def ship(order: str) -> str:  # a sync tool runs in a thread: the context goes with it
        tool_log.info("shipping %s", order)
        return "shipped"

    @app.agent
    async def deliver(ctx: Context, order: str) -> str:
        logging.getLogger("tests.agent").info("before the tool")
        return await ship(order)

    job = await run_job(app, "deliver", {"order": "o-9"})
    assert job.status is JobStatus.SUCCEEDED, job.error
    await app.close()
    found = records(out)
    mine = [r for r in found if r.get("job_id") == job.id]
    by_logger = {r["logger"]: r for r in mine}
    assert by_logger["tests.tool"]["position"] == 0
    assert by_logger["tests.tool"]["fencing_token"] == 1
    assert "position" not in by_logger["tests.agent"]  # between operations: none
    assert by_logger["tests.agent"]["fencing_token"] == 1
    jobs = [r for r in mine if r["logger"] == "aetheris.worker.jobs"]
    assert [r["message"].split(":")[0] for r in jobs] == [
        f"job {job.id} started",
        f"job {job.id} succeeded",
    ]
    assert all(r["fencing_token"] == 1 for r in jobs)
    outside = [r for r in found if r["logger"] == "aetheris.worker"]
    assert outside and all("job_id" not in r for r in outside if "serving" in r["message"])


def test_the_log_format_is_checked() -> None:
    assert format_from_env("JSON") == "json"
    with pytest.raises(ConfigurationError, match="unknown log format 'xml'"):
        format_from_env("xml")


def test_the_supervisor_reads_json_and_text_lines() -> None:
    line = json.dumps(
        {
            "time": "2025-03-04T05:06:07.089Z",
            "level": "INFO",
            "logger": "aetheris.worker.jobs",
            "message": "job J succeeded: agent a, run 1",
            "job_id": "J",
        }
    )
    message = "job J succeeded: agent a, run 1"
    assert parse_line(line) == ("05:06:07", "INFO", "aetheris.worker.jobs", message)
    text = "2025-03-04 05:06:07,089 WARNING aetheris.worker heartbeat failed [job_id=J]"
    warned = ("05:06:07", "WARNING", "aetheris.worker", "heartbeat failed [job_id=J]")
    assert parse_line(text) == warned
    assert parse_line("INFO:     127.0.0.1 - GET /healthz") is None
    assert parse_line("{not json") is None


def test_run_has_its_worker_log_json_and_serve_metrics_when_asked() -> None:
    from aetheris.cli.supervisor import Plan

    plan = Plan("m:app", ["a"], "sqlite:///x.db", "127.0.0.1", 8080, 2, "none", {})
    assert plan.worker_args[-2:] == ["--log-format", "json"]
    assert "--metrics-port" not in plan.worker_args
    assert "metrics   http://127.0.0.1:8080/metrics (the worker's: --metrics-port)" in plan.banner()
    plan.metrics_port = 9464
    args = plan.worker_args
    assert args[args.index("--metrics-port") + 1] == "9464"
    assert "the worker's at http://127.0.0.1:9464/metrics" in plan.banner()
