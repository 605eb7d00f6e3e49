"""What every peer harness shares: the workload definitions, arguments, results, databases.

Standard library (plus psycopg, for PostgreSQL databases) only: this module runs inside each
peer's own virtual environment, next to that peer's framework and nothing else of ours. Its
PostgreSQL helpers (a fresh database, ``SHOW`` of settings) are the only ones in bench/: the
Aetheris side (``bench.harness``) and the summary of ``python -m bench`` use them too.

A harness is run as ``python -m bench.peers.<peer> --workload W1 --backend sqlite
--durability full --runs 3 --out results.jsonl`` and appends one JSON object per measured
figure to ``--out``:

    {"system": "dbos", "version": "3.4.0", "workload": "W1", "variant": "steps",
     "backend": "sqlite", "durability": "full", "metric": "us_per_step", "value": 5308.0,
     "run": 1, "fsync_p50_us": 181.0, "notes": "..."}

A workload a peer cannot run (e.g. SQLite on Absurd) is reported with ``"value": null`` and a
``"notes"`` saying why, never silently dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# -- the workloads, identical for every system ------------------------------------------------

W1_STEPS = 1_000  # one job of sequential steps, each returning i + 1, each durably recorded
W2_JOBS = 200  # jobs started at once ...
W2_STEPS = 10  # ... of this many steps each, run to completion by the system's workers
W3_STEPS = 100  # each step appends a line to a file; the worker is SIGKILLed inside step ...
W3_KILL_AT = 51  # ... this one, after its line is written; a fresh worker recovers the job
W4_TURNS = (20, 100, 200)  # (scripted LLM call on the growing message list, tool call) turns
W5_SIZES = (10, 1_000, 10_000)  # per-step cost when the journal holds this many entries
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "A1", "A2")  # A1/A2: agents of other frameworks
AGENT_STORED_TURNS = 200  # A1/A2: bytes stored after a run of this many turns (agent_script)
AGENT_SYSTEMS = {  # who runs A1 (a PydanticAI agent) and A2 (a LangGraph agent), and why not
    "A1": {
        "aetheris": "",
        "dbos": "",
        "temporal": "",
        "langgraph": "A1 is a PydanticAI agent; LangGraph is a different framework (see A2)",
        "restate": "PydanticAI 2.68 has no Restate durability backend in pydantic_ai.durable_exec",
        "absurd": "PydanticAI 2.68 has no Absurd durability backend",
    },
    "A2": {
        "aetheris": "",
        "langgraph": "",
        "dbos": "A2 is LangGraph's own checkpointers against Aetheris's; DBOS has none for it",
        "temporal": "A2 is LangGraph's own checkpointers against Aetheris's; Temporal has none",
        "restate": "A2 is LangGraph's own checkpointers against Aetheris's; Restate has none",
        "absurd": "A2 is LangGraph's own checkpointers against Aetheris's; Absurd has none",
    },
}
AGENT_METRICS = (
    "us_per_turn",
    "overhead_us_per_turn",
    f"bytes_stored_{AGENT_STORED_TURNS}",
    "dup_charge_calls",
    "dup_model_calls",
)
PG_ADMIN_URL = os.environ.get(
    "AETHERIS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PG_SERVER_SETTINGS = (  # what decides what a commit costs, and the server's version
    "server_version",
    "synchronous_commit",
    "fsync",
    "wal_sync_method",
    "full_page_writes",
    "commit_delay",
    "shared_buffers",
    "max_connections",
)


def step(i: int) -> int:
    """The body of every benchmark step."""
    return i + 1


def scripted_llm(messages: list[dict[str, str]]) -> dict[str, str]:
    """W4's model: deterministic, answers from the length of the conversation so far."""
    turn = len(messages) // 2
    return {"role": "assistant", "content": f"call lookup for item {turn} " + "x" * 200}


def scripted_tool(turn: int) -> dict[str, str]:
    """W4's tool call result."""
    return {"role": "tool", "content": f"item {turn}: in stock " + "y" * 200}


def agent_sizes(quick: bool) -> tuple[int, int, int]:
    """A1/A2: turns of a timed run, turns of the stored-bytes run, timed runs per figure."""
    from bench.peers import agent_script

    return agent_script.TURNS, AGENT_STORED_TURNS, 1 if quick else 3


