from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from aetheris.store import create_store
from aetheris.store.port import Store

STORE_KINDS = ["memory", "sqlite", "postgres"]
PG_URL = os.environ.get(
    "AETHERIS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_problem() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any reason at all: report it
        return f"PostgreSQL at {PG_URL} is not reachable: {exc}"
    return None


_PG_PROBLEM = _pg_problem()


def require_postgres() -> None:
    """Skip (or, under CI=true, fail) when the test PostgreSQL server is not reachable."""
    if _PG_PROBLEM is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {_PG_PROBLEM}")
    pytest.skip(_PG_PROBLEM)


def _admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def pg_template(worker_id: str) -> Iterator[str]:
    """A migrated database per test process, cloned for each test."""
    require_postgres()
    import asyncio

    name = f"aetheris_tpl_{worker_id}_{os.getpid()}"
    _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin_execute(f"CREATE DATABASE {name}")

    async def migrate() -> None:
        store = create_store(_with_db(PG_URL, name))
        await store.open()
        await store.close()

    asyncio.run(migrate())
    yield name
    _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, cloned from the migrated template."""
    name = f"aetheris_t_{uuid.uuid4().hex[:12]}"
    _admin_execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield _with_db(PG_URL, name)
    _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def store_url_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'aetheris.db'}"
    if kind == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    raise ValueError(kind)


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return store_url_for(request.param, tmp_path, request)


@pytest.fixture(params=["sqlite", "postgres"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that outlives processes: for tests with real worker processes."""
    return store_url_for(request.param, tmp_path, request)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'aetheris.db'}"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = create_store(store_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(autouse=True)
def _no_ambient_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch a developer's AETHERIS_DATABASE_URL, a crash plan or signing keys by
    accident."""
    monkeypatch.delenv("AETHERIS_DATABASE_URL", raising=False)
    monkeypatch.delenv("AETHERIS_CRASH_AT", raising=False)
    monkeypatch.delenv("AETHERIS_SIGNING_KEY", raising=False)
    monkeypatch.delenv("AETHERIS_TRUSTED_KEYS", raising=False)
    monkeypatch.delenv("AETHERIS_PAYLOAD_KEY_DIR", raising=False)


def pytest_report_header() -> list[str]:
    pg = _PG_PROBLEM or f"PostgreSQL at {PG_URL}"
    return [f"aetheris stores under test: {', '.join(STORE_KINDS)}", pg]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Seeds per second per store, from what each sweep shard recorded; where the browser
    tests left their screenshots."""
    seeds: dict[str, float] = defaultdict(float)
    seconds: dict[str, float] = defaultdict(float)
    screenshots: set[str] = set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            props = dict(getattr(report, "user_properties", ()))
            if getattr(report, "when", None) == "call" and "sim_store" in props:
                seeds[props["sim_store"]] += props["sim_seeds"]
                seconds[props["sim_store"]] += props["sim_seconds"]
            if "ui_screenshots" in props:
                screenshots.add(props["ui_screenshots"])
    for folder in sorted(screenshots):
        terminalreporter.write_line(f"web UI screenshots (test artifacts) in {folder}")
    for store in sorted(seeds):
        rate = seeds[store] / max(seconds[store], 1e-9)
        terminalreporter.write_line(
            f"simulation {store}: {seeds[store]:.0f} seeds in {seconds[store]:.1f}s of one "
            f"worker's time, {rate:.1f} seeds/s per worker"
        )
