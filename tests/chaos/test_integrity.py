"""The guarantees where they were found to break, each with real worker processes.

Every test here reproduces a defect found by attacking the guarantees (a crash between an
intent and its outcome followed by a cancel, a deploy in front of an unfinished effect, a
zombie creating a child, ...) and checks, against what the tools recorded outside the runtime,
that it no longer happens, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from aetheris import App, EffectState, JobStatus, ParkReason
from aetheris.errors import EncodingError
from aetheris.journal import EventType, verify_chain
from aetheris.store.port import Store
from aetheris.store.sqlite import sqlite_path

from .harness import Cluster, until, wait_exit, wait_job, wait_stopped, with_fast_reaping

pytestmark = pytest.mark.chaos


@pytest.fixture
def cluster(tmp_path: Path, durable_url: str) -> Iterator[Cluster]:
    chaos = Cluster(tmp_path, with_fast_reaping(durable_url))
    yield chaos
    chaos.stop_all()


async def killed_after_charging(cluster: Cluster, app: App, **options: object) -> str:
    """A job of ``order`` whose worker dies after the charge ran, before its outcome."""
    handle = await app.start("order", {"n": 4}, **options)  # type: ignore[arg-type]
    assert wait_exit(cluster.start_worker(crash_at="after_dispatch:charge")) == -9
    assert len(cluster.lines("charges.log")) == 1
    return handle.job_id


async def in_doubt(app: App, job_id: str) -> list[int]:
    store = await app.open_store()
    rows = await store.effects(job_id=job_id)
    assert not [r for r in rows if r.state is EffectState.INTENT], "an ended job left an intent"
    return [r.position for r in rows if r.state is EffectState.IN_DOUBT]


# -- an end after a crash between intent and outcome settles the ledger ------------------------


async def test_cancel_after_a_crash_mid_effect_leaves_the_effect_in_doubt(cluster: Cluster) -> None:
    app = App(cluster.url)
    job_id = await killed_after_charging(cluster, app)
    await app.cancel(job_id)
    cluster.start_worker()
    job = await wait_job(app, job_id)
    assert job.status is JobStatus.CANCELLED, job.error
    assert await in_doubt(app, job_id) == [3]
    assert job.error is not None and job.error["in_doubt"] == [3]
    [row] = await (await app.open_store()).effects(job_id=job_id, states=[EffectState.IN_DOUBT])
    assert cluster.lines("charges.log") == [row.idempotency_key]
    # The operator records what happened; the ended job stays ended.
    ended = await app.resolve_effect(job_id, 3, committed=True, result="ch-41", by="ops")
    assert ended.status is JobStatus.CANCELLED
    assert await in_doubt(app, job_id) == []
    assert verify_chain(job_id, await (await app.open_store()).events(job_id)).ok
    await app.close()


async def test_a_deadline_passed_after_a_crash_mid_effect_leaves_it_in_doubt(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    job_id = await killed_after_charging(cluster, app, deadline=6.0)  # time to reach the charge
    deadline = (await app.get_job(job_id)).deadline
    assert deadline is not None
    await asyncio.sleep(max(0.0, deadline - time.time()) + 0.1)
    cluster.start_worker()
    job = await wait_job(app, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "DeadlineExceeded"
    assert await in_doubt(app, job_id) == [3]
    assert len(cluster.lines("charges.log")) == 1
    await app.close()


async def test_a_poisoned_job_settles_its_ledger(cluster: Cluster) -> None:
    cluster.extra_env["CHAOS_MAX_RECOVERIES"] = "0"
    app = App(cluster.url)
    job_id = await killed_after_charging(cluster, app)
    cluster.start_worker()
    job = await wait_job(app, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "PoisonJob"
    assert await in_doubt(app, job_id) == [3]
    await app.close()


# -- a code change in front of an unfinished effect --------------------------------------------


async def test_a_step_inserted_before_an_unfinished_effect_parks_instead_of_charging_again(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    handle = await app.start("versioned", {"n": 7})
    assert wait_exit(cluster.start_worker(crash_at="after_dispatch:charge")) == -9
    # The new code's worker checks the journal first (the default): it diverges at the
    # charge's intent, so the job is handed back as it was, for a worker of the old code.
    checking = cluster.start_worker(env={"CHAOS_VERSION": "2"})
    store = await app.open_store()
    await until_async(
        lambda: _released(store, handle.job_id), what="the job handed back by the check"
    )
    job = await app.get_job(handle.job_id)
    assert job.status is JobStatus.PENDING and job.park_reason is None
    assert len(cluster.lines("charges.log")) == 1
    cluster.kill(checking)
    # One that proceeds replays it live: it parks at the divergence, and charges nothing.
    cluster.start_worker(env={"CHAOS_VERSION": "2", "AETHERIS_ON_NEW_CODE": "proceed"})
    job = await wait_job(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.NONDETERMINISM
    assert job.park_detail is not None
    assert "effect intent" in job.park_detail["diff"]
    assert job.park_detail["expected"]["name"] == "charge"
    assert job.park_detail["got"]["kind"] == "now"
    assert len(cluster.lines("charges.log")) == 1, "the charge was dispatched twice"
    # Cancelled, it ends (nothing is compensated through a journal the code does not match).
    await app.cancel(handle.job_id)
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.CANCELLED
    assert await in_doubt(app, handle.job_id) == [0]
    assert len(cluster.lines("charges.log")) == 1
    await app.close()


# -- a zombie creates no child -----------------------------------------------------------------


async def test_a_zombie_parent_creates_no_child_after_it_was_cancelled(cluster: Cluster) -> None:
    app = App(cluster.url)
    handle = await app.start("parent_after_probe", {"n": 2})
    zombie = cluster.start_worker(
        crash_at="after_outcome:probe", env={"AETHERIS_CRASH_ACTION": "stop"}
    )
    wait_stopped(zombie)
    await app.cancel(handle.job_id)
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, timeout=20)
    assert job.status is JobStatus.CANCELLED
    zombie.send_signal(signal.SIGCONT)
    await asyncio.sleep(2.0)  # the zombie runs on: to run_agent and its (fenced) commit
    store = await app.open_store()
    assert await store.get_job(f"{handle.job_id}.1") is None, "the zombie created a child"
    assert cluster.lines("echo.log") == []
    await app.close()


# -- values a child's input is built from are durable with the child ---------------------------


async def test_a_crash_in_the_park_that_creates_a_child_creates_nothing_half(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    handle = await app.start("parent_with_token", {"n": 1})
    assert wait_exit(cluster.start_worker(crash_at="in_append:uuid")) == -9
    store = await app.open_store()
    assert await store.get_job(f"{handle.job_id}.1") is None
    cluster.start_worker()
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.result["child"] == job.result["token"]
    assert cluster.lines("echo.log") == [job.result["token"]]
    await app.close()


# -- an effect that reconcile reports committed is compensated ---------------------------------


async def test_an_effect_reconciled_as_committed_is_compensated_when_the_job_fails(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    handle = await app.start("charge_then_fail", {"n": 3})
    assert wait_exit(cluster.start_worker(crash_at="after_dispatch:charge_rc")) == -9
    cluster.start_worker()
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.COMPENSATED, job.error
    assert job.error is not None and job.error["compensated"] == ["charge_rc"]
    assert len(cluster.lines("charges.log")) == 1
    assert cluster.lines("refunds.log") == cluster.lines("charges.log")
    await app.close()


# -- runtime failures never reach agent code ---------------------------------------------------


def refuse_committed_charges(url: str) -> None:
    """A trigger that makes the database refuse recording a charge's outcome."""
    if url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(url)[0]) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE UPDATE OF state ON effects "
                "WHEN NEW.state = 'committed' AND NEW.tool = 'charge' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        return
    with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.state = 'committed' AND NEW.tool = 'charge' THEN "
            "RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON effects "
            "FOR EACH ROW EXECUTE FUNCTION refuse()"
        )


