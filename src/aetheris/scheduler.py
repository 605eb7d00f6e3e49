"""Workers: claim jobs under a lease, keep the lease alive, stop at once when it is lost.

A claim is one transaction that bumps the job's ``lease_epoch`` (the fencing token). Every write
of the run carries the epoch and applies only while it is current, so a worker that lost its
lease (paused, partitioned, presumed dead) cannot record anything; the heartbeat also cancels the
job's task the moment it learns of the loss, and side-effecting dispatches check a local lease
deadline first, so a worker resumed after a SIGSTOP dispatches nothing.

A worker reads what it runs from a :class:`Registry` (the :class:`~aetheris.App` is one) and
is never called back: an App in the same process rings a :class:`Doorbell` after it writes
(a job started, a signal sent, a cancel requested), and its workers wake to claim or to beat.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aetheris import runner
from aetheris.agents import AgentDef
from aetheris.bell import Bell
from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.errors import (
    AetherisError,
    ConfigurationError,
    LeaseLost,
    RuntimeFailure,
    SimulatedCrash,
)
from aetheris.journal import EventDraft, EventLike, EventType, Recorded
from aetheris.observe import (
    INTERRUPTED,
    NOOP,
    SILENT,
    Ended,
    Live,
    Observer,
    RunStarted,
    Scope,
    WorkerEvent,
    WorkerEventKind,
    combine,
    installed,
)
from aetheris.pruner import start_pruning
from aetheris.retention import Retention
from aetheris.run import JobRun
from aetheris.store.port import (
    PRESENCE_INTERVAL,
    Claim,
    ClaimFilter,
    Commit,
    Control,
    JobStatus,
    Lease,
    StatusWrite,
    Store,
)
from aetheris.versions import CodeGate, OnNewCode

log = logging.getLogger("aetheris.worker")
# One line per job's start or resume, park and end (a failure at ERROR, with the agent's
# traceback): a logger of its own, so that busy deployments can quiet it alone.
jobs_log = logging.getLogger("aetheris.worker.jobs")
BEAT_FLOOR = 0.25  # seconds between two heartbeats, at least
MIN_LEASE_TTL = 2 * BEAT_FLOOR


class Doorbell(Bell):
    """In-process news: whoever writes rings, and workers listening act on it at once.

    ``ring`` wakes workers waiting for work; ``announce`` tells them an operator's request on a
    job (cancel, pause, resume), which a worker running that job honours now rather than at its
    next heartbeat. The App rings; it never knows which workers listen.
    """

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[str, Control | None], None]] = []

    def listen(self, listener: Callable[[str, Control | None], None]) -> Callable[[], None]:
        """Call ``listener(job_id, control)`` on each announcement; returns how to stop."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def announce(self, job_id: str, control: Control | None) -> None:
        for listener in list(self._listeners):
            listener(job_id, control)
        self.ring()


class Registry(Protocol):
    """What a worker reads of the App it serves: its agents, settings and store."""

    database_url: str
    clock: Clock
    lease_ttl: float
    poll_interval: float
    max_payload_bytes: int
    max_recoveries: int
    doorbell: Doorbell
    retention: Retention | None

    @property
    def agent_names(self) -> list[str]: ...
    @property
    def agents(self) -> Mapping[str, AgentDef]: ...
    def agent_def(self, name: str) -> AgentDef: ...
    async def open_store(self, *, view: Literal["reveal"]) -> Store: ...


def worker_id(clock: Clock = SYSTEM_CLOCK) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{clock.uuid4().hex[:6]}"


@dataclass(slots=True)
class _Active:
    lease: Lease
    deadline: float
    task: asyncio.Task[None] | None = None
    run: JobRun | None = None
    lost: bool = False
    stopping: bool = False


