"""A fresh schema (schema.sql) must equal the one the migrations build, on every dialect."""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aetheris.store import create_store, sql
from aetheris.store.postgres import PostgresStore


def _sqlite_catalog(path: Path) -> list[tuple[object, ...]]:
    """Tables by their columns (ALTER TABLE rewrites CREATE text), the rest by normalized SQL."""
    catalog: list[tuple[object, ...]] = []
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "AND name != 'aetheris_schema' ORDER BY type, name"
        ).fetchall()
        for kind, name, text in rows:
            if kind == "table":
                columns = conn.execute(f"PRAGMA table_info({name})").fetchall()
                keys = conn.execute(f"PRAGMA index_list({name})").fetchall()
                catalog.append((kind, name, tuple(columns), len(keys), "WITHOUT ROWID" in text))
            else:
                catalog.append((kind, name, re.sub(r"\s+", " ", text or "")))
    return catalog


def test_sqlite_fresh_schema_equals_migrations(tmp_path: Path) -> None:
    fresh, migrated = tmp_path / "fresh.db", tmp_path / "migrated.db"
    with sqlite3.connect(fresh) as conn:
        conn.executescript(sql.schema("sqlite"))
    with sqlite3.connect(migrated) as conn:
        for step in sql.migrations("sqlite"):
            conn.executescript(step.sql)
    assert _sqlite_catalog(fresh) == _sqlite_catalog(migrated)
    assert len(_sqlite_catalog(fresh)) > 5


_PG_CATALOG = [
    """SELECT table_name, column_name, data_type, is_nullable, column_default
       FROM information_schema.columns WHERE table_schema = 'public'
         AND table_name != 'aetheris_schema' ORDER BY 1, 2""",
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
       WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    """SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
       ORDER BY 1""",
    """SELECT proname, pg_get_functiondef(oid) FROM pg_proc
       WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    # storage parameters, such as the fillfactor of jobs
    """SELECT relname, reloptions FROM pg_class
       WHERE relnamespace = 'public'::regnamespace AND reloptions IS NOT NULL ORDER BY 1""",
]


def _pg_catalog(url: str) -> list[list[tuple[object, ...]]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [conn.execute(q).fetchall() for q in _PG_CATALOG]  # type: ignore[arg-type]


def test_postgres_fresh_schema_equals_migrations(pg_template: str) -> None:
    import psycopg

    from tests.conftest import PG_URL, _admin_execute, _with_db

    names = ["aetheris_fresh_check", "aetheris_migrated_check"]
    for name in names:
        _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _admin_execute(f"CREATE DATABASE {name}")
    try:
        fresh, migrated = (_with_db(PG_URL, n) for n in names)
        with psycopg.connect(fresh, autocommit=True) as conn:
            conn.execute(sql.schema("postgresql").encode())
        with psycopg.connect(migrated, autocommit=True) as conn:
            for step in sql.migrations("postgresql"):
                conn.execute(step.sql.encode())
        assert _pg_catalog(fresh) == _pg_catalog(migrated)
        assert len(_pg_catalog(fresh)[0]) > 30
    finally:
        for name in names:
            _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    from tests.conftest import PG_URL, _admin_execute, _with_db, require_postgres

    require_postgres()
    name = f"aetheris_empty_{uuid.uuid4().hex[:10]}"
    _admin_execute(f"CREATE DATABASE {name}")
    yield _with_db(PG_URL, name)
    _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_migrate_sets_the_version_row_once(empty_url: str) -> None:
    store = create_store(empty_url)
    await store.open(migrate=False)
    try:
        before = await store.schema()
        assert before.current == 0
        assert not before.up_to_date
        after = await store.migrate()
        assert after.up_to_date
        assert after.current == after.latest >= 1
        assert await store.migrate() == after
    finally:
        await store.close()


def test_unknown_url_options_are_refused() -> None:
    from aetheris.errors import ConfigurationError

    store = PostgresStore("postgresql://u@h/db?aetheris_reap_grace=2&sslmode=disable")
    assert store.reap_grace == 2.0
    # The aetheris_ option is taken out; the driver's own stay (with the process's name added).
    assert store.url.startswith("postgresql://u@h/db?sslmode=disable")
    assert "aetheris_" not in store.url
    with pytest.raises(ConfigurationError, match="typo"):
        PostgresStore("postgresql://u@h/db?aetheris_typo=1")


@pytest.mark.parametrize("empty_url", ["postgres"], indirect=True)
async def test_a_schema_migrated_under_a_running_process_is_named(empty_url: str) -> None:
    """Rolling upgrade on PostgreSQL: a newer aetheris adds a column while an older process runs.
    The older process's prepared ``SELECT *`` fails; it says which versions, not a bare error.
    (SQLite re-prepares a statement when the schema changes.)"""
    import psycopg

    from aetheris.errors import SchemaMismatch
    from aetheris.store.port import NewJob

    store = create_store(empty_url)
    await store.open()
    try:
        job, _ = await store.create_job(NewJob(id="j1", agent="a", input={}))
        for _ in range(8):  # past psycopg's prepare threshold: the statement is prepared
            assert await store.get_job(job.id) is not None
        with psycopg.connect(empty_url, autocommit=True) as conn:
            conn.execute("ALTER TABLE jobs ADD COLUMN from_the_future integer")
            conn.execute("UPDATE aetheris_schema SET version = version + 1")
        with pytest.raises(SchemaMismatch, match=r"newer than this code .*restart this process"):
            await store.get_job(job.id)
    finally:
        await store.close()
