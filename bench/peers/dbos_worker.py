"""A DBOS worker process for the peer benchmark: the workflows, and one task per process.

Run by ``bench/peers/dbos.py`` as ``python -m bench.peers.dbos_worker '<json spec>'``. Every
process is one DBOS launch (DBOS is a process-wide singleton) with the same application name,
application version and executor id, so a fresh process recovers what a killed one left pending,
the way DBOS does it: ``DBOS.launch()`` finds this executor's PENDING workflows and re-enqueues
them on its internal queue, whose poller then runs them.

Timings are kept in ``MARKS``, a module-level dict outside DBOS's durable state, and written to
the spec's ``result`` file as JSON. The W3/W5 kills are SIGKILLs the process sends itself, asked
for through environment variables (a recovering process does not have them).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, SetWorkflowID
from sqlalchemy import event

from bench.peers import common

APP_NAME = "bench-dbos"
APP_VERSION = "bench-1"
EXECUTOR_ID = "bench-worker"
KILL_IN_STEP = "BENCH_DBOS_KILL_IN_STEP"  # SIGKILL inside this step, after its line
KILL_AFTER_STEP = "BENCH_DBOS_KILL_AFTER_STEP"  # SIGKILL after this step returned
KILL_AFTER_LOOP = "BENCH_DBOS_KILL_AFTER_LOOP"  # W5: SIGKILL once every step has returned

MARKS: dict[str, Any] = {"w2_begin": [], "w2_end": [], "w5": []}


def _die(marker: Path) -> None:
    marker.write_text(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL)


# -- steps and workflows ----------------------------------------------------------------------


@DBOS.step()
def inc(i: int) -> int:
    return common.step(i)


@DBOS.step()
def append_line(path: str, i: int) -> int:
    with open(path, "a") as f:
        f.write(f"{i}\n")
        f.flush()
    if os.environ.get(KILL_IN_STEP) == str(i):
        _die(Path(path + ".killed"))
    return i


@DBOS.step()
def llm(messages: list[dict[str, str]]) -> dict[str, str]:
    return common.scripted_llm(messages)


@DBOS.step()
def tool(turn: int) -> dict[str, str]:
    return common.scripted_tool(turn)


@DBOS.workflow()
def w1_workflow(n: int) -> int:
    began = time.perf_counter()
    value = 0
    for i in range(n):
        value = inc(i)
    MARKS["w1_s"] = time.perf_counter() - began
    return value


@DBOS.workflow()
def w2_job(n: int) -> int:
    MARKS["w2_begin"].append(time.perf_counter())
    value = 0
    for i in range(n):
        value = inc(i)
    MARKS["w2_end"].append(time.perf_counter())
    return value


@DBOS.workflow()
def w3_workflow(path: str, n: int) -> int:
    for i in range(1, n + 1):
        append_line(path, i)
        if os.environ.get(KILL_AFTER_STEP) == str(i):
            _die(Path(path + ".killed"))
    MARKS["w3_body_end"] = time.time()
    return n


@DBOS.workflow()
def w4_workflow(turns: int) -> int:
    messages: list[dict[str, str]] = []
    began = time.perf_counter()
    for turn in range(turns):
        messages.append(llm(messages))
        messages.append(tool(turn))
    MARKS["w4_s"] = time.perf_counter() - began
    return len(messages)


@DBOS.workflow()
def w5_workflow(n: int, times_path: str) -> int:
    times: list[float] = MARKS["w5"]
    value = 0
    for i in range(n):
        began = time.perf_counter()
        value = inc(i)
        times.append(time.perf_counter() - began)
    MARKS["w5_passed"] = time.time()
    if os.environ.get(KILL_AFTER_LOOP):
        Path(times_path).write_text(json.dumps(times))
        _die(Path(times_path + ".killed"))
    return value


# -- configuration ----------------------------------------------------------------------------


def _wal_normal_engine(url: str) -> sa.Engine:
    """DBOS's own SQLite engine settings plus WAL and synchronous=NORMAL.

    DBOS exposes no SQLite pragma; its documented ``system_database_engine`` option takes a
    custom SQLAlchemy engine, which is how the ``process`` durability is set. The pool and the
    connect hook copy what ``SQLiteSystemDatabase._create_engine`` does in dbos 3.4.0.
    """
    engine = sa.create_engine(
        url, pool_size=20, max_overflow=0, pool_timeout=30, pool_pre_ping=True
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA foreign_keys=ON")
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine


def launch(spec: dict[str, Any]) -> None:
    url: str = spec["url"]
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": url,
        "application_version": APP_VERSION,
        "executor_id": EXECUTOR_ID,
        "log_level": "WARNING",
    }
    if spec["durability"] == "process":
        if url.startswith("sqlite"):
            config["system_database_engine"] = _wal_normal_engine(url)
        else:
            config["db_engine_kwargs"] = {
                "connect_args": {
                    "application_name": "dbos_transact",
                    "options": "-c synchronous_commit=off",
                }
            }
    DBOS(config=config)
    DBOS.launch()


def storage_bytes(url: str) -> int:
    """SQLite: file size after a WAL checkpoint (no VACUUM). PostgreSQL: the summed
    ``pg_total_relation_size`` (heap, indexes, TOAST) of the tables in DBOS's schema."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(path + "-wal")
        return os.path.getsize(path) + (wal.stat().st_size if wal.exists() else 0)
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'dbos' AND c.relkind IN ('r', 'p')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def sqlite_settings() -> dict[str, Any]:
    """The pragmas DBOS's system-database connections really run with (read once)."""
    from dbos._dbos import _get_dbos_instance  # private, only to report the settings

    engine = _get_dbos_instance()._sys_db.engine
    if engine.dialect.name != "sqlite":
        return {}
    with engine.connect() as conn:
        return {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous")
        }


