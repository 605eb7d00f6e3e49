"""The journal cursor of one run of one job: the narrow interface of a run under a lease.

The agent function is called from the top on every run. Each durable operation takes the next
position (:meth:`JobRun.next_op`); a position the journal already holds answers from the
journal, without executing anything; the first position past the recorded prefix is live, and
from there every result is written (:meth:`JobRun.commit`) before the code continues. The
journal is read once when the job is claimed; nothing re-reads it per step.

Everything that touches a run goes through the methods of :class:`JobRun`: the ledger
(:mod:`aetheris.ledger`), compensation, the waits and the lifecycle (:mod:`aetheris.runner`)
ask it; none of them writes its fields. It enforces, on every path:

* A position holding *any* record (an operation, an effect intent, a wait) is compared with the
  operation the code makes there before anything else happens at it: a mismatch parks the job
  ``nondeterminism``. So a deploy that inserts a step in front of an unfinished effect cannot
  move that effect to a fresh position and dispatch it again.
* Every write is fenced by the lease, children included; buffered ``now``/``uuid``/``random``
  values and children travel with the next write.
* A run never parks or ends while a parallel branch dispatches an effect (``take_off`` /
  ``land`` / ``settle_flights``).
* Failures of the runtime itself (the database after the outage budget, a refused write, a bug
  of ours) reach agent code as :class:`~aetheris.errors.RuntimeFailure`, a ``BaseException``:
  agent code cannot swallow them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aetheris import callsite
from aetheris.agents import AgentDef
from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.errors import (
    ControlSignal,
    DeadlineExceeded,
    Draining,
    InvalidInput,
    JobCancelled,
    LeaseLost,
    ReplayEnded,
    RuntimeFailure,
    StoreUnavailable,
    Suspend,
    ToolFailed,
    UnknownAgent,
    WaitError,
)
from aetheris.journal import (
    Event,
    EventDraft,
    EventLike,
    EventType,
    OpRecord,
    canonical,
    to_jsonable,
)
from aetheris.models import Budget, Spend
from aetheris.observe import NOOP, Observer
from aetheris.positions import JournalIndex, names_op
from aetheris.probe import Probe
from aetheris.store.port import (
    Commit,
    Control,
    Effect,
    EffectState,
    EffectWrite,
    Head,
    Job,
    Lease,
    NewJob,
    ParkReason,
    Signal,
    StatusWrite,
    job_wake,
)
from aetheris.tools import CompensationRequest, ToolDef

log = logging.getLogger("aetheris.runner")
T = TypeVar("T")

current_run: ContextVar[JobRun | None] = ContextVar("aetheris_current_run", default=None)


class Committer(Protocol):
    """What a run needs of a store: fenced commits, its inbox, and reads."""

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]: ...
    async def get_job(self, job_id: str) -> Job | None: ...
    async def events(self, job_id: str) -> list[Event]: ...
    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]: ...
    async def key_holder(self, tenant: str, name: str, key: str) -> str | None: ...
    async def agents(self) -> list[str]: ...
    async def take_token(self, name: str, rate: float, burst: float) -> float: ...
    async def blobs(self, job_id: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]: ...


_SMALL = frozenset({int, float, bool, type(None)})
# What agent code may see from a durable operation: its own recorded outcome or its own misuse
# (input that does not validate, a child agent nobody serves).
FOR_THE_AGENT = (ToolFailed, WaitError, InvalidInput, UnknownAgent)


@dataclass(slots=True)
class Slot:
    """The journal position an operation takes, and what the journal holds there.

    Read-only by convention, not frozen: every operation takes one, a replayed one too, and a
    frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``."""

    position: int
    ordinal: int
    replayed: dict[str, Any] | None  # the data of the result the journal holds here, if any

    def recorded(self) -> OpRecord:
        """The result the journal holds here (``replayed`` must be set), read from its data."""
        assert self.replayed is not None
        return OpRecord.from_data(self.replayed)


def _created(events: Sequence[EventLike]) -> Mapping[str, Any]:
    """The job's ``job_created`` event data (the first event), or nothing."""
    if events and events[0].type is EventType.JOB_CREATED:
        return events[0].data
    return {}


def _as_write(row: Effect) -> EffectWrite:
    return EffectWrite(
        row.position,
        row.tool,
        row.effect,
        row.args_hash,
        row.idempotency_key,
        row.state,
        result=row.result,
        error=row.error,
        attempt=row.attempt,
    )


