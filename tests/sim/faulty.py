"""Fault injection at the store seams: ``FaultyStore`` wraps a store, ``Faults`` decides.

``FaultyStore`` implements the store port by delegating. The write methods are wrapped
explicitly (each is a fault site); every other coroutine method goes through ``__getattr__``, so
the wrapper keeps working when the port grows. Every call of a process first checks that the
process is alive (a killed process's calls raise and write nothing) and not paused (a zombie's
calls block), then takes a seeded latency, then may meet a fault.

Faults are keyed by (site, occurrence #), the site being the method, refined for ``commit`` by
what it writes (``commit:intent``, ``commit:outcome``, ``commit:park``, ``commit:end``...). A
run records the plan it drew; replaying that plan (or any subset: shrinking) needs no generator.
"""

from __future__ import annotations

import inspect
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from aetheris import JobStatus, LeaseLost, StoreError, StoreUnavailable
from aetheris.store.port import Commit, EffectState, Lease, NewJob, ParkReason
from tests.sim.config import Fault, SimConfig

if TYPE_CHECKING:
    from tests.sim.process import SimProcess
    from tests.sim.sim import Sim

T = TypeVar("T")
FaultKey = tuple[str, int]
WRITES = ("commit", "apply", "create_job", "claim", "heartbeat", "send_signal", "control")
_NO_FAULTS = frozenset(
    {
        "open",
        "close",
        "schema",
        "migrate",
        "agents",
        "register_agents",
        "agent_input_schema",
        "register_worker",
        "touch_worker",
        "unregister_worker",
        "workers",
        "wait_for_work",
    }
)
_FEATURE = {
    "kill": "kill",
    "kill_after": "kill",
    "lost_reply": "lost_reply",
    "outage": "outage",
    "store_error": "store_error",
    "pause": "zombie",
}
MAX_KILLS = 5


class LostReply(StoreUnavailable):
    """The write committed, but the reply never reached the caller."""


def commit_site(commit: Commit) -> str:
    """The fault site of a commit, by what it writes."""
    status = commit.status
    if status is not None:
        if status.status.terminal:
            return "commit:end"
        return "commit:park" if status.status is JobStatus.PARKED else "commit:release"
    states = {w.state for w in commit.effects}
    if EffectState.INTENT in states:
        return "commit:intent"
    if states & {EffectState.COMMITTED, EffectState.FAILED}:
        return "commit:outcome"
    if EffectState.IN_DOUBT in states:
        return "commit:in_doubt"
    return "commit:consume" if commit.consume else "commit:op"


class Faults:
    """Decides the fault (if any) at each (site, occurrence): from the seed, or from a plan."""

    def __init__(
        self, config: SimConfig, rng: random.Random, plan: dict[FaultKey, Fault] | None
    ) -> None:
        self.config = config
        self.rng = rng
        self.replaying = plan is not None
        self.plan = dict(plan or {})
        self.drawn: dict[FaultKey, Fault] = {}
        self.counts: Counter[str] = Counter()
        self.active = True
        self.outage_until = 0.0
        self.kills = 0

    def draw(self, site: str, write: bool, *, quiet: bool = False) -> tuple[FaultKey, Fault | None]:
        """The fault at the next occurrence of ``site`` (counted even when none may strike)."""
        self.counts[site] += 1
        key = (site, self.counts[site])
        if not self.active or quiet:
            return key, None
        fault = self.plan.get(key) if self.replaying else self._random(site, write)
        if fault is not None:
            self.drawn[key] = fault
            if fault.kind in ("kill", "kill_after"):
                self.kills += 1
        return key, fault

    def _allowed(self, site: str, write: bool) -> list[str]:
        kinds = ["kill", "pause"]
        if site.startswith("tool:"):
            return kinds
        kinds += ["outage", "store_error"]
        return [*kinds, "kill_after", "lost_reply"] if write else kinds

    def _random(self, site: str, write: bool) -> Fault | None:
        draw = self.rng.random()
        for kind in self._allowed(site, write):
            if not self.config.enabled(_FEATURE[kind]):
                continue
            rate = self.config.rate(kind, site)
            if draw >= rate:
                draw -= rate
                continue
            if kind in ("kill", "kill_after") and self.kills >= MAX_KILLS:
                return None
            return self._shape(kind)
        return None

    def _shape(self, kind: str) -> Fault:
        rng = self.rng
        if kind == "outage":
            return Fault(kind, duration=rng.choice((0.3, 1.5, 5.0, 12.0)))
        if kind == "pause":
            return Fault(kind, duration=round(self.config.lease_ttl * rng.choice((1.5, 3.0)), 3))
        if kind in ("kill", "kill_after"):
            return Fault(kind, restart=rng.choice((0.5, 2.0, 6.0)))
        return Fault(kind)

    def in_outage(self, now: float) -> bool:
        """Whether the database is down at ``now``."""
        return self.active and now < self.outage_until


