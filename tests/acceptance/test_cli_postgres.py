"""The CLI and worker processes on PostgreSQL: migrations, a job end to end, an in-doubt fix."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_URL, _admin_execute, _with_db, require_postgres

from .test_cli import Cli, Workers


@pytest.fixture
def empty_pg() -> Iterator[str]:
    require_postgres()
    name = f"aetheris_cli_{uuid.uuid4().hex[:10]}"
    _admin_execute(f"CREATE DATABASE {name}")
    yield _with_db(PG_URL, name)
    _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_cli(tmp_path: Path, empty_pg: str) -> Cli:
    return Cli(tmp_path, empty_pg)


@pytest.fixture
def pg_workers(pg_cli: Cli, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(pg_cli, tmp_path)
    try:
        yield started
    finally:
        started.close()


def test_migrate_check_on_postgres(pg_cli: Cli) -> None:
    check = pg_cli("db", "migrate", "--check")
    assert check.returncode == 1
    assert "migration pending" in check.stdout
    assert re.search(r"schema version (\d+) \(latest \1\)", pg_cli.ok("db", "migrate"))
    assert "pending" not in pg_cli.ok("db", "migrate", "--check")


def test_a_job_end_to_end_and_an_in_doubt_fix_on_postgres(pg_cli: Cli, pg_workers: Workers) -> None:
    pg_workers.start()
    done = pg_cli("start", "place_order", "--input", '{"order_id": "o1"}', "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded"
    assert "ok:" in pg_cli.ok("verify", job["id"])

    assert pg_workers.started[0].stop() == 0
    doomed_worker = pg_workers.start(crash_at="after_dispatch:charge")
    doomed = pg_cli.ok("start", "place_order", "--input", '{"order_id": "o2"}').strip()
    assert doomed_worker.wait(timeout=30) == -9
    pg_workers.start()
    parked = pg_cli.wait_for(doomed, "parked", timeout=30)
    assert parked["park_reason"] == "effect_in_doubt"
    [row] = pg_cli.json("effects", "list", "--in-doubt")
    assert len(pg_cli.lines("charges.log")) == 2
    pg_cli.ok("effects", "resolve", doomed, str(row["position"]), "--committed", '"ch_manual"')
    finished = pg_cli.wait_for(doomed, "succeeded", timeout=30)
    assert finished["result"]["charge"] == "ch_manual"
    assert len(pg_cli.lines("charges.log")) == 2
