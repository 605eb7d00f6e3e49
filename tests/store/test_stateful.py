"""Stateful property tests of the store port: random sequences of operations on every store.

One Hypothesis ``RuleBasedStateMachine`` drives a store (memory, SQLite or PostgreSQL) and the
pure-Python model of :mod:`tests.store.store_model` side by side, one rule per port operation,
and after every step checks that the store holds exactly what the model says, that every
journal verifies, and that no job sleeps on something that is already there.

Rules cannot be coroutines, so each runs on an event loop the test owns; time is a fake clock
the model advances, on PostgreSQL too (see :mod:`tests.store.stateful_stores`), so lease
expiry and timers follow the model on all three stores.

Budgets: the ``aetheris-ci`` profile (the default) runs the file in well under a minute, with
a fixed stream of examples per store; ``AETHERIS_HYPOTHESIS_PROFILE=nightly`` runs a long
random sweep (about ten minutes a store). Neither writes an example database. The names are
prefixed because Hypothesis's built-in ``ci`` profile is process-wide.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, event, seed, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from aetheris.errors import LeaseLost
from aetheris.journal import EventDraft, EventType
from aetheris.store.port import (
    ClaimFilter,
    Commit,
    Control,
    EffectClass,
    EffectState,
    EffectWrite,
    Guard,
    Head,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    StatusWrite,
    job_wake,
    signal_wake,
)
from tests.store.stateful_checks import (
    check_inboxes,
    check_jobs,
    check_journals,
    check_ledger,
    check_next_wake,
    check_no_sleeping_on_what_is_there,
    model_signal_view,
    read,
    signal_view,
)
from tests.store.stateful_stores import START, Backend, backend_for
from tests.store.store_model import Model, Refusal

T = TypeVar("T")

settings.register_profile(
    "aetheris-ci",
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    database=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
    # A failure must be reported inside the per-test timeout: the first bug only, and no
    # explain phase (it reruns the failing case under a tracer, minutes on these steps).
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile(
    "aetheris-nightly",
    max_examples=200,
    stateful_step_count=80,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE_NAME = os.environ.get("AETHERIS_HYPOTHESIS_PROFILE", "ci")
PROFILE = settings.get_profile(f"aetheris-{PROFILE_NAME}")
# Hypothesis shrinks a failure for up to five minutes; the suite stops a test after two. Under
# the ci profile shrinking stops sooner, so that a failure is reported (its example shrunk as
# far as it got) rather than killed by the timeout. Hypothesis has no setting for this; its
# engine's module constant is patched, loudly failing if a new version renames it.
SHRINK_SECONDS = {"ci": 45}
TIMEOUT_SECONDS = {"ci": 120, "nightly": 3600}  # per store; the suite's default is 120
# A step costs ~1 ms in memory, ~2 ms on SQLite and ~10 ms on PostgreSQL: the cheap stores get
# more examples in the same wall time.
EXAMPLES_PER_POSTGRES_EXAMPLE = {"memory": 8, "sqlite": 3, "postgresql": 1}
# Under a derandomized profile each store gets its own fixed stream of examples: with one
# stream, PostgreSQL would only replay the first few sequences the memory store ran.
SEEDS = {"memory": 1, "sqlite": 2, "postgresql": 3}

AGENTS = ("a", "b")
QUEUES = ("default", "q1")
OWNERS = ("w0", "w1", "w2")
INPUTS: tuple[dict[str, Any], ...] = ({}, {"n": 1}, {"n": 2}, {"s": "x", "l": [1, 2]})
PAYLOADS = (None, {"ok": True}, [1, "a"], 3)
SIGNAL_NAMES = ("go", "stop")
TTLS = (5.0, 30.0)
PICKS = st.integers(min_value=0, max_value=63)
LEASE_PICKS = st.integers(min_value=0, max_value=3)  # among the latest leases
RARELY = st.sampled_from((False,) * 9 + (True,))  # True about one draw in ten
GHOST = "ghost"
LEDGER_SIZE = 4  # positions 0-3: few enough that rows get written again and again

# Store defects this test found and reported, still open. Each is pinned by a plain test in
# test_stateful_regressions.py that fails until the store is fixed. Meanwhile the machine steers
# around them, so that it keeps hunting and a new failure is not hidden behind a known one;
# delete a name when its fix lands and the machine draws those steps again (with
# AETHERIS_STATEFUL_EXERCISE_OPEN=1 it draws them anyway, to try a fix).
OPEN_DEFECTS: frozenset[str] = frozenset()
EXERCISE_OPEN = os.environ.get("AETHERIS_STATEFUL_EXERCISE_OPEN") == "1"


def exercise(defect: str) -> bool:
    """Whether to draw the steps that reach ``defect`` (an open one only on request)."""
    return EXERCISE_OPEN or defect not in OPEN_DEFECTS


# kind -> (expected state, new state) of a ledger write; None: an insert.
WRITE_KINDS: dict[str, tuple[EffectState | None, EffectState]] = {
    "intent": (None, EffectState.INTENT),
    "commit": (EffectState.INTENT, EffectState.COMMITTED),
    "fail": (EffectState.INTENT, EffectState.FAILED),
    "doubt": (EffectState.INTENT, EffectState.IN_DOUBT),
    "retry": (EffectState.NOT_EXECUTED, EffectState.INTENT),
    "compensate": (EffectState.COMMITTED, EffectState.COMPENSATED),
}
END_EVENTS = {
    JobStatus.SUCCEEDED: EventType.JOB_SUCCEEDED,
    JobStatus.FAILED: EventType.JOB_FAILED,
    JobStatus.CANCELLED: EventType.JOB_CANCELLED,
    JobStatus.COMPENSATED: EventType.JOB_COMPENSATED,
}
NOT_ENDED = frozenset({JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PARKED})
GUARDS = {
    "in_doubt": Guard(frozenset({JobStatus.PARKED}), frozenset({ParkReason.EFFECT_IN_DOUBT})),
    "not_ended": Guard(NOT_ENDED),
}
PARKINGS = (ParkReason.SIGNAL, ParkReason.CHILD, ParkReason.TIMER, ParkReason.PAUSED)


# -- the machine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """A lease some worker got, with the journal head it saw then (stale once it moved)."""

    lease: Lease
    head: Head


class StoreMachine(RuleBasedStateMachine):
    """Random sequences of port operations, each checked against :class:`Model`."""

    jobs = Bundle[str]("jobs")

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend
        backend.set_time(START)
        self.model = Model(now=START)
        self.store = backend.fresh()
        self.held: list[Held] = []
        self.heads: dict[str, Head] = {}
        self.epochs: dict[str, int] = {}
        self.ids = itertools.count()

    def teardown(self) -> None:
        self.backend.release(self.store)

    # -- helpers ---------------------------------------------------------------------------

    def expect(self, refusal: Refusal, coro: Coroutine[Any, Any, T]) -> T | None:
        """Run ``coro``: it must raise ``refusal`` (and return None here) or, if None, succeed."""
        raised: BaseException | None = None
        try:
            value = self.backend.run(coro)
        except (Exception, LeaseLost) as exc:
            raised = exc
        operation = getattr(coro, "__name__", "?")
        event(f"{operation}: {type(raised).__name__ if raised else 'applied'}")
        if raised is not None:
            expected = refusal is not None and isinstance(raised, refusal)
            assert expected, f"the store raised {raised!r}; the model expected {refusal}"
            return None
        assert refusal is None, f"the store accepted what the model refuses with {refusal}"
        return value

    def held_lease(self, pick: int) -> Held:
        """Picks 0 and 1 take a good lease, 2 and 3 a stale one (latest first), if there is one.

        Most leases ever issued are stale, so a uniform pick would mostly test fencing.
        """
        good, stale = self.good_leases(), self.stale_leases()
        first, second = (good, stale) if pick < 2 else (stale, good)
        chosen = first or second
        return chosen[pick % len(chosen)]

    def good_lease(self, pick: int) -> Held:
        good = self.good_leases()
        return good[pick % len(good)]

    def new_id(self) -> str:
        return f"j{next(self.ids)}"

    def has_jobs(self) -> bool:
        return bool(self.model.jobs)

    def has_leases(self) -> bool:
        return bool(self.held)

    def good_leases(self) -> list[Held]:
        """Leases that still hold, the latest first."""
        return [h for h in reversed(self.held) if self.model.jobs[h.lease.job_id].holds(h.lease)]

    def stale_leases(self) -> list[Held]:
        """Leases fenced by a later claim or control-plane write, or whose job left running."""
        good = self.good_leases()
        return [h for h in reversed(self.held) if h not in good]

    def has_good_lease(self) -> bool:
        return bool(self.good_leases())

    def has_stale_lease(self) -> bool:
        return bool(self.stale_leases())

    def ledger_write(self, job_id: str, kind: str, position: int) -> EffectWrite:
        expect, state = WRITE_KINDS[kind]
        current = self.model.effects.get((job_id, position))
        return EffectWrite(
            position,
            f"tool{position}",
            EffectClass.AT_MOST_ONCE,
            f"args{position}",
            f"{job_id}:{position}",
            state,
            result={"at": position} if state is EffectState.COMMITTED else None,
            error={"type": "Boom", "message": "no"} if state is EffectState.FAILED else None,
            attempt=(current.attempt if current else 1) + (kind == "retry"),
            expect=expect,
        )

    def ledger_position(self, job_id: str, kind: str, pick: int) -> int:
        """A row in the state ``kind`` expects, if the job has one; else the picked position.

        So most writes follow a row's life (intent, then an outcome, ...) and some expect a
        state the row is not in, which must be a Conflict.
        """
        expect, _ = WRITE_KINDS[kind]
        fits = [
            p
            for p in range(LEDGER_SIZE)
            if getattr(self.model.effects.get((job_id, p)), "state", None) == expect
        ]
        return fits[pick % len(fits)] if fits else pick % LEDGER_SIZE

    def receipts(self, job_id: str, picks: list[int]) -> list[tuple[int, int]]:
        """(signal seq, journal position) pairs; a pick may name a signal received before."""
        inbox = self.model.signals.get(job_id, [])
        return [(inbox[p % len(inbox)].seq, 100 + n) for n, p in enumerate(picks) if inbox]

    def commit(self, lease: Lease, commit: Commit) -> None:
        refusal = self.model.commit(lease, commit)
        sealed = self.expect(refusal, self.store.commit(lease, commit))
        if sealed is not None:
            assert [e.type for e in sealed] == [d.type for d in commit.events]

    def create(self, new: NewJob) -> MultipleResults[str]:
        """Create a job; a new one joins the ``jobs`` bundle."""
        refusal, expected_id, created = self.model.create_job(new)
        found = self.expect(refusal, self.store.create_job(new))
        if found is None:
            return multiple()
        assert (found[0].id, found[1]) == (expected_id, created)
        return multiple(new.id) if created else multiple()

    # -- jobs ------------------------------------------------------------------------------

    @rule(
        target=jobs,
        agent=st.sampled_from(AGENTS),
        queue=st.sampled_from(QUEUES),
        priority=st.integers(0, 2),
        key=st.sampled_from((None, None, "k0", "k1")),
        payload=st.integers(0, len(INPUTS) - 1),
        delay=st.sampled_from((None, 5.0)),
        reuse_id=RARELY,
    )
    def create_job(
        self,
        agent: str,
        queue: str,
        priority: int,
        key: str | None,
        payload: int,
        delay: float | None,
        reuse_id: bool,
    ) -> MultipleResults[str]:
        """Keys return the same job for the same request; a taken id is a Conflict."""
        job_id = list(self.model.jobs)[-1] if reuse_id and self.has_jobs() else self.new_id()
        run_at = None if delay is None else self.model.now + delay
        return self.create(NewJob(job_id, agent, INPUTS[payload], key, queue, priority, run_at))

    @rule(target=jobs, parent=jobs, agent=st.sampled_from(AGENTS))
    def create_child(self, parent: str, agent: str) -> MultipleResults[str]:
        """A child of any job, ended or not: cancels cascade down such trees."""
        return self.create(NewJob(self.new_id(), agent, {}, parent_id=parent))

    # -- ownership -------------------------------------------------------------------------

    @precondition(has_jobs)
    @rule(
        owner=st.sampled_from(OWNERS),
        agents=st.sampled_from((AGENTS, ("a",), ("b",))),
        queues=st.sampled_from((None, ("default",), ("q1",))),
        ttl=st.sampled_from(TTLS),
    )
    def claim(
        self, owner: str, agents: tuple[str, ...], queues: tuple[str, ...] | None, ttl: float
    ) -> None:
        """Expired leases, then due timers, then pending jobs; each claim is a new epoch."""
        where = ClaimFilter(agents, queues)
        allowed = self.model.claimable(where)
        claim = self.backend.run(self.store.claim(owner, ttl, where))
        event(f"claim: {'nothing' if not allowed else self.model.jobs[min(allowed)].status}")
        if not allowed:
            assert claim is None, f"claimed {claim.job.id}: the model has nothing to claim"
            return
        assert claim is not None and claim.job.id in allowed, f"{claim} not in {allowed}"
        recovered = self.model.take(claim.job.id, owner, ttl)
        assert claim.recovered_from == recovered
        epoch = self.model.jobs[claim.job.id].lease_epoch
        assert claim.lease == Lease(claim.job.id, epoch, owner)
        assert claim.job.lease_epoch == epoch and claim.job.status is JobStatus.RUNNING
        claimed = self.backend.run(self.store.events(claim.job.id))[-1]
        attempt = self.model.jobs[claim.job.id].attempts
        assert (claimed.type, claimed.data) == (
            EventType.JOB_CLAIMED,
            {"owner": owner, "epoch": epoch, "attempt": attempt, "recovered_from": recovered},
        )
        self.held.append(Held(claim.lease, Head(claim.job.event_count, claim.job.head_hash)))

    @precondition(has_leases)
    @rule(picks=st.lists(LEASE_PICKS, min_size=1, max_size=3), ttl=st.sampled_from(TTLS))
    def heartbeat(self, picks: list[int], ttl: float) -> None:
        """Extends held leases, reports lost ones and the control requested of held jobs."""
        leases = list({h.lease.job_id: h.lease for h in map(self.held_lease, picks)}.values())
        expected = self.model.heartbeat(leases, ttl)
        assert self.backend.run(self.store.heartbeat(leases, ttl)) == expected

    def time_matters(self) -> bool:
        """Whether a lease, a timer or a delayed start would notice the clock move."""
        now = self.model.now
        return any(
            job.status is JobStatus.RUNNING
            or job.wake_at is not None
            or (job.status is JobStatus.PENDING and job.run_at > now)
            for job in self.model.jobs.values()
        )

    @precondition(time_matters)
    @rule(seconds=st.sampled_from((1.0, 4.0, 10.0, 31.0)))
    def advance_clock(self, seconds: float) -> None:
        """Past a lease's expiry another owner may claim the job, fencing the old lease."""
        self.model.now += seconds
        self.backend.set_time(self.model.now)

    # -- fenced writes ---------------------------------------------------------------------

    @precondition(has_good_lease)
    @rule(
        lease=LEASE_PICKS,
        events=st.integers(0, 2),
        writes=st.lists(st.tuples(st.sampled_from(list(WRITE_KINDS)), PICKS), max_size=2),
        consume=st.lists(PICKS, max_size=2),
        head=st.sampled_from(("current", "claimed", "unsaid")),
    )
    def commit_step(
        self,
        lease: int,
        events: int,
        writes: list[tuple[str, int]],
        consume: list[int],
        head: str,
    ) -> None:
        """Events, ledger writes and signal receipts in one fenced transaction.

        A head from before the lease's own later commits, a ledger row not in the expected
        state, or a signal already received is a Conflict, and nothing is written. Two writes
        of one ledger row, or two receipts of one signal, in one commit are drawn too (open store
        defect: the stores disagree on them).
        """
        held = self.good_lease(lease)
        job_id = held.lease.job_id
        ledger = [
            self.ledger_write(job_id, kind, self.ledger_position(job_id, kind, pick))
            for kind, pick in writes
        ]
        if not exercise("a commit may name one ledger row or one signal twice"):
            ledger = list({write.position: write for write in ledger}.values())
            consume = consume[:1]
        heads = {"current": self.heads.get(job_id), "claimed": held.head, "unsaid": None}
        commit = Commit(
            events=[EventDraft(EventType.OP, {"n": n}, n) for n in range(events)],
            effects=ledger,
            consume=self.receipts(job_id, consume),
            head=heads[head],
        )
        self.commit(held.lease, commit)

    @precondition(has_stale_lease)
    @rule(lease=LEASE_PICKS, shape=st.sampled_from(("step", "park", "end")))
    def commit_stale(self, lease: int, shape: str) -> None:
        """A fenced-out worker writes: LeaseLost, and nothing of it lands."""
        stale = self.stale_leases()[lease % len(self.stale_leases())].lease
        statuses = {
            "step": None,
            "park": StatusWrite(JobStatus.PARKED, ParkReason.SIGNAL, wake_on=signal_wake("go")),
            "end": StatusWrite(JobStatus.SUCCEEDED, result="zombie"),
        }
        commit = Commit(
            [EventDraft(EventType.OP, {"zombie": True}, 0)],
            [
                self.ledger_write(
                    stale.job_id, "intent", self.ledger_position(stale.job_id, "intent", 0)
                )
            ],
            statuses[shape],
            self.heads.get(stale.job_id),
        )
        self.commit(stale, commit)

    @precondition(has_good_lease)
    @rule(
        lease=LEASE_PICKS,
        reason=st.sampled_from(PARKINGS),
        name=st.sampled_from(SIGNAL_NAMES),
        awaited=PICKS,
        timeout=st.sampled_from((None, 5.0, 20.0)),
        receipt=st.none() | PICKS,
    )
    def commit_park(
        self,
        lease: int,
        reason: ParkReason,
        name: str,
        awaited: int,
        timeout: float | None,
        receipt: int | None,
    ) -> None:
        """Park on a signal (with a timeout), a child, a timer or for a pause.

        It may receive a signal in the same commit (one wait ends, the next begins): that one
        no longer counts as waiting in the inbox, another of the same name does.
        """
        held = self.good_lease(lease)
        job_id = held.lease.job_id
        wake_at = None if timeout is None else self.model.now + timeout
        wake_on: str | None = None
        if reason is ParkReason.SIGNAL:
            wake_on = signal_wake(name)
        elif reason is ParkReason.CHILD:
            wake_on = job_wake(self.awaited_job(job_id, awaited))
        elif reason is ParkReason.TIMER:
            wake_at = self.model.now + (timeout or 1.0)
        else:
            wake_at = None
        status = StatusWrite(JobStatus.PARKED, reason, wake_on=wake_on, wake_at=wake_at)
        event = EventDraft(EventType.JOB_PARKED, {"reason": reason.value})
        receipts = self.receipts(job_id, [] if receipt is None else [receipt])
        commit = Commit([event], status=status, head=self.heads.get(job_id), consume=receipts)
        self.commit(held.lease, commit)

    @precondition(has_good_lease)
    @rule(target=jobs, lease=LEASE_PICKS, agent=st.sampled_from(AGENTS))
    def run_child(self, lease: int, agent: str) -> MultipleResults[str]:
        """Start a child agent and park until it ends (``ctx.run_agent``).

        Two port calls today; creating the child is to become part of the fenced commit.
        """
        held = self.good_lease(lease)
        parent, child = held.lease.job_id, self.new_id()
        created = self.create(NewJob(child, agent, {}, parent_id=parent))
        status = StatusWrite(JobStatus.PARKED, ParkReason.CHILD, wake_on=job_wake(child))
        event = EventDraft(EventType.JOB_PARKED, {"reason": "child", "child": child})
        self.commit(held.lease, Commit([event], status=status, head=self.heads.get(parent)))
        return created

    def unsettled(self) -> list[Held]:
        """Good leases of jobs with an intent and no outcome: what a recovering worker finds."""
        intents = {
            j for (j, _), row in self.model.effects.items() if row.state is EffectState.INTENT
        }
        return [h for h in self.good_leases() if h.lease.job_id in intents]

    @precondition(lambda self: bool(self.unsettled()))
    @rule(lease=LEASE_PICKS)
    def commit_doubt(self, lease: int) -> None:
        """Intents without an outcome become in doubt; the job parks for an operator."""
        held = self.unsettled()[lease % len(self.unsettled())]
        job_id = held.lease.job_id
        writes = [
            self.ledger_write(job_id, "doubt", position)
            for (owner, position), row in self.model.effects.items()
            if owner == job_id and row.state is EffectState.INTENT
        ]
        events = [EventDraft(EventType.EFFECT_IN_DOUBT, {}, w.position) for w in writes]
        events.append(EventDraft(EventType.JOB_PARKED, {"reason": "effect_in_doubt"}))
        status = StatusWrite(JobStatus.PARKED, ParkReason.EFFECT_IN_DOUBT)
        self.commit(held.lease, Commit(events, writes, status, self.heads.get(job_id)))

    def awaited_job(self, job_id: str, pick: int) -> str:
        """One of the job's children (ended or not), or one that never came to be.

        Only a parent waits on a job: a child's last commit wakes its parent and no one else.
        """
        children = [j.id for j in self.model.children(job_id)] or [GHOST]
        return children[pick % len(children)]

    @precondition(has_good_lease)
    @rule(lease=LEASE_PICKS, status=st.sampled_from(list(END_EVENTS)))
    def commit_end(self, lease: int, status: JobStatus) -> None:
        """End the job; a child's last commit wakes its parent (``Commit.wake``)."""
        held = self.good_lease(lease)
        job_id = held.lease.job_id
        parent = self.model.jobs[job_id].parent_id
        ok = status is JobStatus.SUCCEEDED
        write = StatusWrite(
            status,
            result={"done": job_id} if ok else None,
            error=None if ok else {"type": "Ended", "message": status.value},
        )
        commit = Commit(
            [EventDraft(END_EVENTS[status], {})],
            status=write,
            head=self.heads.get(job_id),
            wake=[(parent, job_wake(job_id))] if parent else [],
        )
        self.commit(held.lease, commit)

    @precondition(has_good_lease)
    @rule(lease=LEASE_PICKS, delay=st.sampled_from((0.0, 5.0)))
    def commit_release(self, lease: int, delay: float) -> None:
        """Hand the job back (a retry after a backoff): pending again at ``run_at``."""
        lease_ = self.good_lease(lease).lease
        status = StatusWrite(JobStatus.PENDING, run_at=self.model.now + delay)
        event = EventDraft(EventType.JOB_RELEASED, {})
        self.commit(lease_, Commit([event], status=status, head=self.heads.get(lease_.job_id)))

    # -- control plane ---------------------------------------------------------------------

    @rule(
        job=jobs,
        row=PICKS,
        guard=st.sampled_from(sorted(GUARDS)),
        state=st.sampled_from(
            (EffectState.COMMITTED, EffectState.NOT_EXECUTED, EffectState.FAILED)
        ),
        expect=st.sampled_from((EffectState.IN_DOUBT, EffectState.INTENT)),
        receipt=st.none() | PICKS,
        missing=RARELY,
    )
    def apply_resolve(
        self,
        job: str,
        row: int,
        guard: str,
        state: EffectState,
        expect: EffectState,
        receipt: int | None,
        missing: bool,
    ) -> None:
        """An operator resolves an in-doubt effect: guarded, it fences out any holder.

        The row is one of the ledger's, in-doubt ones first (``job`` serves while the ledger
        is empty); the guard and the expected state may not hold, which is a Conflict. A
        receipt of a signal rides along sometimes (open store defect: the memory store bumps
        the epoch before it finds the signal already received, so a refused apply still
        fences the holder).
        """
        rows = self.ledger_rows() or [(job, 0)]
        job_id, position = rows[row % len(rows)]
        job_id = GHOST if missing else job_id
        write = self.ledger_write(job_id, "commit", position)
        write = dataclasses.replace(write, state=state, expect=expect)
        events = [EventDraft(EventType.OP, {"resolved": state.value}), _resumed()]
        if not exercise("a refused apply still fences the lease holder"):
            receipt = None
        receipts = self.receipts(job_id, [] if receipt is None else [receipt])
        commit = Commit(events, [write], StatusWrite(JobStatus.PENDING), consume=receipts)
        refusal = self.model.apply(job_id, commit, GUARDS[guard])
        found = self.expect(refusal, self.store.apply(job_id, commit, GUARDS[guard]))
        if found is not None:
            assert found.lease_epoch == self.model.jobs[job_id].lease_epoch

    def ledger_rows(self) -> list[tuple[str, int]]:
        """(job, position) of every ledger row, the in-doubt ones (what operators settle) first."""
        effects = self.model.effects
        return sorted(effects, key=lambda k: (effects[k].state is not EffectState.IN_DOUBT, k))

    @rule(
        job=jobs,
        name=st.sampled_from(SIGNAL_NAMES),
        signal=st.integers(0, 2),
        payload=st.integers(0, len(PAYLOADS) - 1),
        missing=RARELY,
    )
    def send_signal(self, job: str, name: str, signal: int, payload: int, missing: bool) -> None:
        """Deduplicated by signal id, refused by an ended job, wakes a job parked for it."""
        job_id, signal_id = GHOST if missing else job, f"s{signal}"
        refusal, expected, created = self.model.send_signal(
            job_id, name, PAYLOADS[payload], signal_id
        )
        found = self.expect(
            refusal, self.store.send_signal(job_id, name, PAYLOADS[payload], signal_id, "t")
        )
        if found is not None:
            assert expected is not None and found[1] == created
            assert signal_view(found[0]) == model_signal_view(expected)

    @rule(job=jobs, action=st.sampled_from(list(Control)), missing=RARELY)
    def control(self, job: str, action: Control, missing: bool) -> None:
        """Cancel (cascading to children), pause and resume."""
        job_id = GHOST if missing else job
        target = self.model.jobs.get(job_id)
        pausing_a_cancel = (
            action is Control.PAUSE and target is not None and target.control is Control.CANCEL
        )
        if pausing_a_cancel and not exercise("a pause erases a requested cancel"):
            return
        refusal = self.model.control(job_id, action)
        self.expect(refusal, self.store.control(job_id, action))

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def the_store_is_the_model(self) -> None:
        """After every step: jobs, journals, ledger, inboxes and waits as the model says."""
        snapshot = self.backend.run(read(self.store))
        check_jobs(snapshot, self.model, self.epochs)
        self.heads = check_journals(snapshot, self.model)
        check_ledger(snapshot, self.model)
        check_inboxes(snapshot, self.model)
        check_no_sleeping_on_what_is_there(snapshot)
        check_next_wake(snapshot, self.model)


def _resumed() -> EventDraft:
    return EventDraft(EventType.JOB_RESUMED, {"by": "operator"})


@pytest.fixture
def shrink_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    seconds = SHRINK_SECONDS.get(PROFILE_NAME)
    if seconds is not None:
        monkeypatch.setattr(engine, "MAX_SHRINKING_SECONDS", seconds)


@pytest.mark.usefixtures("shrink_budget")
@pytest.mark.timeout(TIMEOUT_SECONDS[PROFILE_NAME])
def test_every_store_agrees_with_the_model(store_url: str, tmp_path: Path) -> None:
    """The machine against memory, SQLite and PostgreSQL (``store_url`` is parametrized)."""
    kind = "postgresql" if store_url.startswith("postgres") else store_url.split(":", 1)[0]
    budget = settings(
        PROFILE, max_examples=PROFILE.max_examples * EXAMPLES_PER_POSTGRES_EXAMPLE[kind]
    )
    with backend_for(store_url, tmp_path) as backend:

        def machine() -> StoreMachine:
            return StoreMachine(backend)

        factory = seed(SEEDS[kind])(machine) if PROFILE.derandomize else machine
        run_state_machine_as_test(factory, settings=budget)  # type: ignore[no-untyped-call]