class Worker:
    """Runs jobs of one :class:`~aetheris.App` (its :class:`Registry`); several may share a
    database. ``on_new_code``: what it does with jobs another version of their agent wrote,
    ``refuse``, ``check`` (then pass over for ``recheck_after`` s) or ``proceed``
    (see :mod:`aetheris.versions`)."""

    def __init__(
        self,
        registry: Registry,
        *,
        concurrency: int = 10,
        queues: Sequence[str] | None = None,
        lease_ttl: float | None = None,
        poll_interval: float | None = None,
        grace: float = 10.0,
        owner: str | None = None,
        reap_interval: float = 1.0,
        observer: Observer | None = None,
        on_new_code: str | OnNewCode = OnNewCode.CHECK,
        recheck_after: float = 60.0,
    ) -> None:
        self.registry = registry
        # Told what happens (metrics, traces), with the observers installed in the process.
        self.observer = observer or NOOP
        self._observer = self.observer
        self.concurrency = concurrency
        self.queues = list(queues) if queues is not None else None
        self.lease_ttl = lease_ttl if lease_ttl is not None else registry.lease_ttl
        self.poll_interval = poll_interval if poll_interval is not None else registry.poll_interval
        self.grace = grace
        self.reap_interval = reap_interval
        _check_options(concurrency, self.lease_ttl, self.poll_interval, grace)
        self.clock = registry.clock
        # Jobs another version of their agent wrote: refused, checked first, or run.
        self.gate = CodeGate(
            on_new_code, registry.agents, clock=self.clock,
            max_payload_bytes=registry.max_payload_bytes, recheck_after=recheck_after,
        )  # fmt: skip
        self.owner = owner or worker_id(self.clock)
        self._active: dict[str, _Active] = {}
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._hurry = False
        self.claimed = 0
        self.crashed = False

    @property
    def _margin(self) -> float:
        return min(1.0, self.lease_ttl * 0.1)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        """Stop claiming; runs start nothing new and finish what is in flight, then hand
        their jobs back (within ``grace`` seconds). Asked a second time: hand back at once."""
        if self._stop is not None and self._stop.is_set():
            self._hurry = True
            log.warning("worker %s: stop asked again; handing jobs back now", self.owner)
            for active in self._active.values():
                self._interrupt(active)
        elif self._stop is not None:
            self._stop.set()
            for active in self._active.values():
                if active.run is not None:
                    active.run.drain()
        self.wake()

    def _interrupt(self, active: _Active) -> None:
        active.stopping = True
        if active.task is not None and not active.task.done():
            active.task.cancel()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Claim and run jobs until ``stop`` is set (or :meth:`stop` is called)."""
        self._wake = asyncio.Event()
        self._stop = stop or asyncio.Event()
        self._observer = combine(self.observer, installed())
        store = await self.registry.open_store(view="reveal")  # secret fields as written
        await self._announce(store)
        unlisten = self.registry.doorbell.listen(self._requested)
        where = ClaimFilter(self.registry.agent_names, self.queues)
        beat = asyncio.create_task(self._heartbeats(store), name="aetheris-heartbeat")
        ages, retention = self.registry.agents, self.registry.retention
        pruning = start_pruning(store, retention, ages, self.clock.time)  # ended jobs: retention
        stop_waiter = asyncio.create_task(self._stop.wait())
        try:
            reaped_at = 0.0
            while not self._stop.is_set():
                self._wake.clear()
                if self.clock.monotonic() - reaped_at >= self.reap_interval:
                    reaped_at = self.clock.monotonic()
                    await self._reap(store)
                # Listen before claiming: work announced while the claim finds nothing (or
                # while the next due time is read) must still wake this worker.
                notified = asyncio.create_task(store.wait_for_work(self.poll_interval))
                try:
                    found = await self._fill(store, where)
                    idle = None if len(self._active) >= self.concurrency else self.poll_interval
                    if idle is not None and not found:
                        idle = await self._until_next_wake(store, idle)
                    if not (found and idle is not None):
                        await self._idle(notified, stop_waiter, idle)
                finally:
                    notified.cancel()
        finally:
            unlisten()
            stop_waiter.cancel()
            await self._drain(store)
            for task in (beat, pruning):
                if task is not None:
                    task.cancel()
            await asyncio.gather(beat, *[t for t in (pruning,) if t], return_exceptions=True)
            try:
                await store.unregister_worker(self.owner, graceful=not self.crashed)
            except AetherisError as exc:
                log.warning("worker %s: could not withdraw its presence: %s", self.owner, exc)

    async def _announce(self, store: Store) -> None:
        """Register the agents served (with their input's schema) and this worker's presence."""
        await store.register_agents(
            {name: agent.input_schema() for name, agent in self.registry.agents.items()}
        )
        await store.register_worker(
            self.owner, agents=self.registry.agent_names, queues=self.queues
        )
        log.info(
            "worker %s serving %s on %s (concurrency %d, lease %.1fs)",
            self.owner,
            ", ".join(self.registry.agent_names),
            self.registry.database_url,
            self.concurrency,
            self.lease_ttl,
        )

    async def _reap(self, store: Store) -> None:
        try:
            dead = await store.reap()
        except AetherisError as exc:
            log.warning("reaping dead workers failed: %s", exc)
            return
        for owner in dead:
            log.info("worker %s is gone; its jobs are claimable now", owner)

    async def _until_next_wake(self, store: Store, idle: float) -> float:
        """Sleep no longer than until the next parked job becomes due (a timer, a timeout)."""
        try:
            due = await store.next_wake()
        except AetherisError:
            return idle
        return idle if due is None else max(0.0, min(idle, due - self.clock.time() + 0.01))

    async def _idle(
        self,
        notified: asyncio.Task[None],
        stop_waiter: asyncio.Task[bool],
        timeout: float | None,
    ) -> None:
        """Wait for a free slot, a local wake-up, the store's notification, stop or timeout."""
        assert self._wake is not None
        woken = asyncio.create_task(self._wake.wait())
        waiters: set[asyncio.Task[Any]] = {woken, stop_waiter}
        rung = None
        if timeout is not None:
            rung = asyncio.create_task(self.registry.doorbell.wait(timeout))
            waiters.update((notified, rung))
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        woken.cancel()
        if rung is not None:
            rung.cancel()

    async def _fill(self, store: Store, where: ClaimFilter) -> bool:
        found = False
        while len(self._active) < self.concurrency and not self._stop_set():
            sent = self.clock.monotonic()
            try:
                claim = await store.claim(self.owner, self.lease_ttl, self.gate.where(where))
            except AetherisError as exc:
                log.warning("claim failed: %s", exc)
                return False
            if claim is None:
                return found
            found = True
            self.claimed += 1
            self._report("claimed", claim.job.id, claim.lease.epoch)
            if claim.recovered_from is not None:
                self._report("takeover", claim.job.id, claim.lease.epoch)
            active = _Active(claim.lease, sent + self.lease_ttl - self._margin)
            stale = self._active.get(claim.job.id)
            if stale is not None:
                # Its lease expired under this very worker (heartbeats failed): the old run is
                # fenced now; stop it rather than let two runs of one job share the process.
                self._lose(stale)
            self._active[claim.job.id] = active
            active.task = asyncio.create_task(
                self._run(store, claim, active), name=f"aetheris-job-{claim.job.id}"
            )
        return found

    def _stop_set(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _run(self, store: Store, claim: Claim, active: _Active) -> None:
        job = claim.job
        # The run's scope for the observer, and what its log lines carry (job, fencing token).
        live = Live(job.id, claim.lease.epoch, None, self._scope(claim))
        ended = INTERRUPTED
        try:
            ended = (await self._execute(store, claim, active)).ended()
        except LeaseLost:
            ended = Ended("lease_lost")
            self._report("fenced", job.id, claim.lease.epoch)
            log.info("job %s: lease lost, stopped", job.id)
        except SimulatedCrash:
            ended = Ended("crashed")
            log.warning("job %s: simulated crash; the worker dies without a word", job.id)
            self._die()
        except asyncio.CancelledError:
            if active.lost:
                ended = Ended("lease_lost")
                log.info("job %s: lease lost, interrupted", job.id)
            elif self.crashed:
                ended = Ended("crashed")
            elif active.stopping:
                ended = Ended("handed_back", reason="worker stopping")
                await self._release(store, active.lease, "worker stopping")
            else:
                raise
        except (RuntimeFailure, Exception) as failure:
            ended = Ended("runtime_failure", type(failure.__cause__ or failure).__name__)
            await self._cut_short(store, active, failure)
        finally:
            live.done(ended)
            live.end()
            if self._active.get(job.id) is active:
                del self._active[job.id]
            self.wake()

    async def _execute(self, store: Store, claim: Claim, active: _Active) -> runner.Outcome:
        """Open the claimed job's run, run it to an end (logged), and say how it ended."""
        job = claim.job
        run, events = await self._open(store, claim, active)
        # "run N": the job's Nth claim (its ``attempts``), parks and resumes included.
        where = f"agent {job.agent}, run {job.attempts}"
        limit = self.registry.max_recoveries
        cut = f", recoveries {job.recoveries}/{limit}" if job.recoveries else ""
        how = _how_claimed(claim, events, self.owner)
        jobs_log.info("job %s %s: %s, epoch %d%s", job.id, how, where, claim.lease.epoch, cut)
        if job.recoveries > limit:
            outcome = await runner.fail_poisoned(run, limit, _last_failure(events))
        elif (handed_back := await self.gate.admit(store, run, events)) is not None:
            outcome = handed_back
        else:
            if job.deadline is not None:
                self._enforce_deadline(active, job.deadline)
            if self._stop_set():
                run.drain()  # the worker began stopping while this job was being claimed
            outcome = await runner.execute(run)
        level, what, more = outcome.describe(self.clock.time())
        jobs_log.log(level, "job %s %s: %s%s", job.id, what, where, more)
        return outcome

    def _scope(self, claim: Claim) -> Scope:
        """The observer's scope of a run that begins (:data:`SILENT` when nothing observes)."""
        if self._observer is NOOP:
            return SILENT
        job = claim.job
        started = RunStarted(
            job.id, job.agent, job.tenant, job.attempts, claim.lease.epoch, self.owner,
            job.attempts > 1,
        )  # fmt: skip
        return self._observer.run_started(started)

    def _report(
        self, kind: WorkerEventKind, job_id: str | None = None, epoch: int | None = None, n: int = 0
    ) -> None:
        """Tell the observer what a lease did (see :class:`~aetheris.observe.WorkerEvent`)."""
        if self._observer is not NOOP:
            event = WorkerEvent(kind, self.owner, self.clock.time(), job_id, epoch, n)
            self._observer.worker_event(event)

    async def _open(
        self, store: Store, claim: Claim, active: _Active
    ) -> tuple[JobRun, list[Recorded]]:
        """The run of a claimed job, over its journal and ledger as they stand now."""
        job = claim.job
        agent = self.registry.agent_def(job.agent)
        if job.first_run:  # nothing to replay
            events, effects = [], []
        else:
            events = await store.journal(job.id)
            effects = await store.effects(job_id=job.id)
        run = active.run = JobRun(
            job=job,
            lease=claim.lease,
            agent=agent,
            store=store,
            events=events,
            effects=effects,
            lease_deadline=lambda: active.deadline,
            max_payload_bytes=self.registry.max_payload_bytes,
            agents=self.registry.agents,
            clock=self.clock,
            observer=self._observer,
        )
        if claim.budget_read:
            run.budget_is(claim.budget)
        return run, events

    def _enforce_deadline(self, active: _Active, deadline: float) -> None:
        """Interrupt a job still running at its deadline (a slow tool included)."""

        loop = asyncio.get_running_loop()

        def interrupt() -> None:
            if active.task is None or active.task.done() or active.run is None:
                return
            if active.run.interruptible:
                active.task.cancel()
            elif not active.run.ending:
                loop.call_later(0.05, interrupt)  # not started yet: it will be, soon

        loop.call_at(loop.time() + max(0.0, deadline - self.clock.time()), interrupt)

    async def _cut_short(self, store: Store, active: _Active, failure: BaseException) -> None:
        """The runtime failed running a job: hand it back, later each time; counted as poison."""
        cause = failure.__cause__ or failure
        log.error(
            "job %s: run cut short by a runtime failure: %s",
            active.lease.job_id,
            failure,
            exc_info=(type(cause), cause, cause.__traceback__),
        )
        job = active.run.job if active.run is not None else None
        delay = min(60.0, 0.5 * 2 ** (job.recoveries if job else 0))
        error = {"type": type(cause).__name__, "message": str(cause).replace("\x00", "\ufffd")}
        await self._release(store, active.lease, "runtime failure", delay, error=error)

    async def _release(
        self,
        store: Store,
        lease: Lease,
        why: str,
        delay: float = 0.0,
        *,
        error: dict[str, str] | None = None,
    ) -> None:
        """Hand a job back (status pending) so that any worker can claim it after ``delay``.

        Handed back after a runtime failure (``error``), the run counts as cut short: a job
        whose runs keep failing is failed as poison rather than retried forever.
        """
        data: dict[str, Any] = {"owner": lease.owner, "reason": why}
        if error is not None:
            data["error"] = error
        status = StatusWrite(
            JobStatus.PENDING, run_at=self.clock.time() + delay, recovery=error is not None
        )
        try:
            await store.commit(
                lease, Commit([EventDraft(EventType.JOB_RELEASED, data)], status=status)
            )
            log.info("job %s released (%s)", lease.job_id, why)
        except (LeaseLost, AetherisError) as exc:
            log.info("job %s: not released (%s); its lease will expire", lease.job_id, exc)

    async def _heartbeats(self, store: Store) -> None:
        # Heartbeats also carry operators' requests (cancel, pause) to running jobs; every
        # PRESENCE_INTERVAL seconds, jobs or none, they also tell the store this worker lives.
        interval = min(self.lease_ttl / 3, 2.0)
        last = touched = self.clock.monotonic()
        while True:
            # A notification (a control request on PostgreSQL, or a write of an App in this
            # process) brings the next beat forward, but beats stay at least BEAT_FLOOR apart.
            await self._until_rung(store, interval)
            await asyncio.sleep(max(0.0, BEAT_FLOOR - (self.clock.monotonic() - last)))
            last = self.clock.monotonic()
            actives = list(self._active.values())
            if actives:
                await self._beat(store, actives)
            if last - touched >= PRESENCE_INTERVAL:
                touched = last
                try:
                    await store.touch_worker(self.owner)
                    self._report("heartbeat")
                except AetherisError as exc:
                    log.warning("worker %s: presence not refreshed: %s", self.owner, exc)

    async def _beat(self, store: Store, actives: list[_Active]) -> None:
        """Extend the leases of running jobs; stop those lost; pass on operators' requests."""
        sent = self.clock.monotonic()
        try:
            beat = await store.heartbeat([a.lease for a in actives], self.lease_ttl)
        except AetherisError as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        self._report("heartbeat", n=len(actives) - len(beat.lost))
        for active in actives:
            if active.lease.job_id in beat.lost:
                self._lose(active)
                continue
            active.deadline = sent + self.lease_ttl - self._margin
            if active.run is not None:
                self._control(active, beat.control.get(active.lease.job_id))

    async def _until_rung(self, store: Store, timeout: float) -> None:
        """The store's notification or this process's doorbell, whichever comes first."""
        waiters = {
            asyncio.create_task(store.wait_for_work(timeout)),
            asyncio.create_task(self.registry.doorbell.wait(timeout)),
        }
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _requested(self, job_id: str, control: Control | None) -> None:
        """An operator's request made in this process: honoured now, not at the next beat."""
        active = self._active.get(job_id)
        if active is not None and active.run is not None:
            self._control(active, control)

    def _control(self, active: _Active, control: Control | None) -> None:
        """An operator's request (or its withdrawal, on resume) as the heartbeat learned it."""
        assert active.run is not None
        if active.run.control is control:
            return
        active.run.request(control)
        if control is Control.CANCEL and active.task is not None and active.run.interruptible:
            # A run already ending (or parking) is left to write its end; a cancel that comes
            # as it parks wakes it again, and it ends cancelled then.
            log.info("job %s: cancel requested; interrupting it", active.lease.job_id)
            active.task.cancel()

    def _die(self) -> None:
        """Behave like a killed process: stop everything, write nothing more."""
        self.crashed = True
        for active in self._active.values():
            active.deadline = 0.0
            if active.task is not None and active.task is not asyncio.current_task():
                active.task.cancel()
        self.stop()

    def _lose(self, active: _Active) -> None:
        log.warning(
            "job %s: lease epoch %s lost to another worker", active.lease.job_id, active.lease.epoch
        )
        self._report("lost", active.lease.job_id, active.lease.epoch)
        active.lost = True
        active.deadline = 0.0
        if active.task is not None:
            active.task.cancel()

    async def _drain(self, store: Store) -> None:
        """Stopping: runs start nothing new; what is in flight gets ``grace`` seconds."""
        for active in self._active.values():
            if active.run is not None:
                active.run.drain()
        tasks = [a.task for a in self._active.values() if a.task is not None]
        if not self.crashed:
            log.info(
                "worker %s stopping: %d job(s) running, grace %.1fs",
                self.owner,
                len(tasks),
                self.grace,
            )
        if not tasks:
            return
        hurry = self.crashed or self._hurry
        _, pending = await asyncio.wait(tasks, timeout=0 if hurry else self.grace)
        for active in list(self._active.values()):
            if active.task in pending:
                self._interrupt(active)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _check_options(concurrency: int, lease_ttl: float, poll_interval: float, grace: float) -> None:
    """Refuse settings that cannot work before any job is touched."""
    if concurrency < 1:
        raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
    if not lease_ttl >= MIN_LEASE_TTL:
        raise ConfigurationError(
            f"lease_ttl must be at least {MIN_LEASE_TTL} seconds (heartbeats are up to "
            f"{BEAT_FLOOR} s apart), got {lease_ttl}"
        )
    if not poll_interval > 0:
        raise ConfigurationError(f"poll_interval must be positive, got {poll_interval}")
    if not grace >= 0:
        raise ConfigurationError(f"grace must be zero or more seconds, got {grace}")


def _last_failure(events: Sequence[EventLike]) -> str | None:
    """What cut the job's last run short, if the runtime failed (for the PoisonJob error)."""
    for event in reversed(events):
        if event.type is EventType.JOB_RELEASED and isinstance(event.data.get("error"), dict):
            error = event.data["error"]
            return f"{error.get('type')}: {error.get('message')}"
    return None


def _how_claimed(claim: Claim, events: Sequence[EventLike], owner: str) -> str:
    """How a run begins, for the log: the job's first run, or after what it resumes."""
    if claim.job.attempts == 1:
        return "started"
    if claim.recovered_from is not None:
        if claim.recovered_from == owner:
            return "resumed after its lease expired on this worker"
        return f"recovered from worker {claim.recovered_from}"
    for event in reversed(events):
        if event.type is EventType.JOB_PARKED:
            return f"resumed after park ({event.data.get('reason')})"
        if event.type is EventType.JOB_RELEASED:
            return f"resumed after hand-back ({event.data.get('reason')})"
        if event.type is EventType.JOB_CLAIMED and event.data.get("epoch") != claim.lease.epoch:
            break  # an earlier run that neither parked nor handed the job back
    return "resumed"
