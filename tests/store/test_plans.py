"""The hot queries stay index lookups however much history the jobs table holds.

A worker claims, heartbeats and parks all day, and every signal wakes a job: the claim, the
heartbeat and the wake-up statements must reach their rows through an index, never by reading
the jobs table. Each test fills a database with thousands of jobs (mostly ended ones, as months
of use leave them), ANALYZEs it, and reads the plan of the exact statement the store runs
(``queries.sql``): PostgreSQL's ``EXPLAIN`` as the store runs it (custom plan) and as a
prepared statement may run it after a few executions (``plan_cache_mode =
force_generic_plan``), SQLite's ``EXPLAIN QUERY PLAN``. Then, in a transaction rolled back
after, it drops the index the statement relies on and checks that the same check now fails:
the checks can tell an index lookup from a scan.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import ClientCursor

from aetheris.store import create_store, sql
from aetheris.store.postgres_session import read_journal

JOBS = 20_000  # of which PENDING pending, RUNNING running, PARKED parked, the rest ended
PENDING, RUNNING, PARKED = 200, 200, 2_000
AGENTS = ["a0", "a1", "a2"]
TERMINAL = ("succeeded", "failed", "cancelled")


def _rows(now: float) -> Iterator[tuple[Any, ...]]:
    """(id, agent, status, run_at, created_at, lease_expires_at, wake_on, wake_at) per job,
    oldest first; ids are time-ordered like the store's."""
    for g in range(JOBS):
        at = now - 90 * 86_400 + g * 60.0
        status, expires, wake_on, wake_at = TERMINAL[g % 3], None, None, None
        if g >= JOBS - PENDING:
            status = "pending"
        elif g >= JOBS - PENDING - RUNNING:
            status, expires = "running", now + 600
        elif g % 9 == 0 and g < PARKED * 9:
            status, wake_on = "parked", "signal:approve"
            wake_at = now + 86_400 if g % 2 else None
        yield (f"{g:08d}-job", AGENTS[g % 3], status, at, at, expires, wake_on, wake_at)


COLUMNS = "id, agent, status, run_at, created_at, lease_expires_at, wake_on, wake_at"


# -- PostgreSQL -------------------------------------------------------------------------------

PG_PARAMS: dict[str, Any] = {
    "agents": AGENTS,
    "queues": None,
    "versions": None,
    "skip": None,
    "owner": "w1",
    "ttl": 30.0,
    "ids": ["00019900-job", "00019901-job"],
    "epochs": [1, 1],
    "id": "00000009-job",
    "wake_on": "signal:approve",
    "owners": ["w1", "w2"],
}
# The claim, the heartbeat and the wake-ups: per statement, groups of indexes of jobs, one of
# each group used. The heartbeat finds its few rows by id, one per lease. The claim's expired
# branch reads the running jobs through jobs_running (by lease owner, a column a heartbeat
# leaves alone, so that heartbeats are heap-only updates) and checks their lease times on the
# rows: as many rows as jobs run, never the history.
PG_CASES: dict[str, list[set[str]]] = {
    "claim": [{"jobs_running"}, {"jobs_due"}, {"jobs_pending"}, {"jobs_pkey"}],
    "heartbeat": [{"jobs_pkey"}],
    "wake": [{"jobs_pkey"}],
    "wake_if_ready": [{"jobs_pkey"}],
    "next_wake": [{"jobs_due"}],
    # the reaper: the owners of running jobs, and expiring the leases of dead ones
    "running_owners": [{"jobs_running"}],
    "expire_owners": [{"jobs_running"}],
}
_NO_PKEY = "ALTER TABLE jobs DROP CONSTRAINT jobs_pkey"
# What to drop to take each statement's index (or its indexes) away; for the claim, each of
# its branches' indexes in turn.
PG_DROP = {
    "claim": [["DROP INDEX jobs_pending"], ["DROP INDEX jobs_running"], ["DROP INDEX jobs_due"]],
    "heartbeat": [[_NO_PKEY]],
    "wake": [[_NO_PKEY]],
    "wake_if_ready": [[_NO_PKEY]],
    "next_wake": [["DROP INDEX jobs_due"]],
    "running_owners": [["DROP INDEX jobs_running"]],
    "expire_owners": [["DROP INDEX jobs_running"]],
}


