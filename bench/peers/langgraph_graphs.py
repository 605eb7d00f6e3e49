"""LangGraph side of the harness: the graphs, the checkpointers and the storage measures.

Shared by ``bench.peers.langgraph`` (the harness) and ``bench.peers.langgraph_worker`` (the
worker processes of W3 and W5). Imports only LangGraph, the standard library, psycopg and
``bench.peers.common``.

A benchmark "step" is one LangGraph super-step: a ``StateGraph`` whose single node ``step`` runs
the step body and a conditional edge that loops back to ``step`` until the state counter reaches
the wanted number of steps. With ``durability="sync"`` LangGraph waits for the checkpoint of a
super-step to be saved before it starts the next one.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from bench.peers import common

SQLITE_SYNCHRONOUS = {"full": "FULL", "process": "NORMAL"}
PG_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations")


def versions() -> dict[str, str]:
    return {
        name: version(name)
        for name in (
            "langgraph",
            "langgraph-checkpoint",
            "langgraph-checkpoint-sqlite",
            "langgraph-checkpoint-postgres",
            "psycopg",
        )
    }


def run_config(thread_id: str, steps: int) -> dict[str, Any]:
    """The config of one run: its thread, and a recursion limit above its number of steps."""
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 100}


# -- graphs ------------------------------------------------------------------------------------


class Counter(TypedDict):
    i: int  # number of steps completed


def counter_graph(steps: int, body: Callable[[int], int]) -> StateGraph:
    """``step`` runs ``body(i)`` (which returns the new counter) until ``steps`` are done."""

    def step(state: Counter) -> dict[str, int]:
        return {"i": body(state["i"])}

    return _loop(Counter, step, steps)


def async_counter_graph(steps: int, body: Callable[[int], int]) -> StateGraph:
    """Same graph with an ``async def`` node (no executor thread per step under ``ainvoke``)."""

    async def step(state: Counter) -> dict[str, int]:
        return {"i": body(state["i"])}

    return _loop(Counter, step, steps)


def _loop(schema: type, node: Callable[..., Any] | Callable[..., Awaitable[Any]], steps: int):
    graph = StateGraph(schema)
    graph.add_node("step", node)
    graph.add_edge(START, "step")
    graph.add_conditional_edges("step", lambda s: "step" if s["i"] < steps else END, ["step", END])
    return graph


class Conversation(TypedDict):
    messages: Annotated[list[dict[str, str]], operator.add]  # LangGraph's append reducer
    turn: int


def agent_graph(turns: int) -> StateGraph:
    """W4: each turn is an ``llm`` super-step then a ``tool`` super-step, each checkpointed."""

    def llm(state: Conversation) -> dict[str, Any]:
        return {"messages": [common.scripted_llm(state["messages"])]}

    def tool(state: Conversation) -> dict[str, Any]:
        turn = state["turn"] + 1
        return {"messages": [common.scripted_tool(turn)], "turn": turn}

    graph = StateGraph(Conversation)
    graph.add_node("llm", llm)
    graph.add_node("tool", tool)
    graph.add_edge(START, "llm")
    graph.add_edge("llm", "tool")
    graph.add_conditional_edges("tool", lambda s: "llm" if s["turn"] < turns else END, ["llm", END])
    return graph


# -- checkpointers -----------------------------------------------------------------------------


def sqlite_connection(path: Path, durability: str) -> sqlite3.Connection:
    """The connection handed to ``SqliteSaver``: WAL, ``synchronous`` FULL or NORMAL."""
    conn = sqlite3.connect(str(path), check_same_thread=False)  # as SqliteSaver's own docs do
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS[durability]}")
    return conn


def pg_connect_kwargs(durability: str) -> dict[str, Any]:
    """What ``PostgresSaver.from_conn_string`` uses, plus ``synchronous_commit=off`` for
    ``process`` (a commit survives the worker's death, not the database server's)."""
    from psycopg.rows import dict_row

    kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    if durability == "process":
        kwargs["options"] = "-c synchronous_commit=off"
    return kwargs


@contextmanager
def saver(backend: str, durability: str, target: str) -> Iterator[Any]:
    """A synchronous checkpointer, set up. ``target`` is a SQLite path or a PostgreSQL URL."""
    if backend == "sqlite":
        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite_connection(Path(target), durability)
        try:
            cp = SqliteSaver(conn)
            cp.setup()
            yield cp
        finally:
            conn.close()
    else:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver

        with psycopg.Connection.connect(target, **pg_connect_kwargs(durability)) as conn:
            cp = PostgresSaver(conn)
            cp.setup()
            yield cp


@asynccontextmanager
async def async_saver(backend: str, durability: str, target: str) -> AsyncIterator[Any]:
    """An asyncio checkpointer, set up: aiosqlite connection, or a psycopg connection pool."""
    if backend == "sqlite":
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with aiosqlite.connect(target) as conn:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS[durability]}")
            cp = AsyncSqliteSaver(conn)
            await cp.setup()
            yield cp
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg_pool import AsyncConnectionPool

        async with AsyncConnectionPool(
            target, min_size=1, max_size=10, kwargs=pg_connect_kwargs(durability), open=False
        ) as pool:
            cp = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
            await cp.setup()
            yield cp


def sqlite_pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0],
        "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
            conn.execute("PRAGMA synchronous").fetchone()[0]
        ],
    }


# -- storage -----------------------------------------------------------------------------------


def sqlite_bytes(path: Path) -> dict[str, int]:
    """File size of the database after ``wal_checkpoint(TRUNCATE)`` (no VACUUM), plus the
    bytes of the stored payloads (checkpoint and metadata blobs, write values)."""
    conn = sqlite3.connect(str(path))
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        payload = conn.execute(
            "SELECT (SELECT coalesce(sum(length(checkpoint) + length(metadata)), 0)"
            " FROM checkpoints) + (SELECT coalesce(sum(length(value)), 0) FROM writes)"
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM writes)"
        ).fetchone()
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return {
        "file_bytes": path.stat().st_size,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "payload_bytes": int(payload),
        "checkpoints": rows[0],
        "writes": rows[1],
    }


def pg_bytes(url: str) -> dict[str, int]:
    """Sum of ``pg_total_relation_size`` (heap + TOAST + indexes) of the saver's tables."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        sizes = {
            table: int(conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0])  # type: ignore[index]
            for table in PG_TABLES
        }
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM checkpoints), (SELECT count(*) FROM checkpoint_blobs),"
            " (SELECT count(*) FROM checkpoint_writes)"
        ).fetchone()
        payload = conn.execute(
            "SELECT (SELECT coalesce(sum(pg_column_size(checkpoint) + pg_column_size(metadata)),"
            " 0) FROM checkpoints) + (SELECT coalesce(sum(pg_column_size(blob)), 0)"
            " FROM checkpoint_blobs) + (SELECT coalesce(sum(pg_column_size(blob)), 0)"
            " FROM checkpoint_writes)"
        ).fetchone()[0]  # type: ignore[index]
        raw = conn.execute(
            "SELECT (SELECT coalesce(sum(octet_length(checkpoint::text) + octet_length("
            "metadata::text)), 0) FROM checkpoints) + (SELECT coalesce(sum(octet_length(blob)), 0)"
            " FROM checkpoint_blobs) + (SELECT coalesce(sum(octet_length(blob)), 0)"
            " FROM checkpoint_writes)"
        ).fetchone()[0]  # type: ignore[index]
    assert rows is not None
    return {
        "table_bytes": sum(sizes.values()),
        "payload_bytes": int(payload),  # as stored: TOAST compresses large values (pglz)
        "raw_payload_bytes": int(raw),  # uncompressed
        "checkpoints": rows[0],
        "blobs": rows[1],
        "writes": rows[2],
        **{f"bytes_{t}": s for t, s in sizes.items()},
    }