async def test_a_store_error_recording_an_outcome_is_not_the_agents_to_swallow(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    await app.open_store()  # migrated, so the trigger has a table to go on
    refuse_committed_charges(cluster.url)
    handle = await app.start("swallow", {"n": 4})
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, JobStatus.PARKED, timeout=20)
    # The charge ran; recording it failed; the run was cut short, not the agent's business.
    assert cluster.lines("swallowed.log") == []
    assert job.park_reason is ParkReason.EFFECT_IN_DOUBT
    assert len(cluster.lines("charges.log")) == 1
    events = await (await app.open_store()).events(handle.job_id)
    released = [e.data for e in events if e.type is EventType.JOB_RELEASED]
    assert released and "refused by the test" in released[0]["error"]["message"]
    assert job.recoveries == 1
    await app.close()


async def test_a_result_holding_a_nul_character_fails_the_job_the_same_on_every_store(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    handle = await app.start("nul_result", {"n": 1})
    cluster.start_worker()
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.FAILED
    assert job.error is not None and job.error["type"] == "EncodingError"
    assert "NUL character" in job.error["message"]
    assert job.attempts == 1, "the job was handed back and claimed again"
    with pytest.raises(EncodingError, match="NUL"):
        await app.start("nul_result", {"n": "\x00"})
    await app.close()


# -- the crash point inside the append transaction is inside it --------------------------------


async def test_in_append_stops_the_worker_inside_the_open_transaction(cluster: Cluster) -> None:
    app = App(cluster.url)
    handle = await app.start("order", {"n": 4})
    frozen = cluster.start_worker(
        crash_at="in_append:charge@2", env={"AETHERIS_CRASH_ACTION": "stop"}
    )
    wait_stopped(frozen)
    assert len(cluster.lines("charges.log")) == 1  # dispatched; its outcome is being written
    if cluster.url.startswith("sqlite"):
        other = sqlite3.connect(sqlite_path(cluster.url)[0], timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    else:
        with psycopg.connect(cluster.url.split("?")[0], autocommit=True) as conn:
            states = conn.execute(
                "SELECT state FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
            ).fetchall()
        assert states == [("idle in transaction",)], states
    store = await app.open_store()
    ops = [e for e in await store.events(handle.job_id) if e.type is EventType.OP]
    assert [e.data["name"] for e in ops] == ["lookup", "reserve", "total"]
    cluster.kill(frozen)
    cluster.start_worker()
    job = await wait_job(app, handle.job_id, JobStatus.PARKED)
    assert job.park_reason is ParkReason.EFFECT_IN_DOUBT  # the outcome write was rolled back
    assert len(cluster.lines("charges.log")) == 1
    await app.close()


# -- a stopping worker starts nothing new ------------------------------------------------------


def steps(cluster: Cluster) -> list[str]:
    return cluster.lines("steps.log")


async def test_sigterm_finishes_the_step_in_flight_and_starts_nothing_new(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    handle = await app.start("steps_then_charge", {"n": 3, "seconds": 0.8})
    worker = cluster.start_worker(grace=10)
    await until(lambda: steps(cluster) == ["begin 0"])
    worker.send_signal(signal.SIGTERM)
    assert wait_exit(worker, timeout=10) == 0
    assert steps(cluster) == ["begin 0", "end 0"], "a new step began after the stop"
    job = await app.get_job(handle.job_id)
    assert job.status is JobStatus.PENDING
    cluster.start_worker()
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert steps(cluster) == [f"{w} {i}" for i in range(3) for w in ("begin", "end")]
    assert len(cluster.lines("charges.log")) == 1
    assert await in_doubt(app, handle.job_id) == []
    await app.close()


async def test_sigterm_lets_an_effect_in_flight_land_instead_of_leaving_it_in_doubt(
    cluster: Cluster,
) -> None:
    app = App(cluster.url)
    handle = await app.start("slow_then_charge", {"seconds": 1.0})
    worker = cluster.start_worker(grace=10)
    await until(lambda: bool(cluster.lines("slow.log")))
    worker.send_signal(signal.SIGTERM)
    assert wait_exit(worker, timeout=10) == 0
    assert [line.split()[0] for line in cluster.lines("slow.log")] == ["begin", "end"]
    assert cluster.lines("after_slow.log") == []
    cluster.start_worker()
    job = await wait_job(app, handle.job_id)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert len(cluster.lines("slow.log")) == 2 and len(cluster.lines("after_slow.log")) == 1
    assert await in_doubt(app, handle.job_id) == []
    await app.close()


async def test_a_second_ctrl_c_hands_the_job_back_at_once(cluster: Cluster) -> None:
    app = App(cluster.url)
    handle = await app.start("slow_then_charge", {"seconds": 30.0})
    worker = cluster.start_worker(grace=60)
    await until(lambda: bool(cluster.lines("slow.log")))
    worker.send_signal(signal.SIGINT)
    await asyncio.sleep(0.3)
    assert worker.poll() is None, "one Ctrl-C waits for what is in flight"
    worker.send_signal(signal.SIGINT)
    assert wait_exit(worker, timeout=5) == 0
    job = await app.get_job(handle.job_id)
    assert job.status is JobStatus.PENDING
    assert [line.split()[0] for line in cluster.lines("slow.log")] == ["begin"]
    assert cluster.lines("after_slow.log") == []
    await app.close()


async def _released(store: Store, job_id: str) -> bool:
    events = await store.events(job_id)
    return any(e.type is EventType.JOB_RELEASED and "divergence" in e.data for e in events)


async def until_async(
    predicate: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        await asyncio.sleep(0.05)