def _fill_postgres(url: str) -> None:
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(f"COPY jobs ({COLUMNS}, input, queue, priority, head_hash, "
                                "updated_at) FROM STDIN") as copy:  # fmt: skip
            for row in _rows(now):
                copy.write_row((*row, "{}", "default", 0, "h", row[4]))
        # One ended job in ten received a signal: the wake-up's inbox lookups see history.
        conn.execute(
            "INSERT INTO signals (job_id, seq, name, signal_id, payload, created_at,"
            " consumed_position) SELECT id, 1, 'approve', id, '{}', created_at, 1 FROM jobs"
            " WHERE status IN ('succeeded', 'failed', 'cancelled') AND right(id, 5) LIKE '%0-job'"
        )
        conn.execute("VACUUM ANALYZE")


def _pg_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _pg_nodes(child)


def pg_problems(plan: dict[str, Any], groups: list[set[str]]) -> list[str]:
    """What is wrong with a JSON plan: a sequential scan of jobs, a read of jobs through an
    index of none of the groups (such as the status index over every ended job), or a group
    none of whose indexes is used."""
    nodes = list(_pg_nodes(plan))
    scans = [n for n in nodes if n["Node Type"] == "Seq Scan" and n["Relation Name"] == "jobs"]
    problems = [f"Seq Scan on jobs (as {n['Alias']})" for n in scans]
    used = {n["Index Name"] for n in nodes if n.get("Index Name", "").startswith("jobs_")}
    problems += [f"index {name} used" for name in sorted(used - set().union(*groups))]
    problems += [f"none of {sorted(g)} used" for g in groups if not g & used]
    return problems


def _numbered(query: str) -> tuple[str, list[str]]:
    """The query with ``%(name)s`` placeholders as ``$1``.., and the names in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match[1] not in names:
            names.append(match[1])
        return f"${names.index(match[1]) + 1}"

    return re.sub(r"%\((\w+)\)s", number, query), names


@pytest.fixture
def pg_history(pg_url: str) -> str:
    _fill_postgres(pg_url)
    return pg_url


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("name", sorted(PG_CASES))
def test_postgres_hot_queries_use_their_indexes(pg_history: str, name: str, generic: bool) -> None:
    with psycopg.connect(pg_history) as conn:
        plan = _explain(conn, name, generic)
        assert pg_problems(plan, PG_CASES[name]) == [], plan
        for drops in PG_DROP[name]:
            for drop in drops:  # in a transaction rolled back below
                conn.execute(drop)
            without = pg_problems(_explain(conn, name, generic), PG_CASES[name])
            conn.rollback()
            assert without, f"{name}: the plan did not change without {drops}"


def _explain(
    conn: psycopg.Connection[Any], name: str, generic: bool, params: dict[str, Any] = PG_PARAMS
) -> dict[str, Any]:
    query = sql.queries("postgresql")[name]
    cur = ClientCursor(conn)
    if generic:
        numbered, names = _numbered(query)
        cur.execute(f"PREPARE plan_check AS {numbered}")
        cur.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        args = f"({', '.join(['%s'] * len(names))})" if names else ""
        cur.execute(f"EXPLAIN (FORMAT JSON) EXECUTE plan_check{args}", [params[n] for n in names])
    else:
        cur.execute(f"EXPLAIN (FORMAT JSON) {query}", params)
    row = cur.fetchone()
    if generic:
        cur.execute("DEALLOCATE plan_check")
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


# -- the journal read ---------------------------------------------------------------------------

LONG, SHORT, SHORT_EVENTS = 5_000, 3_000, 5  # one long journal among many short ones


def _fill_journals(url: str, analyze: bool) -> None:
    """One long journal, written in one run of steps, then many short ones."""
    body = b'{"data":{}}' + b" " * 360  # about an op entry's size
    rows = [("long-job", seq) for seq in range(LONG)]
    rows += [(f"{k:05d}-job", seq) for k in range(SHORT) for seq in range(SHORT_EVENTS)]
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.cursor().copy(
            "COPY events (job_id, seq, type, position, body, prev_hash, hash) FROM STDIN"
        ) as copy:
            for job_id, seq in rows:
                copy.write_row((job_id, seq, "op", seq, body, "p", "h"))
        if analyze:
            conn.execute("ANALYZE events")


@pytest.mark.parametrize("generic", [False, True], ids=["custom", "generic"])
@pytest.mark.parametrize("analyzed", [False, True], ids=["never-analyzed", "analyzed"])
def test_a_long_journal_is_read_by_walking_its_key(
    pg_url: str, analyzed: bool, generic: bool
) -> None:
    """A resume reads its whole journal in order: along the primary key, with no sort (which
    spills to disk past ``work_mem``) and no parallel workers, whatever the statistics say."""
    _fill_journals(pg_url, analyzed)
    params = {"job_id": "long-job", "after": -1, "limit": None}

    def kinds(plan: dict[str, Any]) -> list[str]:
        return [f"{n['Node Type']} {n.get('Index Name', '')}".strip() for n in _pg_nodes(plan)]

    with psycopg.connect(pg_url) as conn:  # in a transaction, as the store reads it
        conn.execute(sql.queries("postgresql")["walk_the_journal_key"])
        walked = kinds(_explain(conn, "events", generic, params))
        conn.rollback()
        left_alone = kinds(_explain(conn, "events", generic, params))
    assert [k for k in walked if k != "Limit"] == ["Index Scan events_pkey"], walked
    if not generic:  # a generic plan walks the key anyway; a custom one (the first five
        # executions on a connection, a fresh worker's) sorts what a scan of the table found
        assert "Sort" in left_alone, f"the check cannot tell a walk from a sort: {left_alone}"


@pytest.mark.parametrize(
    ("query", "params"),
    [
        ("events", {"job_id": "long-job", "after": -1, "limit": None}),  # a reader's
        ("journal", {"job_id": "long-job"}),  # a run's at its claim
    ],
)
async def test_the_store_reads_a_journal_by_walking_its_key_on_a_fresh_connection(
    pg_url: str, query: str, params: dict[str, Any]
) -> None:
    """The store's own read, on a new connection (a custom plan, as a fresh worker's first
    resumes get), by ``auto_explain``'s report of the plan it ran; the same query sent bare
    on that connection sorts, so the report can tell."""
    _fill_journals(pg_url, analyze=True)
    plans: list[str] = []
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        await conn.execute("LOAD 'auto_explain'")
        await conn.execute("SET auto_explain.log_min_duration = 0")
        await conn.execute("SET auto_explain.log_level = notice")
        rows = await read_journal(conn, query, params)
        assert [r[0] for r in rows] == list(range(LONG))
        read, plans[:] = [p for p in plans if "FROM events" in p], []
        await conn.execute(sql.queries("postgresql")[query], params)
        bare = [p for p in plans if "FROM events" in p]
    assert len(read) == 1 and "Index Scan using events_pkey" in read[0], read
    assert "Sort" not in read[0], read[0]
    assert len(bare) == 1 and "Sort" in bare[0], f"the report cannot tell: {bare}"


async def test_a_failed_journal_read_leaves_its_connection_idle(pg_url: str) -> None:
    """A read the server refuses inside its transaction is rolled back: the connection goes
    back to the pool idle, and the next read on it works."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            await read_journal(conn, "events", {"job_id": "j", "after": "x", "limit": None})
        assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
        assert await read_journal(conn, "journal", {"job_id": "j"}) == []


