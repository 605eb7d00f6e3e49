"""The database goes away mid-commit: the run retries, and nothing is written twice."""

from __future__ import annotations

from typing import Any

from aetheris import App, Context, JobStatus
from aetheris.errors import StoreUnavailable
from aetheris.journal import Event, EventType, verify_chain
from aetheris.store.port import Commit, Lease

from .helpers import run_job


class Flaky:
    """Wraps a store; the n-th commits fail, before or after they were applied."""

    def __init__(self, inner: Any, *, fail_before: set[int], fail_after: set[int]) -> None:
        self.inner = inner
        self.fail_before = fail_before
        self.fail_after = fail_after
        self.commits = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        self.commits += 1
        if self.commits in self.fail_before:
            raise StoreUnavailable("connection refused (injected)")
        sealed: list[Event] = await self.inner.commit(lease, commit)
        if self.commits in self.fail_after:
            raise StoreUnavailable("connection lost before the reply (injected)")
        return sealed


async def test_lost_commits_are_retried_and_lost_replies_not_repeated(store_url: str) -> None:
    app = App(store_url)
    runs = {"a": 0, "b": 0}

    @app.tool(effect="at_most_once")
    async def a() -> int:
        runs["a"] += 1
        return 1

    @app.tool
    async def b() -> int:
        runs["b"] += 1
        return 2

    @app.agent
    async def flow(ctx: Context) -> int:
        return await a() + await b() + await b()

    inner = await app.open_store()
    # commit 1: intent of a (fails before), 3: outcome of a (reply lost), 5: first b (lost)
    app._store = Flaky(inner, fail_before={1, 6}, fail_after={3, 5})  # type: ignore[assignment]
    job = await run_job(app, "flow")
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == 5
    assert runs == {"a": 1, "b": 2}
    events = await inner.events(job.id)
    assert verify_chain(job.id, events).ok
    ops = [(e.position, e.data["name"]) for e in events if e.type is EventType.OP]
    assert ops == [(0, "a"), (1, "b"), (2, "b")]
    await app.close()