class FaultyStore:
    """The store port of one simulated process: delegation, with death, pauses and faults."""

    def __init__(self, inner: Any, process: SimProcess, sim: Sim) -> None:
        self._inner = inner
        self._proc = process
        self._sim = sim
        self.url: str = inner.url

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr
        site = None if name in _NO_FAULTS else name

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._call(site, False, lambda: attr(*args, **kwargs))

        return call

    async def _call(self, site: str | None, write: bool, thunk: Callable[[], Awaitable[T]]) -> T:
        proc, sim = self._proc, self._sim
        await proc.ready()
        if site is not None:
            await sim.store_latency()
            await proc.ready()
        fault = None
        if site is not None and sim.faults.in_outage(sim.now()):
            sim.faults.draw(site, write, quiet=True)  # counted; nothing more strikes a dead DB
            sim.fault_hit(proc)
            raise StoreUnavailable(f"simulated outage at {site}: the database is unreachable")
        if site is not None and proc.faultable:
            key, fault = sim.faults.draw(site, write)
            if fault is not None:
                sim.fault_injected(proc, key, fault)
                await self._before(fault, site)
        if site is not None and sim.faults.in_outage(sim.now()):
            sim.fault_hit(proc)
            raise StoreUnavailable(f"simulated outage at {site}: the database is unreachable")
        try:
            result = await thunk()
        except LeaseLost:
            sim.probe("stale_lease_fenced")
            raise
        if fault is not None:
            self._after(fault, site)
        return result

    async def _before(self, fault: Fault, site: str) -> None:
        proc, sim = self._proc, self._sim
        if fault.kind == "kill":
            raise proc.kill(fault)
        if fault.kind == "pause":
            proc.pause(fault.duration)
            await proc.ready()
        elif fault.kind == "outage":
            sim.faults.outage_until = max(sim.faults.outage_until, sim.now() + fault.duration)
            sim.probe("outage")
        elif fault.kind == "store_error":
            raise StoreError(f"simulated database error at {site} (nothing was written)")

    def _after(self, fault: Fault, site: str) -> None:
        if fault.kind == "kill_after":
            raise self._proc.kill(fault)
        if fault.kind == "lost_reply":
            self._sim.probe("lost_reply")
            raise LostReply(f"simulated lost reply at {site}: the write committed")

    # -- the write methods: each a fault site --------------------------------------------

    async def commit(self, lease: Lease, commit: Commit) -> Any:
        """A fenced write of a running job; checked against the world once it landed."""
        site = commit_site(commit)

        async def landed() -> Any:
            sealed = await self._inner.commit(lease, commit)
            self._sim.committed(self._proc, lease, commit, site)
            return sealed

        try:
            return await self._call(site, True, landed)
        except LostReply:
            self._sim.lost_replies.add((lease.job_id, lease.epoch))
            raise

    async def apply(self, job_id: str, commit: Commit, guard: Any) -> Any:
        """A control-plane write (an operator's resolution)."""

        async def applied() -> Any:
            job = await self._inner.apply(job_id, commit, guard)
            self._sim.applied(job_id, commit)
            return job

        return await self._call("apply", True, applied)

    async def create_job(self, new: NewJob) -> Any:
        """Job creation; a child's creation must hold its parent's lease (checked here)."""
        site = "create_job:child" if new.parent_id else "create_job"
        return await self._call(site, True, lambda: self._create(new))

    async def _create(self, new: NewJob) -> Any:
        parent = None
        if new.parent_id is not None:
            parent = await self._inner.get_job(new.parent_id)
        job, created = await self._inner.create_job(new)
        if created:
            self._sim.job_created(self._proc, job, parent)
        return job, created

    async def claim(self, owner: str, lease_ttl: float, where: Any) -> Any:
        """A claim: a fault site like any write."""

        async def claimed() -> Any:
            claim = await self._inner.claim(owner, lease_ttl, where)
            if claim is not None:
                self._sim.claimed(self._proc, claim)
            return claim

        return await self._call("claim", True, claimed)

    async def heartbeat(self, leases: Any, lease_ttl: float) -> Any:
        """A heartbeat: a fault site like any write."""
        return await self._call("heartbeat", True, lambda: self._inner.heartbeat(leases, lease_ttl))

    async def send_signal(self, *args: Any) -> Any:
        """A signal into a job's inbox."""
        return await self._call("send_signal", True, lambda: self._inner.send_signal(*args))

    async def control(self, job_id: str, action: Any, by: str | None = None) -> Any:
        """An operator's cancel, pause or resume."""
        return await self._call("control", True, lambda: self._inner.control(job_id, action, by))


def parks_for(commit: Commit) -> ParkReason | None:
    """The park reason a commit writes, if it parks the job."""
    status = commit.status
    if status is None or status.status is not JobStatus.PARKED:
        return None
    return status.park_reason
