"""The commit path keeps one pooled connection from commit to commit (see KeptConnection).

What that must not cost: a kept connection the server drops (a restart, a terminated
backend, a pooler recycling it) is given back at its first failed commit and the run's
commit goes through on another, each step journaled once; a pool of one connection keeps
nothing (everything else the store does would wait for it); closing the store leaves no
session behind.
"""

from __future__ import annotations

import psycopg

from aetheris import App, Context, JobStatus
from aetheris.testing import running_worker

STEPS, DROP_AT = 12, 6
COMMIT = "%INSERT INTO events%"


def _sessions(url: str, like: str = "%") -> list[int]:
    """Backends of this test's database other than this one whose last query is ``like``."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND query LIKE %s",
            (like,),
        ).fetchall()
    return [pid for (pid,) in rows]


def _drop_committer(url: str) -> int:
    """Terminate the sessions that last ran a commit: the one the commit path keeps."""
    pids = _sessions(url, COMMIT)
    with psycopg.connect(url, autocommit=True) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


def counting_app(url: str, dropped: list[int], admin_url: str) -> App:
    app = App(url, lease_ttl=5.0)

    def bump(i: int) -> int:
        if i == DROP_AT:
            dropped.append(_drop_committer(admin_url))
        return i + 1

    @app.agent
    async def counter(ctx: Context) -> int:
        total = 0
        for i in range(STEPS):
            total += await ctx.step("bump", bump, i)
        return total

    return app


async def test_a_kept_connection_the_server_drops_is_replaced_and_no_step_is_lost(
    pg_url: str,
) -> None:
    dropped: list[int] = []
    app = counting_app(pg_url, dropped, pg_url)
    async with running_worker(app):
        handle = await app.start("counter")
        assert await handle.result(timeout=60) == sum(range(1, STEPS + 1))
    assert dropped and dropped[0] >= 1  # the kept connection was there, and was killed
    events = await (await app.open_store()).events(handle.job_id)
    positions = [e.position for e in events if e.type.value == "op"]
    assert positions == list(range(STEPS))  # each step once, in order
    await app.close()
    assert _sessions(pg_url) == []  # closing gave the kept connection back, then closed all


async def test_a_pool_of_one_connection_keeps_none_for_commits(pg_url: str) -> None:
    app = counting_app(f"{pg_url}?aetheris_pool_max=1", [], pg_url)
    async with running_worker(app):
        handle = await app.start("counter")
        # Were the one connection kept for commits, the worker's claims, heartbeats and
        # reads would wait for it until the pool's timeout.
        job = await handle.job()
        assert await handle.result(timeout=60) == sum(range(1, STEPS + 1))
    assert (await app.get_job(job.id)).status is JobStatus.SUCCEEDED
    await app.close()
