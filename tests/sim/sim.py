"""One simulated run: a seed's processes, operator, faults and checks, on one ``SimLoop``.

``run_seed(seed, store)`` draws the seed's configuration and workload, starts its worker
processes, lets the operator follow its schedule through a chaos phase (faults on), then a
quiet phase (faults off, one healthy worker, the operator unblocking everything honestly: every
job must end within a virtual-time budget), and finally checks every invariant. The same seed
and plan give the same trace, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import os
import shutil
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetheris import Control, Job, JobStatus, ToolFailed, WaitError
from aetheris.journal import EventType
from aetheris.store.memory import MemoryStore
from aetheris.store.port import Claim, Commit, EffectState, Lease, NewJob
from aetheris.store.sqlite import SQLiteStore
from tests.sim.catalog import current_sim
from tests.sim.checks import Record, check_all
from tests.sim.clock import SimClock
from tests.sim.config import Action, Fault, SimConfig, draw_config, stream
from tests.sim.faulty import FaultKey, Faults
from tests.sim.loop import Deadlock, StepBudgetExceeded, current_process, run_simulated
from tests.sim.operator import Operator
from tests.sim.process import SimProcess, Supervisor
from tests.sim.toolrun import ToolRunner
from tests.sim.trace import Trace
from tests.sim.workload import Workload, draw_workload
from tests.sim.world import World

MAX_STEPS = 200_000
MAX_CLAIMS = 300  # claims of one job in one run: beyond this it is a livelock
_JOURNALED = (EventType.OP, EventType.INTENT)
WOKEN_AFTER = 3.0  # seconds a parked job may be seen with its wake condition holding
TIMER_LATE = 10.0  # quiet phase: a due timer must be claimed by a live worker within this
STALLED_AFTER = 40.0  # quiet phase: no journal moved this long, no timer set: it is stuck


@dataclass(frozen=True)
class Violation:
    """An invariant that did not hold."""

    kind: str
    message: str
    job: str | None
    at: float

    def describe(self) -> str:
        """One line: time, invariant, job, message."""
        where = f" [{self.job}]" if self.job else ""
        return f"t={self.at:.3f} {self.kind}{where}: {self.message}"


@dataclass
class SimResult:
    """What one run did and found."""

    seed: int
    store: str
    config: SimConfig
    violations: list[Violation]
    probes: Counter[str]
    digest: str
    plan: dict[FaultKey, Fault]
    actions: list[Action]
    statuses: dict[str, str]
    steps: int
    virtual_time: float
    trace: list[str] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no invariant was violated."""
        return not self.violations

    @property
    def kinds(self) -> list[str]:
        """The violated invariants, sorted."""
        return sorted({v.kind for v in self.violations})


def _sqlite_base() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path.cwd() / ".sim"
    return base / "aetheris-sim"