class JobRun:
    """One execution of a job: replays the recorded prefix, runs and records the rest."""

    def __init__(
        self,
        *,
        job: Job,
        lease: Lease,
        agent: AgentDef,
        store: Committer,
        events: Sequence[EventLike],
        effects: Sequence[Effect],
        lease_deadline: Callable[[], float],
        max_payload_bytes: int,
        signals: Sequence[Signal] = (),
        agents: Mapping[str, AgentDef] | None = None,
        outage_budget: float = 300.0,
        replay_only: bool = False,
        clock: Clock = SYSTEM_CLOCK,
        observer: Observer = NOOP,
    ) -> None:
        self.job, self.clock = job, clock
        self.probe = Probe(observer, job.id, lease.epoch, events, clock)  # metrics, traces, logs
        self.lease = lease
        self.agent, self.code = agent, agent.version  # the code version its entries record
        self.agents = agents or {}
        self.store = store
        self._index(events, effects)
        self._inbox = list(signals)
        self._taken: set[int] = set()
        self._deadline = lease_deadline
        self._max_payload = max_payload_bytes
        self._position = 0
        self._ordinals: dict[str, int] = {}
        self._pending: list[EventDraft] = []
        self._children: list[NewJob] = []
        self._head = Head(job.event_count, job.head_hash)
        self._commit_lock = asyncio.Lock()
        self._outage_budget = outage_budget
        self._replay_only = replay_only
        self.control = job.control
        self.compensating = False
        self._compensable: list[tuple[ToolDef, CompensationRequest]] = []
        self._closing: ControlSignal | None = None
        self._diverged_at: int | None = None
        self._phase = "new"  # "running" the agent, then "ending" (parking, ending, handing back)
        self._flights: dict[asyncio.Task[Any], int] = {}
        self._landed = asyncio.Event()
        # Model calls: spent so far (replayed ones too), limits, conversation hashing cache.
        self.spent = Spend()
        self.budget: Budget | None = Budget.of(_created(events).get("budget"))
        self._budget_read = bool(events)  # a first run reads no events: read it when needed
        self.memo: dict[str, Any] = {}

    def _index(self, events: Sequence[EventLike], effects: Sequence[Effect]) -> None:
        """What the journal and the ledger hold, by position (read once, at the claim)."""
        self._journal = journal = JournalIndex.read(events)
        # Children an earlier run created: asked only as the job ends (see _may_have_children).
        self._has_children = False
        # Not interrupted while replaying: a cancel then takes effect where the replay ends,
        # with every effect the journal holds known (and so compensated).
        self._replayed_to = journal.last()
        self._ledger = {e.position: _as_write(e) for e in effects}

    # -- the journal cursor -----------------------------------------------------------------

    @property
    def replay_only(self) -> bool:
        """A replay of the journal (``aetheris replay``): it executes and writes nothing, and
        integrations keep their own state out of the store too."""
        return self._replay_only

    @property
    def next_position(self) -> int:
        """The journal position the next operation takes."""
        return self._position

    def next_op(self, kind: str, name: str, args_digest: str) -> Slot:
        """Take the next position; check whatever the journal holds there against the code."""
        position = self._position
        self._position = position + 1
        ordinal = self._ordinals.get(name, 0) + 1
        self._ordinals[name] = ordinal
        journal = self._journal
        op = journal.op(position)  # a result: the most telling entry, and a replay's case
        if (
            op is not None
            and op.get("args_hash") == args_digest
            and op.get("name") == name
            and op.get("kind") == kind != "compensation"
        ):  # the operation it recorded, called again: a resume's every step
            if self.probe.on:
                self.probe.replayed(position, OpRecord.from_data(op))
            return Slot(position, ordinal, op)
        data = op if op is not None else journal.entry(position)
        if data is not None and data.get("kind") == "compensation" and not self.compensating:
            # An earlier run was cancelled (or ran out of time) here and began compensating:
            # this one ends at the same position, whatever the code was about to do.
            self._position = position
            self._ordinals[name] = ordinal - 1
            self._end_where_compensation_began(position)
        if data is not None and not names_op(data, kind, name, args_digest):
            record = journal.at(position)
            assert record is not None
            self.diverged(
                position, record.shown(), {"kind": kind, "name": name, "args_hash": args_digest}
            )
        if op is not None and self.probe.on:
            self.probe.replayed(position, OpRecord.from_data(op))
        if op is None:
            if self._replay_only:
                raise ReplayEnded(position)
            if not self.compensating:
                if self._closing is not None:
                    raise self._closing  # the run is ending: a parallel branch starts nothing
                self._honour_control(position)
        return Slot(position, ordinal, op)

    def _end_where_compensation_began(self, position: int) -> None:
        if self.control is Control.CANCEL:
            self._close(JobCancelled(f"cancelled by an operator before position {position}"))
        if self.deadline_passed():
            self._close(DeadlineExceeded(f"the job's deadline passed before position {position}"))

    def _honour_control(self, position: int) -> None:
        """Before anything new runs: a cancel, a pause or a passed deadline takes effect here."""
        if self.job.deadline is not None and self.clock.time() >= self.job.deadline:
            self._close(DeadlineExceeded(f"the job's deadline passed before position {position}"))
        if self.control is Control.CANCEL:
            self._close(JobCancelled(f"cancelled by an operator before position {position}"))
        if self.control is Control.PAUSE:
            detail = {"position": position, "message": "paused by an operator: `aetheris resume`"}
            self._close(Suspend(ParkReason.PAUSED, detail))

    def _close(self, signal: ControlSignal) -> None:
        """End the run with ``signal``; parallel branches reaching a new operation get it too."""
        if self._closing is None:
            self._closing = signal
        raise signal

    @property
    def interruptible(self) -> bool:
        """Whether the worker may cancel this run's task (to cancel it, or at its deadline).

        Only while agent code runs past the recorded prefix: once the run writes its end, an
        interruption would leave that write half done and the job held until its lease expires;
        during the replay it would compensate only what was replayed so far.
        """
        return self._phase == "running" and self._position > self._replayed_to

    @property
    def draining(self) -> bool:
        """The worker is stopping: nothing new is dispatched."""
        return isinstance(self._closing, Draining)

    @property
    def ending(self) -> bool:
        return self._phase == "ending"

    @property
    def diverged_at(self) -> int | None:
        """Where the code was found not to match the journal in this run, if it was."""
        return self._diverged_at

    def deadline_passed(self) -> bool:
        return self.job.deadline is not None and self.clock.time() >= self.job.deadline

    def begin(self) -> None:
        """Agent code starts running (interruptible once past the recorded prefix)."""
        self._phase = "running"

    def begin_ending(self) -> None:
        """The run now writes its end (or parks, or hands back): no more interruptions."""
        self._phase = "ending"

    def begin_compensating(self) -> None:
        """From here, positions are compensations: control and closing no longer stop them."""
        self.compensating = True

    def request(self, control: Control | None) -> None:
        """An operator's request (cancel, pause, or none), as the worker learned of it."""
        self.control = control

    def remember_compensation(self, tool: ToolDef, request: CompensationRequest) -> None:
        """A committed effect this run knows of, to compensate if the job fails or is cancelled."""
        self._compensable.append((tool, request))

    @property
    def compensations(self) -> list[tuple[ToolDef, CompensationRequest]]:
        """The committed effects with a compensation, in the order they were recorded."""
        return list(self._compensable)

    def wait_record(self, position: int) -> dict[str, Any] | None:
        """What the journal recorded when the wait at ``position`` first parked, if it did."""
        return self._journal.wait(position)

    def held(self, position: int) -> tuple[str | None, str | None] | None:
        """(kind, name) the journal holds at ``position``; (None, None) for no record there
        but one after (a replayed position); ``None`` past the recorded prefix (live)."""
        record = self._journal.at(position)
        if record is None:
            return None if position > self._replayed_to else (None, None)
        return record.kind, record.name

    def leftover(self) -> tuple[int, dict[str, Any]] | None:
        """The first record past the position reached, if the code stopped short of it."""
        later = [p for p in self._journal.positions() if p >= self._position]
        if not later:
            return None
        first = min(later)
        record = self._journal.at(first)
        assert record is not None  # a position of the journal holds an entry
        return first, record.shown()

    def open_intents(self) -> list[EffectWrite]:
        """Ledger rows with an intent and no outcome, by position."""
        return [w for _, w in sorted(self._ledger.items()) if w.state is EffectState.INTENT]

    def committed_tools(self) -> list[str]:
        """Tools whose effects this run knows committed (replayed, recorded or in the ledger)."""
        replayed = {request.tool for _, request in self._compensable}
        ledgered = {w.tool for w in self._ledger.values() if w.state is EffectState.COMMITTED}
        return sorted(replayed | ledgered)

    def drain(self) -> None:
        """The worker is stopping: start no new operation; what is in flight may finish."""
        if self._closing is None:
            self._closing = Draining("the worker is stopping")

    def diverged(self, position: int, expected: Mapping[str, Any], got: Mapping[str, Any]) -> None:
        """The code no longer matches the journal: park, never continue on a wrong prefix."""

        record = self._journal.at(position)
        holds = f" ({record.holds})" if record is not None else ""
        diff, location = callsite.divergence(position, expected, got, holds)
        detail = {"position": position, "expected": dict(expected), "got": dict(got), "diff": diff}
        detail |= {"location": location}
        self._diverged_at = position
        if not self.compensating:
            # A cancel or a passed deadline still ends the job; no compensation can run through
            # a journal that no longer matches the code (and parking would loop: it is due).
            if self.control is Control.CANCEL:
                self._close(JobCancelled(f"cancelled by an operator; {diff}"))
            if self.deadline_passed():
                self._close(DeadlineExceeded(f"the job's deadline passed; {diff}"))
        self._close(Suspend(ParkReason.NONDETERMINISM, detail))

    def check_lease(self) -> None:
        """Refuse to dispatch once the lease may have expired (e.g. after a SIGSTOP)."""
        if self.clock.monotonic() >= self._deadline():
            raise LeaseLost(self.lease.job_id, self.lease.epoch)

    def ledger_row(self, position: int) -> EffectWrite | None:
        """The ledger row at ``position`` as this run knows it (loaded, then as it wrote it)."""
        return self._ledger.get(position)

    def _may_have_children(self) -> bool:
        """Whether the job may have children to cancel as it ends: created by this run, or
        named by an entry of the journal (searched in its bytes, not decoded; a false yes
        costs one statement of the final commit). Not asked at the claim: a resume that
        parks or hands back never needs it."""
        return self._has_children or self._journal.may_hold("child")

    def create_child(self, new: NewJob) -> None:
        """Create ``new`` in the next fenced commit (with any value it was built from)."""
        self._children.append(new)
        self._has_children = True

    # -- operations in flight ---------------------------------------------------------------

    def take_off(self) -> asyncio.Task[Any]:
        """An operation is in flight, from its intent to its recorded outcome; call
        :meth:`land` with the result in a ``finally`` (plain calls: this is the hot path)."""
        task = asyncio.current_task()
        assert task is not None
        self._flights[task] = self._flights.get(task, 0) + 1
        return task

    def land(self, task: asyncio.Task[Any]) -> None:
        left = self._flights[task] - 1
        if left:
            self._flights[task] = left
        else:
            del self._flights[task]
        self._landed.set()

    async def settle_flights(self, *, interrupt: bool = False) -> None:
        """Wait until no other branch has an operation in flight (interrupting them if asked)."""
        me = asyncio.current_task()
        if interrupt:
            for task in list(self._flights):
                if task is not me:
                    task.cancel()
        while any(task is not me and not task.done() for task in self._flights):
            self._landed.clear()
            await self._landed.wait()

    async def suspend(self, suspend: Suspend) -> Suspend:
        """``suspend``, to raise once every effect a parallel branch dispatches has landed."""
        if self._closing is None:
            self._closing = suspend
        await self.settle_flights()
        return suspend

    # -- store access -----------------------------------------------------------------------

    async def read(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A read a durable operation needs: an outage is waited out, as commits do."""
        delay = 0.05
        deadline = self.clock.monotonic() + self._outage_budget
        while True:
            try:
                return await fn(*args)
            except StoreUnavailable as exc:
                if self.clock.monotonic() + delay > deadline:
                    raise RuntimeFailure(f"job {self.job.id}: a read failed: {exc}") from exc
                log.warning("job %s: read failed (%s); retrying in %.2fs", self.job.id, exc, delay)
            except Exception as exc:
                raise RuntimeFailure(f"job {self.job.id}: a read failed: {exc}") from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def budget_is(self, budget: Budget | None) -> None:
        """The job's budget as its first claim read it: no read at its first model call."""
        self.budget, self._budget_read = budget, True

    async def limits(self) -> Budget | None:
        """The job's budget as it stands in this run (read from its first event once)."""
        if not self._budget_read:
            events = await self.read(self.store.events, self.job.id)
            self.budget = Budget.of(_created(events).get("budget"))
            self._budget_read = True
        return self.budget

    async def requested_by(self) -> dict[str, str]:
        """``{"by": who}`` asked for the cancel or pause this run honours (``{}``: unknown)."""
        job = await self.read(self.store.get_job, self.job.id)
        return {"by": job.control_by} if job is not None and job.control_by else {}

    async def take_signal(self, name: str) -> Signal | None:
        """The oldest signal of ``name`` not yet received by this job (re-reading the inbox).

        Parallel branches may wait for the same name: each signal goes to one of them only.
        """
        found = next((s for s in self._inbox if s.name == name), None)
        if found is None:
            inbox = await self.read(self.store.signals, self.job.id)
            self._inbox = [s for s in inbox if s.seq not in self._taken]
            found = next((s for s in self._inbox if s.name == name), None)
        if found is not None:
            self._inbox.remove(found)
            self._taken.add(found.seq)
        return found

    async def commit(
        self,
        *events: EventDraft,
        effects: Sequence[EffectWrite] = (),
        status: StatusWrite | None = None,
        consume: Sequence[tuple[int, int]] = (),
        blobs: Sequence[tuple[str, bytes]] = (),
        correlate: Sequence[tuple[str, str]] = (),
    ) -> list[Event]:
        """A fenced write; buffered ``now``/``uuid``/``random`` values and children travel with it.

        Commits of one run are serialized (parallel operations may race to commit), and each
        names the head it extends. If the database goes away mid-commit, the commit is retried
        until it lands, is fenced, or the outage budget is spent; a reply lost on the way back
        is recognised by the head having moved, so nothing is written twice.
        """
        async with self._commit_lock:
            drafts, self._pending = [*self._pending, *events], []
            children, self._children = self._children, []
            ends = status is not None and status.status.terminal
            wake: tuple[tuple[str, str], ...] = ()
            if ends and self.job.parent_id:
                wake = ((self.job.parent_id, job_wake(self.job.id)),)  # its parent waits
            commit = Commit(
                drafts,
                effects,
                status,
                self._head,
                consume,
                wake,
                create=children,
                cancel_children=ends and self._may_have_children(),
                blobs=blobs,
                correlate=correlate,
            ).by_code(self.code)
            try:
                sealed = await self._commit_surviving_outages(commit)
            except Exception as exc:
                raise RuntimeFailure(f"job {self.job.id}: a write failed: {exc}") from exc
            if sealed:
                self._head = Head(sealed[-1].seq + 1, sealed[-1].hash)
            self._remember(effects)
            if self.probe.on:
                self.probe.committed(drafts)
            return sealed

    def _remember(self, writes: Sequence[EffectWrite]) -> None:
        for write in writes:
            known = self._ledger.get(write.position)
            if known is None or write.expect is None:
                self._ledger[write.position] = write
            else:  # an update names only what changes (a compensation names no args hash)
                self._ledger[write.position] = dataclasses.replace(
                    known,
                    state=write.state,
                    result=write.result,
                    error=write.error,
                    attempt=write.attempt,
                )

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
                landed = await self._landed_commit(commit)
                if landed is not None:
                    return landed

    async def _landed_commit(self, commit: Commit) -> list[Event] | None:
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
            type(jsonable) is str
            and len(jsonable) * 4 < self._max_payload
            and "\x00" not in jsonable
        ):
            return jsonable  # cannot be over the limit: skip encoding it just to measure
        size = len(canonical(jsonable))  # refuses what no store can hold (NaN, NUL characters)
        if size > self._max_payload:
            raise InvalidInput(
                f"{what} returned {size} bytes, over the payload limit of {self._max_payload}"
            )
        return jsonable

    # -- operations agent code reaches through Context and tools ---------------------------

    async def guarded(self, operation: Awaitable[T]) -> T:
        """Run a durable operation for agent code: only its own outcome may reach the agent."""
        try:
            return await operation
        except FOR_THE_AGENT:
            raise
        except Exception as exc:
            raise self.runtime_failure(exc) from exc

    def runtime_failure(self, exc: Exception) -> RuntimeFailure:
        """What agent code gets instead of an error of the runtime's own (``raise ... from``)."""
        return RuntimeFailure(
            f"job {self.job.id}: the runtime failed in a durable operation: "
            f"{type(exc).__name__}: {exc}"
        )

    def record_value(self, kind: str, produce: Callable[[], Any], name: str = "") -> Any:
        """``ctx.now()``, ``ctx.uuid()``, ``ctx.random()``, a patch marker (``name``: its id):
        recorded once, replayed after. The value is buffered and written with the next commit,
        which always precedes anything the value can influence outside the process.
        """
        slot = self.next_op(kind, name or kind, "")
        if slot.replayed is not None:
            return slot.recorded().result
        value = produce()
        record = OpRecord(kind, name or kind, slot.ordinal, "", result=value)
        self._pending.append(record.draft(slot.position))
        return value