# -- tasks: one per process -------------------------------------------------------------------


def task_w1(spec: dict[str, Any]) -> dict[str, Any]:
    launch(spec)
    value = w1_workflow(spec["steps"])
    return {"value": value, "w1_s": MARKS["w1_s"], "sqlite": sqlite_settings()}


def task_w2(spec: dict[str, Any]) -> dict[str, Any]:
    launch(spec)
    queue = DBOS.register_queue("bench_w2")  # DBOS's defaults: no limits, 1 s polling
    # Worker start-up, excluded: DBOS's queue manager starts a poller thread for a newly
    # registered queue on its next check (every 1 s); wait until that thread exists.
    deadline = time.monotonic() + 10
    while not any(t.name == "queue-worker-bench_w2" for t in threading.enumerate()):
        if time.monotonic() > deadline:
            raise RuntimeError("DBOS started no poller thread for queue bench_w2")
        time.sleep(0.01)
    began = time.perf_counter()
    handles = [queue.enqueue(w2_job, spec["steps"]) for _ in range(spec["jobs"])]
    enqueued = time.perf_counter()
    values = [h.get_result(polling_interval_sec=0.05) for h in handles]
    done = time.perf_counter()
    return {
        "values": values,
        "window_s": done - began,
        "enqueue_s": enqueued - began,
        "first_body_start_s": min(MARKS["w2_begin"]) - began,
        "last_body_end_s": max(MARKS["w2_end"]) - began,
    }


def task_start_and_wait(spec: dict[str, Any], workflow: Any, *args: Any) -> dict[str, Any]:
    """Start a workflow under a fixed id and wait for it (the W3/W5 crash runs die in here)."""
    launch(spec)
    with SetWorkflowID(spec["workflow_id"]):
        handle = DBOS.start_workflow(workflow, *args)
    return {"value": handle.get_result(polling_interval_sec=0.05)}


def task_recover(spec: dict[str, Any]) -> dict[str, Any]:
    """A fresh process: launch (which recovers this executor's pending workflows), then wait."""
    launch_began = time.time()
    launch(spec)
    launched = time.time()
    handle = DBOS.retrieve_workflow(spec["workflow_id"])
    value = handle.get_result(polling_interval_sec=0.02)
    return {
        "value": value,
        "launch_began": launch_began,
        "launched": launched,
        "done": time.time(),
        "body_end": MARKS.get("w3_body_end"),
        "passed": MARKS.get("w5_passed"),
        "replay_times": MARKS["w5"],
    }


def task_w4(spec: dict[str, Any]) -> dict[str, Any]:
    launch(spec)
    baseline = storage_bytes(spec["url"])
    value = w4_workflow(spec["turns"])
    return {
        "value": value,
        "w4_s": MARKS["w4_s"],
        "baseline_bytes": baseline,
        "bytes": storage_bytes(spec["url"]),
    }


TASKS = {
    "w1": task_w1,
    "w2": task_w2,
    "w3_run": lambda s: task_start_and_wait(s, w3_workflow, s["lines"], s["steps"]),
    "w5_run": lambda s: task_start_and_wait(s, w5_workflow, s["steps"], s["times"]),
    "recover": task_recover,
    "w4": task_w4,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = TASKS[spec["task"]](spec)
    Path(spec["result"]).write_text(json.dumps(result))
    DBOS.destroy()


if __name__ == "__main__":
    main()
