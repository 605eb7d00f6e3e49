"""The PostgreSQL store behind a real PgBouncer, started by each test on a free port.

Session pooling works as direct; transaction pooling runs without LISTEN, liveness locks and
prepared statements (idle workers poll, a killed worker's jobs are taken over when its lease
expires); statement pooling is refused with an error that says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from aetheris import App
from aetheris.errors import ConfigurationError
from aetheris.store import create_store
from aetheris.store.port import JobStatus
from aetheris.store.postgres_pooling import detect
from tests.acceptance.pg_workers import database, start_worker, stop_all
from tests.conftest import PG_URL, _with_db
from tests.pgbouncer import pgbouncer

__all__ = ["database"]  # a fixture
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.COMPENSATED}


async def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_auto_tells_direct_session_and_transaction_pooling_apart(database: str) -> None:
    assert await detect(_with_db(PG_URL, database), 5) == "none"
    for mode in ("session", "transaction"):
        with pgbouncer(mode, database) as url:
            assert await detect(url, 5) == mode


async def test_statement_pooling_is_refused_detected_or_named(database: str) -> None:
    with pgbouncer("statement", database) as url:
        store = create_store(url)  # auto
        with pytest.raises(ConfigurationError, match="statement pooling mode"):
            await store.open()
        with pytest.raises(ConfigurationError, match="statement pooling mode"):
            create_store(url + "?aetheris_pgbouncer=statement")
        with pytest.raises(ConfigurationError, match="aetheris_pgbouncer='sometimes'"):
            create_store(url + "?aetheris_pgbouncer=sometimes")


def test_a_worker_behind_statement_pooling_exits_saying_why(database: str, tmp_path: Path) -> None:
    with pgbouncer("statement", database) as url:
        worker = start_worker(url, tmp_path, "statement")
        assert worker.wait(30) != 0
    log = (tmp_path / "worker-statement.log").read_text()
    assert "statement pooling mode" in log and "pool_mode = session or transaction" in log


@pytest.mark.parametrize("mode", ["session", "transaction"])
async def test_workers_behind_pgbouncer_run_jobs_and_survive_a_kill(
    mode: str, database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two worker processes behind PgBouncer run 20 orders to the end, each charged once; one
    worker is killed with SIGKILL mid-job, and its job is finished by the other."""
    with pgbouncer(mode, database) as url:
        client = App(url)
        with caplog.at_level(logging.WARNING, logger="aetheris.postgres"):
            store = await client.open_store()
        assert store.pooling.pgbouncer == mode  # type: ignore[attr-defined]
        warned = [r for r in caplog.records if "transaction pooling" in r.getMessage()]
        assert len(warned) == (1 if mode == "transaction" else 0)
        workers = [start_worker(url, tmp_path, f"{mode}-{i}") for i in range(2)]
        try:
            await wait_until(lambda: _agents_known(client), 30, "workers to register")
            doomed = await client.start("slow_order", {"order_id": "slow", "seconds": 5})
            naps = tmp_path / "naps.log"
            await wait_until(lambda: _exists(naps), 30, "the slow order to nap")
            owner = (await client.get_job(doomed.job_id)).lease_owner
            victim = next(w for w in workers if owner and f":{w.pid}:" in f":{owner}:")
            os.kill(victim.pid, signal.SIGKILL)
            assert victim.wait(10) == -signal.SIGKILL
            jobs = [await client.start("place_order", {"order_id": f"o{i}"}) for i in range(20)]
            for job in jobs:
                assert (await job.result(timeout=60))["order_id"].startswith("o")
            resumed = await doomed.result(timeout=90)
            assert resumed["order_id"] == "slow"
            trace = await (await client.open_store()).events(doomed.job_id)
            claims = [e for e in trace if e.type == "job_claimed"]
            assert len(claims) == 2  # taken over once, after the kill
            assert _lines(naps) == ["slow", "slow"]  # the nap ran again
        finally:
            stop_all(workers)
            await client.close()
    keys = [line.split()[-1] for line in _lines(tmp_path / "charges.log")]
    assert len(keys) == 21 and len(set(keys)) == 21  # one charge per order, none twice
    logs = _worker_logs(tmp_path, mode)
    assert ("transaction pooling" in logs) == (mode == "transaction")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _worker_logs(folder: Path, mode: str) -> str:
    return "".join(p.read_text() for p in folder.glob(f"worker-{mode}-*.log"))


async def _agents_known(app: App) -> bool:
    store = await app.open_store()
    return "place_order" in await store.agents()


async def _exists(path: Path) -> bool:
    return bool(_lines(path))