# -- SQLite -----------------------------------------------------------------------------------

LITE_PARAMS: dict[str, Any] = {
    "agents": '["a0", "a1", "a2"]',
    "queues": None,
    "versions": None,
    "skip": None,
    "owner": "w1",
    "expires": 0.0,
    "epoch": 1,
    "id": "00000009-job",
    "wake_on": "signal:approve",
    "agent": None,
    "limit": 500,
}
# The claim's three candidate lookups and its update, the heartbeat, the wake-ups: the index
# each must read jobs through.
LITE_CASES = {
    "expired_candidate": ({"jobs_running"}, "DROP INDEX jobs_running"),
    "due_candidate": ({"jobs_due"}, "DROP INDEX jobs_due"),
    "pending_candidate": ({"jobs_pending"}, "DROP INDEX jobs_pending"),
    "claim": ({"sqlite_autoindex_jobs_1"}, None),
    "heartbeat": ({"sqlite_autoindex_jobs_1"}, None),
    "wake": ({"sqlite_autoindex_jobs_1"}, None),
    "wake_if_ready": ({"sqlite_autoindex_jobs_1"}, None),
    "next_wake": ({"jobs_due"}, "DROP INDEX jobs_due"),
    "prune_candidates": ({"jobs_ended"}, "DROP INDEX jobs_ended"),  # a prune batch's pick
}
JOBS_ALIASES = ("jobs", "c", "j")  # how the statements name the jobs table