class Sim(ToolRunner):
    """The simulation of one seed (see the module docstring)."""

    def __init__(
        self,
        seed: int,
        store: str,
        *,
        plan: dict[FaultKey, Fault] | None = None,
        actions: list[Action] | None = None,
        keep_trace: bool = False,
    ) -> None:
        self.config = draw_config(seed, store)
        self.workload: Workload = draw_workload(self.config)
        self.actions = list(self.workload.actions if actions is None else actions)
        self.faults = Faults(self.config, stream(seed, "faults"), plan)
        self.latency = stream(seed, "latency")
        self.violations: list[Violation] = []
        self.probes: Counter[str] = Counter()
        self.world = World(self.violate)
        self.job_ids: list[str] = []
        self.job_version: dict[str, int] = {}
        self.lost_replies: set[tuple[str, int]] = set()
        self.finished = False
        self.cancel_next_child = False
        self.keep_trace = keep_trace
        self._memory: MemoryStore | None = None
        self._sqlite: list[SQLiteStore] = []
        self._woken: dict[tuple[str, str], float] = {}
        self._reported: set[tuple[str, str]] = set()
        self._seen: set[tuple[str, str | None, str]] = set()
        self.fault_times: dict[str, float] = {}
        self.claims: Counter[str] = Counter()
        self.claim_times: dict[tuple[str, str], float] = {}
        self.db_path = _sqlite_base() / f"sim-{os.getpid()}-{seed}.db"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.trace = Trace(self.now, keep=keep_trace)
        self.statuses: dict[str, str] = {}
        self.records: list[Record] = []
        self.steps = 0

    # -- the run -------------------------------------------------------------------------------

    async def main(self) -> None:
        """Set up, chaos phase, quiet phase, checks."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.runaway = asyncio.Event()
        self.clock = SimClock(loop, stream(self.config.seed, "clock"))
        current_sim.set(self)
        current_process.set(None)
        self.root_context = contextvars.copy_context()
        self.supervisor = Supervisor(self, self._make_store)
        self.reader = await self._make_store()
        self.operator = Operator(self, SimProcess(self, -1, 1, self.reader, worker=False).app)
        for _ in range(self.config.processes):
            await self.supervisor.spawn()
        monitor = loop.create_task(self._monitor())
        starts = [Action(j.start_at, "start", i) for i, j in enumerate(self.workload.jobs)]
        schedule = sorted([*starts, *self.actions], key=lambda a: (a.at, a.kind != "start"))
        chaos = loop.create_task(self.operator.run(schedule))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.runaway.wait(), self.config.chaos_seconds)
        if not self.runaway.is_set():
            await chaos
            await self._quiet()
        chaos.cancel()
        self.finished = True
        monitor.cancel()
        self.supervisor.halt_all()
        await asyncio.sleep(0.01)
        records = await check_all(self, self.reader)
        self.records = records if self.keep_trace else []
        self.statuses = {r.job.id: r.job.status.value for r in records}
        for job_id, status in sorted(self.statuses.items()):
            self.trace.add("end", job=job_id, status=status)

    async def _make_store(self) -> Any:
        if self.config.store == "memory":
            if self._memory is None:
                self._memory = MemoryStore(clock=self.clock.time)
            return self._memory
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(f"sqlite:///{self.db_path}?synchronous=off", clock=self.clock.time)
        await store.open()
        self._sqlite.append(store)
        return store

    async def _quiet(self) -> None:
        """Faults stop; every job must end within the budget, helped only honestly."""
        self.faults.active = False
        self.trace.add("quiet")
        deadline = self.now() + self.config.quiet_budget
        progress, moved_at = -1, self.now()
        while True:
            await self.supervisor.ensure_one()
            jobs = await self._jobs()
            open_jobs = [j for j in jobs if not j.status.terminal]
            if not open_jobs:
                return
            total = sum(j.event_count for j in jobs)
            if total != progress or any(j.wake_at is not None for j in open_jobs):
                progress, moved_at = total, self.now()
            if self.runaway.is_set():
                return
            if self.now() >= min(deadline, moved_at + STALLED_AFTER):
                for job in open_jobs:
                    await self._stuck(job)
                return
            for job in open_jobs:
                if job.status is JobStatus.PARKED and await self.wake_condition(job) is None:
                    await self.operator.settle(job)
            await asyncio.sleep(2.0)

    async def _stuck(self, job: Job) -> None:
        why = await self.wake_condition(job)
        if why is None and (job.wake_on or "").startswith("job:"):
            child = await self.reader.get_job(job.wake_on.partition(":")[2])
            if child is not None and not child.status.terminal:
                why = f"it waits for its child {child.id}, itself stuck ({child.park_reason})"
        reason = f" ({job.park_reason})" if job.park_reason else ""
        control = f", control={job.control}" if job.control else ""
        self.violate(
            "not_live",
            f"still {job.status}{reason}{control} after the quiet phase"
            + (f"; {why}" if why else ""),
            job=job.id,
        )

    async def _jobs(self) -> list[Job]:
        return sorted(await self.reader.list_jobs(limit=100_000), key=lambda j: j.id)

    async def _monitor(self) -> None:
        """No job stays parked while what it waits for is there (checked every 2 seconds)."""
        while True:
            await asyncio.sleep(2.0)
            seen = set()
            for job in await self._jobs():
                if job.id not in self.job_ids:  # created by a path no hook saw
                    self.job_ids.append(job.id)
                if job.status is not JobStatus.PARKED:
                    continue
                why = await self.wake_condition(job)
                if why is None:
                    continue
                key = (job.id, why)
                seen.add(key)
                since = self._woken.setdefault(key, self.now())
                allowed = TIMER_LATE if why.startswith("its timer") else WOKEN_AFTER
                if self.now() - since >= allowed and key not in self._reported:
                    self._reported.add(key)
                    self.violate(
                        "parked_while_woken",
                        f"parked ({job.park_reason}) for {self.now() - since:.1f}s while {why}",
                        job=job.id,
                    )
            self._woken = {k: v for k, v in self._woken.items() if k in seen}

    async def wake_condition(self, job: Job) -> str | None:
        """Why a parked job should not be parked, if anything it waits for is there."""
        if job.control is Control.CANCEL:
            return "a cancel is requested"
        kind, _, name = (job.wake_on or "").partition(":")
        if kind == "signal":
            pending = await self.reader.signals(job.id)
            if any(s.name == name for s in pending):
                return f"signal {name!r} is in its inbox"
        if kind == "job":
            child = await self.reader.get_job(name)
            if child is not None and child.status.terminal:
                return f"its child {name} ended {child.status}"
        due = job.wake_at is not None and self.clock.time() >= job.wake_at
        if due and not self.faults.active and self.supervisor.awake():
            return "its timer is due and a worker is up"  # quiet phase: nothing excuses it
        return None

    # -- what the seams report -----------------------------------------------------------------

    def now(self) -> float:
        """Virtual time."""
        return self.loop.time() if self.loop is not None else 0.0

    def probe(self, name: str) -> None:
        """Count a coverage probe (the sweep fails if an essential one never fires)."""
        self.probes[name] += 1

    def violate(self, kind: str, message: str, *, job: str | None = None) -> None:
        """Record a violated invariant (once per invariant, job and message)."""
        key = (kind, job, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.violations.append(Violation(kind, message, job, round(self.now(), 6)))
        self.trace.add("violation", kind=kind, job=job, msg=message)

    def fault_injected(self, proc: SimProcess, key: FaultKey, fault: Fault) -> None:
        """A fault struck: trace it."""
        self.fault_hit(proc)
        self.trace.add("fault", site=key[0], n=key[1], kind=fault.kind, proc=proc.name)

    def fault_hit(self, proc: SimProcess) -> None:
        """Remember when a fault last touched ``proc`` (an outage refusing a call included)."""
        self.fault_times[proc.name] = self.now()

    def aborted(self, job_id: str, message: str) -> None:
        """The runtime gave up a run: a violation unless a fault hit that run meanwhile."""
        proc = current_process.get()
        if proc is not None:
            claimed_at = self.claim_times.get((proc.name, job_id), float("inf"))
            if self.fault_times.get(proc.name, -1.0) >= claimed_at:
                self.probe("run_aborted_after_fault")
                return
        self.violate("internal_error", message, job=job_id)

    async def store_latency(self) -> None:
        """A seeded delay at a store seam (often none): how interleavings vary by seed."""
        draw = self.latency.random()
        if draw < 0.6:
            return
        await asyncio.sleep(0.0 if draw < 0.8 else round(self.latency.uniform(0.001, 0.05), 6))

    def committed(self, proc: SimProcess, lease: Lease, commit: Commit, site: str) -> None:
        """A fenced commit landed: the cheap invariants of parking and ending."""
        job_id = lease.job_id
        if (job_id, lease.epoch) in self.lost_replies:
            self.lost_replies.discard((job_id, lease.epoch))
            self.probe("lost_reply_recovered")
        for child in _children_in(commit):  # if commits ever create children themselves
            self._note_job(proc, child.id, child.parent_id)
        status = commit.status
        if status is not None and (status.status is JobStatus.PARKED or status.status.terminal):
            if proc.alive and self.world.running(proc.name, job_id) > 0:
                self.violate(
                    "parked_with_tool_in_flight",
                    f"{status.status} ({status.park_reason}) by {proc.name} while one of its "
                    "at_most_once tools is still running",
                    job=job_id,
                )
            self.probe(f"{status.status}:{status.park_reason or ''}".rstrip(":"))
        if any(d.type in _JOURNALED for d in commit.events):
            self.job_version[job_id] = proc.version  # the code that wrote the journal
        if any(w.state is EffectState.IN_DOUBT for w in commit.effects):
            self.probe("in_doubt")
        for draft in commit.events:
            if draft.type.value == "effect_resolved":
                self.probe(f"reconciled_{draft.data.get('resolution')}")
        self.trace.add(
            "commit",
            proc=proc.name,
            job=job_id,
            site=site,
            events=len(commit.events),
            status=status.status.value if status else None,
        )

    def applied(self, job_id: str, commit: Commit) -> None:
        """A control-plane write landed: trace it."""
        self.trace.add("apply", job=job_id, events=len(commit.events))

    def _note_job(self, proc: SimProcess, job_id: str, parent_id: str | None) -> None:
        if job_id in self.job_ids:
            return
        self.job_ids.append(job_id)
        self.trace.add("created", proc=proc.name, job=job_id)
        if parent_id is not None:
            self.probe("child_created")
            if self.cancel_next_child:
                self.operator.child_appeared(job_id)

    def job_created(self, proc: SimProcess, job: Job, parent: Job | None) -> None:
        """A job was created; a child only by the holder of its parent's lease."""
        self._note_job(proc, job.id, job.parent_id)
        if job.parent_id is None:
            return
        if (
            parent is None
            or parent.status is not JobStatus.RUNNING
            or parent.lease_owner != proc.owner
        ):
            state = "missing" if parent is None else f"{parent.status} ({parent.lease_owner})"
            self.violate(
                "unfenced_child_creation",
                f"{proc.name} created child {job.id} while its parent is {state}",
                job=job.parent_id,
            )

    def claimed(self, proc: SimProcess, claim: Claim) -> None:
        """A claim landed: trace it, count recoveries."""
        if claim.recovered_from:
            self.probe("recovered")
        self.claim_times[(proc.name, claim.job.id)] = self.now()
        self.claims[claim.job.id] += 1
        if self.claims[claim.job.id] == MAX_CLAIMS:
            self.violate(
                "claim_storm",
                f"claimed {MAX_CLAIMS} times by t={self.now():.1f}s: it spins without progress",
                job=claim.job.id,
            )
            self.runaway.set()  # stop here: the rest of the run would only repeat this
        self.trace.add("claim", proc=proc.name, job=claim.job.id, epoch=claim.lease.epoch)

    def agent_caught(self, job_id: str, exc: Exception) -> None:
        """Agent code caught ``exc``: legitimate for its own failures, never for the runtime's."""
        if isinstance(exc, ToolFailed | WaitError):
            return
        proc = current_process.get()
        if proc is not None and proc.alive:
            self.violate(
                "runtime_error_reached_agent",
                f"agent code caught {type(exc).__name__}: {str(exc)[:160]}",
                job=job_id,
            )

    # -- result --------------------------------------------------------------------------------

    def result(self) -> SimResult:
        """What this run did and found."""
        return SimResult(
            seed=self.config.seed,
            store=self.config.store,
            config=self.config,
            violations=self.violations,
            probes=self.probes,
            digest=self.trace.digest,
            plan=dict(self.faults.drawn),
            actions=self.actions,
            statuses=self.statuses,
            steps=self.steps,
            virtual_time=round(self.now(), 3),
            trace=self.trace.lines,
            records=self.records,
        )

    async def run(self) -> None:
        """``main``, then close the stores whatever happened."""
        try:
            await self.main()
        finally:
            for store in self._sqlite:
                await store.close()

    def cleanup(self) -> None:
        """Remove the run's SQLite files."""
        if self.config.store == "sqlite":
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(f"{self.db_path}.workers", ignore_errors=True)


