"""In-memory store: the reference semantics of the port, for tests of user code.

It lives in one process and keeps nothing across restarts. A single lock makes every method one
atomic transaction, which is exactly what the SQL stores give with real transactions.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aetheris.anchor import SigningKey
from aetheris.errors import Conflict, IdempotencyConflict, JobNotFound, LeaseLost
from aetheris.journal import GENESIS_HASH, Event, Recorded, to_jsonable
from aetheris.store import sql
from aetheris.store._shared import (
    LocalRateLimits,
    check_commit,
    check_guard,
    claimable_version,
    claimed_draft,
    created_draft,
    effect_exists,
    effect_not_expected,
    existing_job,
    head_moved,
    plan_control,
    same_request,
    seal_all,
    signal_refusal,
    signal_taken,
    summarize,
    worker_info,
)
from aetheris.store.memory_keyed import KeyedRow, MemoryKeyed, Where
from aetheris.store.memory_kv import MemoryKeyValue
from aetheris.store.memory_pruning import MemoryPruning
from aetheris.store.memory_tenancy import MemoryTenancy
from aetheris.store.memory_webhooks import MemoryWebhooks
from aetheris.store.port import (
    WORKER_ALIVE_WINDOW,
    WORKER_FORGET_AFTER,
    Budget,
    Claim,
    ClaimFilter,
    Commit,
    Control,
    Effect,
    EffectState,
    EffectWrite,
    ForkedJob,
    Guard,
    Head,
    Heartbeat,
    Job,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    SchemaState,
    Signal,
    StatusWrite,
    Summary,
    WorkerInfo,
    job_wake,
    signal_wake,
)
from aetheris.store.pruning import Tombstone

# The in-memory store keeps no schema: it is always at the SQL stores' latest version.
LATEST_SCHEMA = len(sql.migrations("sqlite"))


class MemoryStore(
    MemoryKeyed, MemoryTenancy, MemoryWebhooks, MemoryKeyValue, MemoryPruning, LocalRateLimits
):
    """A store held in process memory (URL ``memory://``)."""

    def __init__(
        self,
        url: str = "memory://",
        *,
        clock: Callable[[], float] = time.time,
        signer: SigningKey | None = None,
    ) -> None:
        self.url = url
        self._clock = clock
        self.signer = signer  # anchors every write's last event (see aetheris.anchor)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._events: dict[str, list[Event]] = {}
        self._effects: dict[tuple[str, int], Effect] = {}
        self._by_key: dict[tuple[str, str], str] = {}  # (tenant, idempotency key): job id
        self._agents: dict[str, float] = {}
        self._input_schemas: dict[str, dict[str, Any] | None] = {}
        self._blobs: dict[tuple[str, str], bytes] = {}
        self._kv: dict[str, dict[str, bytes]] = {}
        self._signals: dict[tuple[str, int], Signal] = {}
        self._holders: dict[Where, str] = {}
        self._keyed: dict[Where, list[KeyedRow]] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._registered: dict[str, WorkerInfo] = {}  # by this store: what a touch writes back
        self._tombstones: dict[str, Tombstone] = {}  # pruned jobs (see store.pruning)
        self._init_webhooks()
        self._init_tenancy()

    async def open(self, *, migrate: bool = True) -> None:
        return None

    async def close(self) -> None:
        return None

    async def schema(self) -> SchemaState:
        return SchemaState(LATEST_SCHEMA, LATEST_SCHEMA)

    async def migrate(self) -> SchemaState:
        return SchemaState(LATEST_SCHEMA, LATEST_SCHEMA)

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        with self._lock:
            return self._create(new)

    def _create(self, new: NewJob) -> tuple[Job, bool]:
        key = None if new.idempotency_key is None else (new.tenant, new.idempotency_key)
        if key is not None and key in self._by_key:
            return existing_job(new, self._jobs[self._by_key[key]]), False
        if new.id in self._jobs:
            raise Conflict(f"job id {new.id!r} already exists")
        if isinstance(new, ForkedJob):
            check_commit(new.id, new.journal)
        now = self._clock()
        job = Job(
            id=new.id,
            agent=new.agent,
            input=to_jsonable(new.input),
            status=JobStatus.PENDING,
            park_reason=None,
            park_detail=None,
            result=None,
            error=None,
            idempotency_key=new.idempotency_key,
            queue=new.queue,
            priority=new.priority,
            lease_epoch=0,
            lease_owner=None,
            lease_expires_at=None,
            run_at=new.run_at if new.run_at is not None else now,
            attempts=0,
            event_count=0,
            head_hash=GENESIS_HASH,
            created_at=now,
            updated_at=now,
            parent_id=new.parent_id,
            deadline=new.deadline,
            tenant=new.tenant,
        )
        self._jobs[job.id] = job
        self._events[job.id] = []
        if key is not None:
            self._by_key[key] = job.id
        self._append(job.id, [created_draft(new)], now)
        if isinstance(new, ForkedJob):  # a fork: its journal follows, checked by create_job
            self._apply(self._jobs[job.id], new.journal, now)
        return self._jobs[job.id], True

    async def get_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        agent: str | None = None,
        since: float | None = None,
        limit: int = 100,
        tenant: str | None = None,
        park_reason: ParkReason | None = None,
        until: float | None = None,
        after: tuple[float, str] | None = None,
        idempotency_key: str | None = None,
    ) -> list[Job]:
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if (status is None or j.status == status)
                and (agent is None or j.agent == agent)
                and (since is None or j.created_at >= since)
                and (until is None or j.created_at < until)
                and (tenant is None or j.tenant == tenant)
                and (park_reason is None or j.park_reason == park_reason)
                and (after is None or (j.created_at, j.id) < after)
                and (idempotency_key is None or j.idempotency_key == idempotency_key)
            ]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return jobs[:limit]

    async def find_jobs(
        self, prefix: str, *, limit: int = 10, tenant: str | None = None
    ) -> list[str]:
        with self._lock:
            found = (
                i
                for i, j in self._jobs.items()
                if i.startswith(prefix) and (tenant is None or j.tenant == tenant)
            )
            return sorted(found)[:limit]

    async def summary(self, *, tenant: str | None = None) -> Summary:
        with self._lock:
            jobs = {i: j for i, j in self._jobs.items() if tenant is None or j.tenant == tenant}
            counts = collections.Counter((j.tenant, j.status) for j in jobs.values())
            pending = [j.created_at for j in jobs.values() if j.status is JobStatus.PENDING]
            effects = collections.Counter(
                e.state for e in self._effects.values() if e.job_id in jobs
            )
        grouped = [(tenant, status, n) for (tenant, status), n in counts.items()]
        return summarize(grouped, min(pending, default=None), effects)

    async def claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        with self._lock:
            now = self._clock()
            job = self._pick(now, where)
            if job is None:
                return None
            recovered = job.lease_owner if job.status == JobStatus.RUNNING else None
            # Its own expired lease taken back is no death of a worker: not counted.
            died = recovered is not None and recovered != owner
            epoch = job.lease_epoch + 1
            self._jobs[job.id] = dataclasses.replace(
                job,
                status=JobStatus.RUNNING,
                lease_epoch=epoch,
                lease_owner=owner,
                lease_expires_at=now + lease_ttl,
                attempts=job.attempts + 1,
                recoveries=job.recoveries + died,
                park_reason=None,
                park_detail=None,
                wake_on=None,
                wake_at=None,
                updated_at=now,
            )
            code = where.versions.get(job.agent)
            draft = claimed_draft(owner, epoch, job.attempts + 1, recovered, code)
            self._append(job.id, [draft], now)
            claim = Claim(self._jobs[job.id], Lease(job.id, epoch, owner), recovered)
            if not claim.job.first_run:
                return claim
            budget = Budget.of(self._events[job.id][0].data.get("budget"))
            return dataclasses.replace(claim, budget_read=True, budget=budget)

    def _pick(self, now: float, where: ClaimFilter) -> Job | None:
        agents = set(where.agents)
        queues = set(where.queues) if where.queues is not None else None

        skip = set(where.skip)

        def eligible(job: Job) -> bool:
            if job.agent not in agents or (queues is not None and job.queue not in queues):
                return False
            return job.id not in skip and claimable_version(job, where)

        expired = [
            j
            for j in self._jobs.values()
            if j.status == JobStatus.RUNNING
            and j.lease_expires_at is not None
            and j.lease_expires_at < now
            and eligible(j)
        ]
        if expired:
            return min(expired, key=lambda j: (j.lease_expires_at or 0.0, j.id))
        due = [
            j
            for j in self._jobs.values()
            if j.status == JobStatus.PARKED
            and j.wake_at is not None
            and j.wake_at <= now
            and eligible(j)
        ]
        if due:
            return min(due, key=lambda j: (j.wake_at or 0.0, j.id))
        pending = [
            j
            for j in self._jobs.values()
            if j.status == JobStatus.PENDING and j.run_at <= now and eligible(j)
        ]
        if not pending:
            return None
        return min(pending, key=lambda j: (-j.priority, j.run_at, j.id))

    async def heartbeat(self, leases: Sequence[Lease], lease_ttl: float) -> Heartbeat:
        beat = Heartbeat(set(), {})
        with self._lock:
            now = self._clock()
            for lease in leases:
                job = self._jobs.get(lease.job_id)
                if job is None or not _holds(job, lease):
                    beat.lost.add(lease.job_id)
                    continue
                self._jobs[job.id] = dataclasses.replace(job, lease_expires_at=now + lease_ttl)
                if job.control is not None:
                    beat.control[job.id] = job.control
        return beat

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        with self._lock:
            job = self._jobs.get(lease.job_id)
            if job is None or not _holds(job, lease):
                raise LeaseLost(lease.job_id, lease.epoch)
            if commit.head is not None and commit.head != Head(job.event_count, job.head_hash):
                raise Conflict(head_moved(job.id, commit.head.count, job.event_count))
            self._check(job, commit)
            return self._apply(job, commit, self._clock())

    async def apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            check_guard(job, guard)
            self._check(job, commit)  # all of it before the epoch moves: refused, nothing changes
            now = self._clock()
            job = dataclasses.replace(job, lease_epoch=job.lease_epoch + 1, lease_owner=None)
            self._jobs[job_id] = job
            self._apply(job, commit, now)
            return self._jobs[job_id]

    def _check(self, job: Job, commit: Commit) -> None:
        """Everything that could refuse ``commit``, before any of it is written (no rollback)."""
        check_commit(job.id, commit)
        self._check_effects(job.id, commit.effects)
        self._check_keys(job, commit.correlate)
        for new in commit.create:
            existing = self._jobs.get(new.id)
            if existing is not None and not same_request(existing, new):
                raise IdempotencyConflict(f"job id {new.id!r} is taken by another job")
        for seq, _ in commit.consume:
            found = self._signals.get((job.id, seq))
            if found is None or found.consumed_position is not None:
                raise Conflict(signal_taken(job.id, seq))

    def _apply(self, job: Job, commit: Commit, now: float) -> list[Event]:
        self._take_keys(job, commit.correlate)
        for write in commit.effects:
            self._write_effect(job.id, write, now)
        for digest, body in commit.blobs:
            self._blobs.setdefault((job.id, digest), bytes(body))
        for seq, position in commit.consume:
            signal = self._signals[(job.id, seq)]
            self._signals[(job.id, seq)] = dataclasses.replace(signal, consumed_position=position)
        if commit.status is not None:
            self._jobs[job.id] = _with_status(job, commit.status, now)
        if commit.code_version is not None:
            self._jobs[job.id] = dataclasses.replace(
                self._jobs[job.id], code_version=commit.code_version
            )
        for other, wake_on in commit.wake:
            self._wake(other, wake_on, now)
        for new in commit.create:
            if new.id not in self._jobs:
                self._create(new)
        sealed = self._append(job.id, commit.events, now)
        parks = commit.status is not None and commit.status.status is JobStatus.PARKED
        if parks and self._ready(job.id):
            self._wake(job.id, self._jobs[job.id].wake_on, now)
        if commit.cancel_children:
            self._cancel_children(job.id)
        return sealed

    def _wake(self, job_id: str, wake_on: str | None, now: float) -> None:
        job = self._jobs.get(job_id)
        if job is not None and job.status is JobStatus.PARKED and job.wake_on == wake_on:
            self._jobs[job_id] = dataclasses.replace(
                job, status=JobStatus.PENDING, run_at=now, wake_on=None, wake_at=None
            )

    def _ready(self, job_id: str) -> bool:
        """Whether what a parked job waits for is already there (or a cancel awaits it)."""
        if self._jobs[job_id].control is Control.CANCEL:
            return True
        wake_on = self._jobs[job_id].wake_on or ""
        kind, _, name = wake_on.partition(":")
        if kind == "signal":
            return any(
                s.job_id == job_id and s.name == name and s.consumed_position is None
                for s in self._signals.values()
            )
        other = self._jobs.get(name)
        return kind == "job" and other is not None and other.status.terminal

    def _check_effects(self, job_id: str, writes: Sequence[EffectWrite]) -> None:
        for write in writes:
            current = self._effects.get((job_id, write.position))
            if write.expect is None and current is not None:
                raise Conflict(effect_exists(job_id, write.position))
            if write.expect is not None and (current is None or current.state != write.expect):
                found = current.state if current else None
                raise Conflict(effect_not_expected(job_id, write, found))

    def _write_effect(self, job_id: str, write: EffectWrite, now: float) -> None:
        current = self._effects.get((job_id, write.position))
        if current is not None:
            self._effects[(job_id, write.position)] = dataclasses.replace(
                current,
                state=write.state,
                result=to_jsonable(write.result),
                error=to_jsonable(write.error),
                attempt=write.attempt,
                updated_at=now,
            )
            return
        self._effects[(job_id, write.position)] = Effect(
            job_id=job_id,
            position=write.position,
            tool=write.tool,
            effect=write.effect,
            args_hash=write.args_hash,
            idempotency_key=write.idempotency_key,
            state=write.state,
            result=to_jsonable(write.result),
            error=to_jsonable(write.error),
            attempt=write.attempt,
            created_at=now,
            updated_at=now,
        )

    def _append(self, job_id: str, drafts: Sequence[Any], now: float) -> list[Event]:
        if not drafts:
            return []
        job = self._jobs[job_id]
        sealed = seal_all(job_id, job.event_count, job.head_hash, drafts, now, self.signer)
        self._events[job_id].extend(sealed)
        self._jobs[job_id] = dataclasses.replace(
            job,
            event_count=job.event_count + len(sealed),
            head_hash=sealed[-1].hash,
            updated_at=now,
        )
        self._outbox(sealed)  # with the events, as every store does: see store.outbox
        return sealed

    async def events(
        self, job_id: str, *, after: int = -1, limit: int | None = None
    ) -> list[Event]:
        with self._lock:
            found = self._events.get(job_id, [])[max(after + 1, 0) :]
            return list(found if limit is None else found[:limit])

    async def journal(self, job_id: str) -> list[Recorded]:
        return [
            Recorded(e.seq, e.type, e.position, e.body, (e.at, e.data))
            for e in await self.events(job_id)
        ]

    async def effects(
        self,
        *,
        job_id: str | None = None,
        states: Sequence[EffectState] | None = None,
        tenant: str | None = None,
    ) -> list[Effect]:
        with self._lock:
            rows = [
                e
                for e in self._effects.values()
                if (job_id is None or e.job_id == job_id)
                and (states is None or e.state in states)
                and (tenant is None or self._jobs[e.job_id].tenant == tenant)
            ]
        return sorted(rows, key=lambda e: (e.job_id, e.position))

    async def blobs(self, job_id: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]:
        with self._lock:
            if hashes is None:
                return {h: b for (j, h), b in self._blobs.items() if j == job_id}
            return {h: self._blobs[(job_id, h)] for h in hashes if (job_id, h) in self._blobs}

    async def register_agents(self, agents: Mapping[str, Mapping[str, Any] | None]) -> None:
        now = self._clock()
        with self._lock:
            for name, schema in agents.items():
                self._agents[name] = now
                self._input_schemas[name] = copy.deepcopy(dict(schema)) if schema else None

    async def agent_input_schema(self, name: str) -> dict[str, Any] | None:
        schema = self._input_schemas.get(name)
        return copy.deepcopy(schema) if schema is not None else None

    async def agents(self) -> list[str]:
        return sorted(self._agents)

    async def wait_for_work(self, timeout: float) -> None:
        """No cross-process wake-ups here: workers poll (and wake each other in-process)."""
        await asyncio.sleep(timeout)

    async def send_signal(
        self, job_id: str, name: str, payload: Any, signal_id: str, sender: str | None
    ) -> tuple[Signal, bool]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            for signal in self._signals.values():
                if signal.job_id == job_id and signal.signal_id == signal_id:
                    return signal, False
            if job.status.terminal:
                raise signal_refusal(job)
            now = self._clock()
            seq = 1 + max((s.seq for s in self._signals.values() if s.job_id == job_id), default=0)
            signal = Signal(job_id, seq, name, signal_id, to_jsonable(payload), sender, now, None)
            self._signals[(job_id, seq)] = signal
            self._wake(job_id, signal_wake(name), now)
            return signal, True

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        with self._lock:
            found = [
                s
                for s in self._signals.values()
                if s.job_id == job_id and (not pending or s.consumed_position is None)
            ]
        return sorted(found, key=lambda s: s.seq)

    async def control(self, job_id: str, action: Control, by: str | None = None) -> Job:
        with self._lock:
            self._control(job_id, action, by)
            return self._jobs[job_id]

    def _control(self, job_id: str, action: Control, by: str | None = None) -> None:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        plan = plan_control(job, action, by)
        now = self._clock()
        if plan.status is not None:
            job = _with_status(job, plan.status, now)
        self._jobs[job_id] = dataclasses.replace(
            job,
            control=plan.control,
            control_by=plan.by if plan.control else None,
            updated_at=now,
        )
        if plan.event is not None:
            self._append(job_id, [plan.event], now)
        if plan.status is not None and plan.status.status.terminal and job.parent_id:
            self._wake(job.parent_id, job_wake(job_id), now)
        if plan.cascade:
            self._cancel_children(job_id, by)

    def _cancel_children(self, job_id: str, by: str | None = None) -> None:
        for child in [j.id for j in self._jobs.values() if j.parent_id == job_id]:
            with contextlib.suppress(Conflict):
                self._control(child, Control.CANCEL, by)

    async def next_wake(self) -> float | None:
        with self._lock:
            due = [
                j.wake_at
                for j in self._jobs.values()
                if j.status is JobStatus.PARKED and j.wake_at is not None
            ]
        return min(due, default=None)

    async def register_worker(
        self, owner: str, *, agents: Sequence[str] = (), queues: Sequence[str] | None = None
    ) -> None:
        now = self._clock()
        info = worker_info(owner, agents, queues, now)
        with self._lock:
            forget = now - WORKER_FORGET_AFTER
            self._workers = {k: w for k, w in self._workers.items() if w.last_seen >= forget}
            self._workers[owner] = self._registered[owner] = info

    async def touch_worker(self, owner: str) -> None:
        with self._lock:
            info = self._workers.get(owner) or self._registered.get(owner)
            if info is not None:
                self._workers[owner] = dataclasses.replace(info, last_seen=self._clock())

    async def unregister_worker(self, owner: str, *, graceful: bool = True) -> None:
        with self._lock:
            self._registered.pop(owner, None)
            if graceful:
                self._workers.pop(owner, None)

    async def workers(self) -> list[WorkerInfo]:
        with self._lock:
            now, rows = self._clock(), list(self._workers.values())
        seen = [
            dataclasses.replace(w, alive=w.last_seen >= now - WORKER_ALIVE_WINDOW) for w in rows
        ]
        return sorted(seen, key=lambda w: (w.started_at, w.id))

    async def reap(self) -> list[str]:
        """In one process a worker cannot die alone: nothing to reap."""
        return []


def _holds(job: Job, lease: Lease) -> bool:
    return job.lease_epoch == lease.epoch and job.status == JobStatus.RUNNING


def _with_status(job: Job, write: StatusWrite, now: float) -> Job:
    running = write.status == JobStatus.RUNNING
    return dataclasses.replace(
        job,
        status=write.status,
        park_reason=write.park_reason,
        park_detail=to_jsonable(write.park_detail),
        result=to_jsonable(write.result),
        error=to_jsonable(write.error),
        run_at=write.run_at if write.run_at is not None else now,
        wake_on=write.wake_on,
        wake_at=write.wake_at,
        control=None if write.status.terminal else job.control,
        control_by=None if write.status.terminal else job.control_by,
        recoveries=job.recoveries + write.recovery,
        lease_owner=job.lease_owner if running else None,
        lease_expires_at=job.lease_expires_at if running else None,
        updated_at=now,
    )
