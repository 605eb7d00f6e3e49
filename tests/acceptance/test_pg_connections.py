"""The connection budget of a worker and a server on PostgreSQL, counted in pg_stat_activity.

A worker holds its pool (``pool_min`` to ``pool_max`` connections) and one listening session;
a server holds its pool. Each names itself (``application_name``) so an operator can count them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

from aetheris import App
from tests.acceptance.pg_workers import HERE, ROOT, database, start_worker, stop_all
from tests.conftest import PG_URL, _with_db
from tests.pgbouncer import free_port

__all__ = ["database"]  # a fixture


def connections(database: str, application_name: str) -> int:
    """Sessions of ``application_name`` on ``database``, as the server counts them."""
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (database, application_name),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def sample_while(database: str, name: str, work: asyncio.Task[object]) -> list[int]:
    """Count ``name``'s sessions every 20 ms until ``work`` is done."""
    counts = []
    while not work.done():
        counts.append(await asyncio.to_thread(connections, database, name))
        await asyncio.sleep(0.02)
    await work
    return counts


async def test_a_worker_holds_its_pool_and_one_listening_session(
    database: str, tmp_path: Path
) -> None:
    url = _with_db(PG_URL, database)
    client = App(url)
    await client.open_store()
    worker = start_worker(url, tmp_path, "budget", "--pool-max", "3", "--concurrency", "8")
    try:
        deadline = time.monotonic() + 30
        while "place_order" not in await (await client.open_store()).agents():
            assert time.monotonic() < deadline, "the worker never registered"
            await asyncio.sleep(0.1)
        idle = connections(database, "aetheris-worker")
        assert 2 <= idle <= 4  # pool_min (1) + the listening session, up to pool_max + 1

        async def orders() -> object:
            jobs = [await client.start("place_order", {"order_id": f"o{i}"}) for i in range(40)]
            return [await job.result(timeout=60) for job in jobs]

        counts = await sample_while(database, "aetheris-worker", asyncio.create_task(orders()))
        print("worker", idle, sorted(set(counts)))
        assert counts and max(counts) <= 3 + 1  # --pool-max 3, plus the listening session
        assert min(counts) >= 2
    finally:
        stop_all([worker])
        await client.close()
    assert worker.returncode == 0
    assert connections(database, "aetheris-worker") == 0


async def test_a_server_holds_its_pool_sized_by_the_environment(database: str) -> None:
    url = _with_db(PG_URL, database)
    port = free_port()
    server = start_server(url, port, AETHERIS_PG_POOL_MAX="2")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server never got ready"
                await asyncio.sleep(0.1)
            assert connections(database, "aetheris-server") >= 1

            async def requests() -> object:
                for _ in range(5):
                    answers = await asyncio.gather(*(http.get("/v1/jobs") for _ in range(20)))
                    assert all(a.status_code == 200 for a in answers)
                return None

            counts = await sample_while(
                database, "aetheris-server", asyncio.create_task(requests())
            )
        print("server", sorted(set(counts)))
        assert counts and max(counts) <= 2  # AETHERIS_PG_POOL_MAX=2
        assert min(counts) >= 1
    finally:
        server.terminate()
        server.wait(15)


def start_server(url: str, port: int, **env: str) -> subprocess.Popen[bytes]:
    """``aetheris server --no-auth`` on ``url`` (this checkout's code), with ``env`` set."""
    environment = {k: v for k, v in os.environ.items() if k != "AETHERIS_DATABASE_URL"}
    environment.update(env, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    command = [sys.executable, "-m", "aetheris", "--database-url", url, "server"]
    return subprocess.Popen(
        [*command, "--no-auth", "--port", str(port)],
        cwd=HERE,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