class _Errors(logging.Handler):
    """The runtime's own error logs become violations (a run aborted by an internal error).

    A job's own end is no error of the runtime's: the lines of ``aetheris.worker.jobs`` (an
    agent that failed is logged at ERROR there) are checked by the invariants instead.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Report the runtime's error log record as a violation."""
        sim = current_sim.get()
        if sim is None or record.name == "aetheris.worker.jobs":
            return
        exc = record.exc_info[1] if record.exc_info else None
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        sim.aborted(str(job), f"{record.getMessage()}{detail}"[:300])


def _children_in(commit: Commit) -> list[NewJob]:
    """Jobs a commit creates, should the port let a commit create child jobs."""
    found: list[NewJob] = []
    for item in dataclasses.fields(commit):
        value = getattr(commit, item.name)
        if isinstance(value, list | tuple):
            found += [v for v in value if isinstance(v, NewJob)]
    return found


@contextlib.contextmanager
def _runtime_logs_captured() -> Iterator[None]:
    """Only the runtime's errors are kept (warnings are expected under faults: skipped)."""
    logger = logging.getLogger("aetheris")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    logger.handlers, logger.propagate = [_Errors()], False
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(saved[0])
        logger.propagate, logger.handlers = saved[1], saved[2]


def run_seed(
    seed: int,
    store: str = "memory",
    *,
    plan: dict[FaultKey, Fault] | None = None,
    actions: list[Action] | None = None,
    keep_trace: bool = False,
) -> SimResult:
    """Run one seed (with the drawn faults, or exactly ``plan`` and ``actions``)."""
    sim = Sim(seed, store, plan=plan, actions=actions, keep_trace=keep_trace)
    with _runtime_logs_captured():
        try:
            _, loop = run_simulated(sim.run, max_steps=MAX_STEPS)
            sim.steps = loop.steps
        except (Deadlock, StepBudgetExceeded) as exc:
            sim.violate(type(exc).__name__.lower(), str(exc))
        except Exception as exc:
            text = "".join(traceback.format_exception(exc))[-1500:]
            sim.violate("simulator_error", f"{type(exc).__name__}: {exc}\n{text}")
        finally:
            sim.cleanup()
    return sim.result()