def lite_problems(details: list[str], indexes: set[str]) -> list[str]:
    """A scan of jobs (``SCAN jobs``; along an index only if it is one of ``indexes``, such as
    the partial index of pending jobs), a read of jobs through another index, or none through
    one of ``indexes``."""

    def of_jobs(kind: str) -> list[str]:
        return [d for d in details if d.split(" ")[:2] in ([kind, a] for a in JOBS_ALIASES)]

    reads = {d: re.search(r"USING (?:COVERING )?INDEX (\w+)", d) for d in of_jobs("SCAN")}
    reads |= {d: re.search(r"USING (?:COVERING )?INDEX (\w+)", d) for d in of_jobs("SEARCH")}
    problems = [d for d, index in reads.items() if index is None or index[1] not in indexes]
    if not any(index and index[1] in indexes for index in reads.values()):
        problems.append(f"jobs read through none of {sorted(indexes)}")
    problems += [d for d in details if d.startswith("error:")]
    return problems


def lite_plan(conn: sqlite3.Connection, name: str) -> list[str]:
    query = sql.queries("sqlite")[name]
    params = {n: LITE_PARAMS.get(n, time.time()) for n in re.findall(r":(\w+)", query)}
    try:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", params)]
    except sqlite3.OperationalError as exc:  # e.g. the index it names is gone
        return [f"error: {exc}"]


@pytest.fixture(scope="module")
def lite_history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "aetheris.db"

    async def migrate() -> None:
        store = create_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            f"INSERT INTO jobs ({COLUMNS}, input, queue, priority, head_hash, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, X'7B7D', 'default', 0, 'h', ?)",
            [(*row, row[4]) for row in _rows(time.time())],
        )
        conn.execute(
            "INSERT INTO signals (job_id, seq, name, signal_id, payload, created_at,"
            " consumed_position) SELECT id, 1, 'approve', id, X'7B7D', created_at, 1 FROM jobs"
            " WHERE status IN ('succeeded', 'failed', 'cancelled') AND id LIKE '%0-job'"
        )
    conn.execute("ANALYZE")
    conn.close()
    return path


@pytest.mark.parametrize("name", sorted(LITE_CASES))
def test_sqlite_hot_queries_use_their_indexes(lite_history: Path, name: str) -> None:
    indexes, drop = LITE_CASES[name]
    conn = sqlite3.connect(lite_history, isolation_level=None, cached_statements=0)
    try:
        details = lite_plan(conn, name)
        assert lite_problems(details, indexes) == [], details
        conn.execute("BEGIN")
        if drop is None:  # the primary key's index cannot be dropped: rebuild jobs without it
            conn.execute("ALTER TABLE jobs RENAME TO jobs_keyed")
            conn.execute("CREATE TABLE jobs AS SELECT * FROM jobs_keyed")
        else:
            for statement in drop.split(";"):
                conn.execute(statement)
        without = lite_problems(lite_plan(conn, name), indexes)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert without, f"{name}: the plan did not change when its index was dropped"


def test_sqlite_claims_by_its_index_whatever_the_statistics(tmp_path: Path) -> None:
    """Statistics gathered while no job was pending make every row look pending: the claim
    still reads the pending jobs' index, and takes the one pending job at once."""
    path = tmp_path / "aetheris.db"

    async def migrate() -> None:
        store = create_store(f"sqlite:///{path}")
        await store.open()
        await store.close()

    asyncio.run(migrate())
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=0)
    try:
        rows = [r for r in _rows(time.time()) if r[2] == "parked"]
        conn.executemany(
            f"INSERT INTO jobs ({COLUMNS}, input, queue, priority, head_hash, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, X'7B7D', 'default', 0, 'h', ?)",
            [(*row, row[4]) for row in rows],
        )
        conn.execute("ANALYZE")  # no job pending now
        conn.execute(
            f"INSERT INTO jobs ({COLUMNS}, input, queue, priority, head_hash, updated_at) "
            "VALUES ('new', 'a0', 'pending', 0, 0, NULL, NULL, NULL, X'7B7D', 'default', 0, 'h', 0)"
        )
        details = lite_plan(conn, "pending_candidate")
        assert lite_problems(details, {"jobs_pending"}) == [], details
        query = sql.queries("sqlite")["pending_candidate"]
        params = {n: LITE_PARAMS.get(n, time.time()) for n in re.findall(r":(\w+)", query)}
        assert conn.execute(query, params).fetchone()[0] == "new"
    finally:
        conn.close()
