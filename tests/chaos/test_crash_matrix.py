"""kill -9 at every write boundary of a step, in a real worker process; a fresh worker recovers.

For each crash point the test checks, against side effects counted outside the runtime:
completed steps are not executed again, an ``at_most_once`` tool happened at most once and is in
doubt exactly when it may have happened unrecorded, an ``idempotent`` tool is re-run with the
same key, and the job ends in the right state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aetheris import App, EffectState, JobStatus, ParkReason
from aetheris.journal import EventType, verify_chain

from .harness import Cluster, wait_exit, wait_job, with_fast_reaping

pytestmark = pytest.mark.chaos


@dataclass(frozen=True)
class Case:
    crash_at: str
    in_doubt: bool
    lookups: int = 1
    reserves: int = 1
    charges_before_resolve: int = 1


CASES = [
    Case("before_intent:charge", in_doubt=False),
    Case("after_intent:charge", in_doubt=True, charges_before_resolve=0),
    Case("after_dispatch:charge", in_doubt=True),
    Case("in_append:charge@1", in_doubt=False),
    Case("in_append:charge@2", in_doubt=True),
    Case("after_outcome:charge", in_doubt=False),
    Case("after_intent:reserve", in_doubt=False),
    Case("after_dispatch:reserve", in_doubt=False, reserves=2),
    Case("in_append:reserve@2", in_doubt=False, reserves=2),
    Case("after_dispatch:lookup", in_doubt=False, lookups=2),
    Case("in_append:lookup", in_doubt=False, lookups=2),
    Case("after_outcome:lookup", in_doubt=False),
]


@pytest.fixture
def cluster(tmp_path: Path, durable_url: str) -> Iterator[Cluster]:
    chaos = Cluster(tmp_path, with_fast_reaping(durable_url))
    yield chaos
    chaos.stop_all()


async def crash_then_recover(cluster: Cluster, crash_at: str, agent: str) -> tuple[App, str]:
    """Start a job; a worker armed with ``crash_at`` dies there; a fresh worker takes over."""
    app = App(cluster.url)
    handle = await app.start(agent, {"n": 4})
    doomed = cluster.start_worker(crash_at=crash_at)
    code = wait_exit(doomed)
    assert code == -9, f"the worker should have been SIGKILLed at {crash_at}\n{cluster.logs()}"
    cluster.start_worker()
    return app, handle.job_id


@pytest.mark.parametrize("case", CASES, ids=[c.crash_at for c in CASES])
async def test_kill_at_write_boundary(cluster: Cluster, case: Case) -> None:
    app, job_id = await crash_then_recover(cluster, case.crash_at, "order")
    wanted = (JobStatus.PARKED, JobStatus.SUCCEEDED)
    job = await wait_job(app, job_id, *wanted)
    store = await app.open_store()
    charges = cluster.lines("charges.log")
    assert len(charges) == case.charges_before_resolve, cluster.logs()
    if case.in_doubt:
        assert job.status is JobStatus.PARKED, job
        assert job.park_reason is ParkReason.EFFECT_IN_DOUBT
        [row] = await store.effects(job_id=job_id, states=[EffectState.IN_DOUBT])
        assert row.tool == "charge"
        if charges:
            assert charges == [row.idempotency_key]
            await app.resolve_effect(job_id, row.position, committed=True, result="ch-41")
        else:
            await app.resolve_effect(job_id, row.position, not_executed=True)
        job = await wait_job(app, job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result == {"n": 4, "charge": "ch-41"}
    charges = cluster.lines("charges.log")
    assert len(charges) == 1, "an at_most_once tool ran twice"
    assert len(cluster.lines("lookups.log")) == case.lookups
    reserves = cluster.lines("reserves.log")
    assert len(reserves) == case.reserves
    assert len(set(reserves)) == 1, "an idempotent re-run must reuse the idempotency key"
    assert len(cluster.lines("notifies.log")) == 1
    events = await store.events(job_id)
    assert verify_chain(job_id, events).ok
    claims = [e.data for e in events if e.type is EventType.JOB_CLAIMED]
    assert claims[1]["recovered_from"] == claims[0]["owner"]
    await app.close()


@pytest.mark.parametrize("crash_at", ["after_intent:charge_r", "after_dispatch:charge_r"])
async def test_reconcile_settles_the_doubt_without_an_operator(
    cluster: Cluster, crash_at: str
) -> None:
    app, job_id = await crash_then_recover(cluster, crash_at, "order_reconciled")
    job = await wait_job(app, job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert len(cluster.lines("charges.log")) == 1
    resolved = [
        e.data
        for e in await (await app.open_store()).events(job_id)
        if e.type is EventType.EFFECT_RESOLVED
    ]
    expected = "not_executed" if crash_at.startswith("after_intent") else "committed"
    assert [r["resolution"] for r in resolved] == [expected]
    assert resolved[0]["by"] == "reconcile"
    await app.close()