def agent_rows(
    variant: str,
    what: str,
    timing: str,
    timed: dict[str, Any],
    floor: dict[str, Any],
    size: dict[str, Any],
    kill: dict[str, Any],
) -> list[tuple[str, str, float | None, str, dict[str, Any]]]:
    """A1/A2's five figures of one durable variant, as (variant, metric, value, notes, extra):
    µs per turn, the same above the plain run of this process, bytes stored, and the calls a
    kill -9 right after the at_most_once tool's side effect ran again (``kill``:
    ``agent_script.duplicates`` plus what the system did)."""
    from bench.peers import agent_script

    overhead = timed["us_per_turn"] - floor["us_per_turn"]
    turn = agent_script.KILL_TURN
    after = (
        f"{agent_script.KILL_RUN_TURNS}-turn run, SIGKILL right after charge's side effect at "
        f"turn {turn}, then a fresh worker: charge of turn {turn} ran "
        f"{kill['charge_runs_for_turn']}x, the model request of turn {turn} "
        f"{kill['model_runs_for_turn']}x; every call that ran more than once: "
        f"{', '.join(kill['ran_more_than_once']) or 'none'}; {kill.get('what', '')}"
    ).strip("; ")
    stored = f"{what}; {size.get('how', '')}".strip("; ")
    return [
        (variant, "us_per_turn", timed["us_per_turn"], f"{what}; {timing}", timed),
        (
            variant,
            "overhead_us_per_turn",
            overhead,
            f"µs per turn above the plain run (no durability) in the same process: "
            f"{timed['us_per_turn']:.0f} - {floor['us_per_turn']:.0f}",
            {"plain": floor, "durable": timed},
        ),
        (variant, f"bytes_stored_{AGENT_STORED_TURNS}", float(size["bytes"]), stored, size),
        (variant, "dup_charge_calls", float(kill["dup_charge_calls"]), after, kill),
        (variant, "dup_model_calls", float(kill["dup_model_calls"]), after, kill),
    ]


# -- arguments and results ---------------------------------------------------------------------


def parse_args(system: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench.peers.{system}")
    parser.add_argument("--workload", required=True, choices=[*WORKLOADS])
    parser.add_argument("--backend", required=True, choices=["sqlite", "postgres", "server"])
    parser.add_argument("--durability", default="full", choices=["full", "process"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dir", type=Path, default=None, help="where throw-away files go")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for development")
    return parser.parse_args()


@dataclass
class Result:
    system: str
    version: str
    workload: str
    variant: str
    backend: str
    durability: str
    metric: str
    value: float | None
    run: int
    fsync_p50_us: float | None = None
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def emit(out: Path, result: Result) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        f.write(json.dumps(asdict(result), sort_keys=True) + "\n")
    shown = "n/a" if result.value is None else f"{result.value:,.2f}"
    print(
        f"{result.system} {result.workload}/{result.variant} {result.backend}/"
        f"{result.durability} run {result.run}: {result.metric} = {shown} {result.notes}",
        flush=True,
    )


def fsync_samples(directory: Path, writes: int = 200, block: int = 4096) -> list[float]:
    """µs each (write ``block`` bytes + fsync) took, ``writes`` times, to a new file in
    ``directory`` (removed after)."""
    path = directory / f"fsync-probe-{uuid.uuid4().hex}"
    samples = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        data = os.urandom(block)
        for _ in range(writes):
            began = time.perf_counter()
            os.write(fd, data)
            os.fsync(fd)
            samples.append((time.perf_counter() - began) * 1e6)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return samples


def fsync_p50_us(directory: Path, writes: int = 200, block: int = 4096) -> float:
    """Median latency of (write 4 KiB + fsync) in ``directory``: the disk's durability floor."""
    return statistics.median(fsync_samples(directory, writes, block))


@contextmanager
def workdir(base: Path | None) -> Iterator[Path]:
    """A fresh directory on a real disk (not tmpfs) for one run."""
    root = Path(tempfile.mkdtemp(prefix="bench-", dir=base))
    try:
        yield root
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def fresh_postgres_db(
    prefix: str = "bench", synchronous_commit: str | None = None, admin_url: str = ""
) -> Iterator[str]:
    """A new, empty PostgreSQL database for one run, on the server of ``admin_url`` (default
    ``PG_ADMIN_URL``; the role must be allowed to create databases), with ``ALTER DATABASE ...
    SET synchronous_commit`` if given; dropped afterwards (``WITH (FORCE)``), whatever happened.
    Yields its URL."""
    import psycopg
    from psycopg import sql

    admin = admin_url or PG_ADMIN_URL
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
        if synchronous_commit is not None:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                    ident, sql.Literal(synchronous_commit)
                )
            )
    try:
        yield urlunsplit(urlsplit(admin)._replace(path=f"/{name}", query=""))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))


def postgres_settings(
    names: Sequence[str] = ("synchronous_commit", "fsync", "server_version"),
    url: str = "",
    connect_timeout: int = 0,
) -> dict[str, str]:
    """``SHOW`` of each setting in ``names``, from a session of ``url`` (default
    ``PG_ADMIN_URL``; a run's database shows its database-level settings too)."""
    import psycopg
    from psycopg import sql

    options: dict[str, Any] = {"connect_timeout": connect_timeout} if connect_timeout else {}
    found = {}
    with psycopg.connect(url or PG_ADMIN_URL, autocommit=True, **options) as conn:
        for name in names:
            row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            found[name] = str(row[0]) if row else "?"
    return found
