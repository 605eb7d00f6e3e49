"""Worker processes of the acceptance App on a PostgreSQL database of their own: for the
connection budget and PgBouncer tests."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _admin_execute, require_postgres

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.fixture
def database() -> Iterator[str]:
    """An empty database of the test server: its name."""
    require_postgres()
    name = f"aetheris_pgb_{uuid.uuid4().hex[:10]}"
    _admin_execute(f"CREATE DATABASE {name}")
    yield name
    _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_worker(url: str, world: Path, tag: str, *options: str) -> subprocess.Popen[bytes]:
    """``aetheris worker`` on the acceptance App, this checkout's code; log in ``world``."""
    env = {k: v for k, v in os.environ.items() if k != "AETHERIS_CRASH_AT"}
    env.update(
        AETHERIS_DATABASE_URL=url,
        ACCEPTANCE_WORLD=str(world),
        PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT / "src"), str(ROOT)]),
        PYTHONUNBUFFERED="1",
    )
    command = [sys.executable, "-m", "aetheris", "worker", "--app", "acceptance_app:app"]
    with (world / f"worker-{tag}.log").open("wb") as log:
        return subprocess.Popen(
            [*command, "--concurrency", "4", *options],
            cwd=HERE,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.terminate()
    for proc in workers:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
