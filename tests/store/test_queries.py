"""Both SQL dialects name their queries alike, so a reader finds each statement by one name."""

from __future__ import annotations

import re

from aetheris.store import sql

# Queries one dialect has and the other does not, and why. Anything else must be in both.
SQLITE_ONLY = {
    # No SKIP LOCKED, and none needed with one writer at a time: a claim reads its candidate
    # (three indexed lookups, in the order a claim looks), then takes it with `claim`.
    "expired_candidate": "claim",
    "due_candidate": "claim",
    "pending_candidate": "claim",
    # Webhook claims: PostgreSQL claims and reads in one statement (SKIP LOCKED, RETURNING
    # joined to the subscription); SQLite, with no data-modifying CTE, reads what it took
    # after, and first looks outside any transaction so an idle deliverer takes no lock.
    "due_delivery": "claim_deliveries",
    "claimed_deliveries": "claim_deliveries",
}
POSTGRESQL_ONLY = {
    # Row locks: SQLite's single writer already serializes what these order.
    "lock_job": "control, signals and apply lock the job row first",
    "lock_jobs": "jobs about to be woken are locked before the job that wakes them",
    "lock_keys": "keys a commit takes are locked before its job, as deliveries lock them",
    # Advisory locks and LISTEN: SQLite proves liveness with lock files, and workers poll.
    "migration_lock": "migrations serialized across processes",
    "worker_lock": "a worker's liveness lock",
    "try_lock": "is a worker's liveness lock free",
    "unlock": "release a liveness lock taken to test it",
    "listen": "idle workers wake on a notification",
    "backend_pid": "tell PgBouncer's pooling modes apart (SQLite has no pooler)",
    # The claim's event goes in a second, pipelined statement; SQLite seals the event before
    # its claim statement moves the head, then inserts it with `insert_events`.
    "claim_event": "claim",
    # One pure step's commit with scalar parameters (fewer to dump and bind than `commit`'s
    # arrays); SQLite's commit is several statements run in-process, with no such cost.
    "commit_step": "commit",
    # A long journal's read walks the key, not a scan and a sort (SQLite's planner walks it).
    "walk_the_journal_key": "events",
    # Rate limits across workers: SQLite's buckets are per process (LocalRateLimits).
    "take_token": "a tool's token bucket, shared by every worker",
}


def test_both_dialects_name_their_queries_alike() -> None:
    sqlite, postgresql = set(sql.queries("sqlite")), set(sql.queries("postgresql"))
    assert sqlite - postgresql == set(SQLITE_ONLY)
    assert postgresql - sqlite == set(POSTGRESQL_ONLY)


def test_every_query_the_stores_name_exists() -> None:
    """A query named in a store's code (``Q["name"]`` or a step's ``Run("name", ...)``) is in
    the dialect's file."""
    from pathlib import Path

    import aetheris.store as package

    root = Path(package.__file__).parent
    named = re.compile(r"""(?:Q\[|Run\(|_one\(|_all\(|explain=)\s*"(\w+)\"""")
    for dialect, files in {
        "sqlite": [
            "sqlite.py",
            "sqlite_kv.py",
            "sqlite_tenancy.py",
            "sqlite_keyed.py",
            "sqlite_webhooks.py",
            "sql/steps.py",
        ],
        "postgresql": [
            "postgres.py",
            "postgres_kv.py",
            "postgres_session.py",
            "postgres_tenancy.py",
            "postgres_keyed.py",
            "postgres_webhooks.py",
            "sql/steps.py",
        ],
    }.items():
        used = {m for f in files for m in named.findall((root / f).read_text())}
        assert used, dialect
        assert used <= set(sql.queries(dialect)), (dialect, used - set(sql.queries(dialect)))


def test_the_dialects_have_as_many_migrations_as_the_memory_store_reports() -> None:
    from aetheris.store.memory import LATEST_SCHEMA

    assert len(sql.migrations("sqlite")) == len(sql.migrations("postgresql")) == LATEST_SCHEMA


def test_every_postgresql_query_fits_psycopgs_statement_cache() -> None:
    """psycopg converts a statement's ``%(name)s`` placeholders once and caches the result,
    but only for statements of at most ``MAX_CACHED_STATEMENT_LENGTH`` bytes and
    ``MAX_CACHED_STATEMENT_PARAMS`` parameters; a longer one (the commit statement was) is
    parsed again by regular expressions on every execution, on every step."""
    from psycopg import _queries

    for name, text in sql.queries("postgresql").items():
        size = len(text.encode())
        params = set(re.findall(r"%\((\w+)\)s", text))
        assert size <= _queries.MAX_CACHED_STATEMENT_LENGTH, (name, size)
        assert len(params) <= _queries.MAX_CACHED_STATEMENT_PARAMS, (name, len(params))


def test_a_lone_step_or_model_call_commits_with_the_short_statement() -> None:
    """``commit_step`` writes one event and its blobs; anything else a commit carries (a status,
    ledger rows, webhook notices, anchors, several events) goes through ``commit``."""
    from aetheris.store.sql.rows import commit_form

    one = {
        "id": "j", "epoch": 1, "expect": 3, "count": 4, "hash": "h", "code": "c",
        "recovery": 0, "status": None, "e_positions": None, "n_ids": None, "a_keys": None,
        "seqs": [3], "types": ["op"], "positions": [1], "bodies": [b"{}"], "prevs": ["p"],
        "b_hashes": None, "b_bodies": None,
    }  # fmt: skip
    name, args = commit_form(one)
    assert name == "commit_step"
    assert (args["seq"], args["type"], args["position"], args["prev"]) == (3, "op", 1, "p")
    assert commit_form({**one, "b_hashes": ["x"], "b_bodies": [b"y"]})[0] == "commit_step"
    for other in (
        {"status": "succeeded"},
        {"e_positions": [1]},
        {"n_ids": ["e"]},
        {"a_keys": ["k"]},
        {"seqs": [3, 4]},
        {"seqs": None},
    ):
        assert commit_form({**one, **other}) == ("commit", {**one, **other})
