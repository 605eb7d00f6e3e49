"""Replay and live execution of one job under one lease.

The agent function is called from the top. Each durable operation takes the next position; a
position the journal already holds returns its recorded result (or raises its recorded error)
without executing anything. The first position past the recorded prefix is live: from there,
every result is written before the code continues.

The journal is read once when the job is claimed; nothing re-reads it per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.context import Context, current_run
from aetheris.effects import (
    NO_RETRY,
    Call,
    CompensationFailed,
    CompensationRequest,
    ToolDef,
    call_tool,
    compensate_all,
    deliver,
    error_doc,
    return_adapter,
    run_pure,
)
from aetheris.errors import (
    ControlSignal,
    DeadlineExceeded,
    EncodingError,
    InvalidInput,
    JobCancelled,
    LeaseLost,
    StoreUnavailable,
    Suspend,
    ToolFailed,
)
from aetheris.journal import Event, EventDraft, EventType, args_hash, canonical, to_jsonable
from aetheris.store.port import (
    Commit,
    Control,
    Effect,
    EffectClass,
    EffectState,
    EffectWrite,
    Head,
    Job,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    Signal,
    StatusWrite,
    job_wake,
)

if TYPE_CHECKING:
    from aetheris.app import AgentDef

log = logging.getLogger("aetheris.runner")


class Committer(Protocol):
    """What a run needs of a store: fenced commits, its inbox, child jobs, and reads."""

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def events(self, job_id: str) -> list[Event]: ...
    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]: ...
    async def create_job(self, new: NewJob) -> tuple[Job, bool]: ...


class ReplayEnded(ControlSignal):
    """A replay-only run reached the end of the recorded prefix; nothing live may run."""

    def __init__(self, position: int) -> None:
        self.position = position
        super().__init__(f"the journal ends before position {position}")


_SMALL = frozenset({int, float, bool, type(None)})


@dataclass(frozen=True, slots=True)
class Slot:
    """The journal position an operation takes, and what the journal holds there."""

    position: int
    ordinal: int
    recorded: Event | None


class JobRun:
    """One execution of a job: replays the recorded prefix, runs and records the rest."""

    def __init__(
        self,
        *,
        job: Job,
        lease: Lease,
        agent: AgentDef,
        store: Committer,
        events: Sequence[Event],
        effects: Sequence[Effect],
        lease_deadline: Callable[[], float],
        max_payload_bytes: int,
        signals: Sequence[Signal] = (),
        agents: Mapping[str, AgentDef] | None = None,
        outage_budget: float = 300.0,
        replay_only: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.job = job
        self.clock = clock
        self.lease = lease
        self.agent = agent
        self.agents = agents or {}
        self.store = store
        self._ops: dict[int, Event] = {}
        self.waits: dict[int, dict[str, Any]] = {}
        for event in events:
            if event.position is None:
                continue
            if event.type is EventType.OP:
                self._ops[event.position] = event
            elif event.type is EventType.WAIT:
                self.waits[event.position] = event.data
        self._ledger = {e.position: e for e in effects}
        self._inbox = list(signals)
        self._deadline = lease_deadline
        self._max_payload = max_payload_bytes
        self._position = 0
        self._ordinals: dict[str, int] = {}
        self._pending: list[EventDraft] = []
        self._head = Head(job.event_count, job.head_hash)
        self._commit_lock = asyncio.Lock()
        self._outage_budget = outage_budget
        self._replay_only = replay_only
        self.control = job.control
        self.compensating = False
        self.compensable: list[tuple[ToolDef, CompensationRequest]] = []
        self.in_flight: dict[int, EffectWrite] = {}

    # -- the journal cursor -----------------------------------------------------------------

    def next_op(self, kind: str, name: str, args_digest: str) -> Slot:
        """Take the next position; check that a recorded entry there is the same operation."""
        position = self._position
        self._position += 1
        ordinal = self._ordinals.get(name, 0) + 1
        self._ordinals[name] = ordinal
        recorded = self._ops.get(position)
        if recorded is None:
            if self._replay_only:
                raise ReplayEnded(position)
            if not self.compensating:
                self._honour_control(position)
        if recorded is not None:
            data = recorded.data
            if (data["kind"], data["name"], data["args_hash"]) != (kind, name, args_digest):
                self.diverged(
                    position,
                    {"kind": data["kind"], "name": data["name"], "args_hash": data["args_hash"]},
                    {"kind": kind, "name": name, "args_hash": args_digest},
                )
        return Slot(position, ordinal, recorded)

    def _honour_control(self, position: int) -> None:
        """Before anything new runs: a cancel, a pause or a passed deadline takes effect here."""
        if self.job.deadline is not None and self.clock.time() >= self.job.deadline:
            raise DeadlineExceeded(f"the job's deadline passed before position {position}")
        if self.control is Control.CANCEL:
            raise JobCancelled(f"cancelled by an operator before position {position}")
        if self.control is Control.PAUSE:
            detail = {"position": position, "message": "paused by an operator: `aetheris resume`"}
            raise Suspend(ParkReason.PAUSED, detail)

    async def take_signal(self, name: str) -> Signal | None:
        """The oldest signal of ``name`` not yet received by this job (re-reading the inbox)."""
        found = next((s for s in self._inbox if s.name == name), None)
        if found is None:
            self._inbox = await self.store.signals(self.job.id)
            found = next((s for s in self._inbox if s.name == name), None)
        if found is not None:
            self._inbox.remove(found)
        return found

    def ledger_row(self, position: int) -> Effect | None:
        return self._ledger.get(position)

    def diverged(self, position: int, expected: Mapping[str, Any], got: Mapping[str, Any]) -> None:
        """The code no longer matches the journal: park, never continue on a wrong prefix."""

        def show(entry: Mapping[str, Any]) -> str:
            if not entry:
                return "(nothing)"
            digest = entry.get("args_hash") or ""
            return f"{entry.get('kind')} {entry.get('name')} (args {digest[:12]})"

        diff = (
            f"nondeterminism at position {position}: the journal and the code disagree\n"
            f"  journal: {show(expected)}\n"
            f"  code:    {show(got)}"
        )
        detail = {"position": position, "expected": dict(expected), "got": dict(got), "diff": diff}
        raise Suspend(ParkReason.NONDETERMINISM, detail)

    def check_lease(self) -> None:
        """Refuse to dispatch once the lease may have expired (e.g. after a SIGSTOP)."""
        if self.clock.monotonic() >= self._deadline():
            raise LeaseLost(self.lease.job_id, self.lease.epoch)

    async def commit(
        self,
        *events: EventDraft,
        effects: Sequence[EffectWrite] = (),
        status: StatusWrite | None = None,
        consume: Sequence[tuple[int, int]] = (),
    ) -> list[Event]:
        """A fenced write; buffered ``now``/``uuid``/``random`` values travel with it.

        Commits of one run are serialized (parallel operations may race to commit), and each
        names the head it extends. If the database goes away mid-commit, the commit is retried
        until it lands, is fenced, or the outage budget is spent; a reply lost on the way back
        is recognised by the head having moved, so nothing is written twice.
        """
        async with self._commit_lock:
            drafts, self._pending = [*self._pending, *events], []
            wake: tuple[tuple[str, str], ...] = ()
            if status is not None and status.status.terminal and self.job.parent_id:
                wake = ((self.job.parent_id, job_wake(self.job.id)),)  # its parent waits
            commit = Commit(drafts, effects, status, self._head, consume, wake)
            sealed = await self._commit_surviving_outages(commit)
            if sealed:
                self._head = Head(sealed[-1].seq + 1, sealed[-1].hash)
            return sealed

    async def _commit_surviving_outages(self, commit: Commit) -> list[Event]:
        deadline = self.clock.monotonic() + self._outage_budget
        delay = 0.05
        while True:
            try:
                return await self.store.commit(self.lease, commit)
            except StoreUnavailable as exc:
                if self.clock.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "job %s: commit failed (%s); retrying in %.2fs", self.job.id, exc, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
            with contextlib.suppress(StoreUnavailable):
                landed = await self._landed(commit)
                if landed is not None:
                    return landed

    async def _landed(self, commit: Commit) -> list[Event] | None:
        """After an ambiguous failure: the events of ``commit`` if it did land, else None."""
        job = await self.store.get_job(self.job.id)
        if job is None or job.lease_epoch != self.lease.epoch:
            raise LeaseLost(self.lease.job_id, self.lease.epoch)
        assert commit.head is not None
        if job.event_count == commit.head.count:
            return None
        events = await self.store.events(self.job.id)
        return events[commit.head.count : commit.head.count + len(commit.events)]

    def encode_result(self, value: Any, what: str) -> Any:
        """JSON form of a result, within the payload limit (raises :class:`InvalidInput`)."""
        jsonable = to_jsonable(value)
        if type(jsonable) in _SMALL or (
            type(jsonable) is str and len(jsonable) * 4 < self._max_payload
        ):
            return jsonable  # cannot be over the limit: skip encoding it just to measure
        size = len(canonical(jsonable))
        if size > self._max_payload:
            raise InvalidInput(
                f"{what} returned {size} bytes, over the payload limit of {self._max_payload}"
            )
        return jsonable

    # -- operations agent code reaches through Context and tools ---------------------------

    def record_value(self, kind: str, produce: Callable[[], Any]) -> Any:
        slot = self.next_op(kind, kind, "")
        if slot.recorded is not None:
            return slot.recorded.data["result"]
        value = produce()
        data = {
            "kind": kind,
            "name": kind,
            "ordinal": slot.ordinal,
            "args_hash": "",
            "effect": "pure",
            "outcome": "pure",
            "result": value,
        }
        self._pending.append(EventDraft(EventType.OP, data, slot.position))
        return value

    async def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[Any]] | Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        ahash = args_hash(args, kwargs)
        slot = self.next_op("step", name, ahash)
        is_async = asyncio.iscoroutinefunction(fn)
        call = Call(
            "step", name, fn, is_async, args, kwargs, ahash, NO_RETRY, EffectClass.PURE, slot
        )
        adapter = return_adapter(fn)
        if slot.recorded is not None:
            return deliver(call, slot.recorded.data, adapter)
        return await run_pure(self, call, adapter)

    async def call_tool(self, tool: ToolDef, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return await call_tool(self, tool, args, kwargs)

    # -- lifecycle --------------------------------------------------------------------------

    async def execute(self) -> None:
        """Run the agent to its end, a park, or the loss of the lease (which propagates)."""
        token = current_run.set(self)
        try:
            await self._execute()
        except Suspend as suspend:
            await self._park(suspend)
        except JobCancelled as cancelled:
            await self._stop(cancelled)
        except DeadlineExceeded as passed:
            await self._fail(passed)
        except asyncio.CancelledError:
            # The worker interrupts a run in flight to cancel it or to enforce its deadline;
            # any other cancellation (shutdown, lost lease) is not ours to handle.
            task = asyncio.current_task()
            if self.control is Control.CANCEL and task is not None:
                task.uncancel()
                await self._stop(JobCancelled("cancelled by an operator while running"))
            elif self._deadline_passed() and task is not None:
                task.uncancel()
                await self._fail(DeadlineExceeded("the job's deadline passed while running"))
            else:
                raise
        finally:
            current_run.reset(token)

    def _deadline_passed(self) -> bool:
        return self.job.deadline is not None and self.clock.time() >= self.job.deadline

    async def _execute(self) -> None:
        try:
            kwargs = self.agent.validate(self.job.input)
            value = await self.agent.fn(Context(self), **kwargs)
            self._check_consumed()
            result = self.encode_result(value, f"agent {self.agent.name!r}")
        except Exception as exc:
            await self._fail(exc)
            return
        await self.commit(
            EventDraft(EventType.JOB_SUCCEEDED, {"result": result}),
            status=StatusWrite(JobStatus.SUCCEEDED, result=result),
        )

    async def fail_poisoned(self, limit: int) -> None:
        """A job whose workers keep dying while running it is failed, not retried forever."""
        error = {
            "type": "PoisonJob",
            "message": f"its worker died {self.job.recoveries} times while running it "
            f"(max_recoveries={limit}); giving up",
        }
        await self._finish(JobStatus.FAILED, EventType.JOB_FAILED, error)

    def _check_consumed(self) -> None:
        leftover = sorted(p for p in self._ops if p >= self._position)
        if leftover:
            data = self._ops[leftover[0]].data
            self.diverged(
                leftover[0],
                {"kind": data["kind"], "name": data["name"], "args_hash": data["args_hash"]},
                {},
            )

    async def _mark_in_flight_in_doubt(self) -> list[int]:
        """Interrupted mid-dispatch: an at_most_once effect may have happened. Say so."""
        doubts = []
        for position, intent in sorted(self.in_flight.items()):
            if intent.effect is not EffectClass.AT_MOST_ONCE:
                continue
            data = {
                "name": intent.tool,
                "idempotency_key": intent.idempotency_key,
                "attempt": intent.attempt,
                "interrupted": True,
            }
            write = dataclasses.replace(
                intent, state=EffectState.IN_DOUBT, expect=EffectState.INTENT
            )
            await self.commit(
                EventDraft(EventType.EFFECT_IN_DOUBT, data, position), effects=[write]
            )
            doubts.append(position)
        self.in_flight.clear()
        return doubts

    async def _stop(self, cancelled: JobCancelled) -> None:
        """Cancelled: compensate what was committed, leave in doubt what may have happened."""
        self.compensating = True
        error: dict[str, Any] = {"type": "Cancelled", "message": str(cancelled)}
        error["in_doubt"] = await self._mark_in_flight_in_doubt()
        try:
            error["compensated"] = await compensate_all(self)
        except CompensationFailed as failed:
            error["compensation_error"] = str(failed)
        await self._finish(JobStatus.CANCELLED, EventType.JOB_CANCELLED, error)

    async def _fail(self, exc: BaseException) -> None:
        self.compensating = True
        if isinstance(exc, DeadlineExceeded):
            await self._mark_in_flight_in_doubt()
        error = error_doc(exc)
        if isinstance(exc, ToolFailed):
            error.update(position=exc.position, tool=exc.name, cause=exc.error_type)
        if isinstance(exc, EncodingError | InvalidInput) and not self._ops:
            error["type"] = type(exc).__name__
        error["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
        if not self.compensable:
            await self._finish(JobStatus.FAILED, EventType.JOB_FAILED, error)
            return
        try:
            undone = await compensate_all(self)
        except CompensationFailed as failed:
            error["compensation_error"] = str(failed)
            await self._finish(JobStatus.FAILED, EventType.JOB_FAILED, error)
            return
        self._check_consumed()
        error["compensated"] = undone
        await self._finish(JobStatus.COMPENSATED, EventType.JOB_COMPENSATED, error)

    async def _finish(self, status: JobStatus, event: EventType, error: dict[str, Any]) -> None:
        await self.commit(
            EventDraft(event, {"error": error}), status=StatusWrite(status, error=error)
        )

    async def _park(self, suspend: Suspend) -> None:
        reason = ParkReason(suspend.reason)
        events = []
        if suspend.wait is not None:
            position, data = suspend.wait
            events.append(EventDraft(EventType.WAIT, data, position))
        events.append(
            EventDraft(EventType.JOB_PARKED, {"reason": reason.value, "detail": suspend.detail})
        )
        status = StatusWrite(
            JobStatus.PARKED,
            park_reason=reason,
            park_detail=suspend.detail,
            wake_on=suspend.wake_on,
            wake_at=suspend.wake_at,
        )
        await self.commit(*events, status=status)
