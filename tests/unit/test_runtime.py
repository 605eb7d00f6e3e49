"""The runtime alone (cursor, ledger, waits, lifecycle) against a fake store port: no database.

The fake keeps what the runtime writes, so each test reads the commits a run made: their
events, ledger writes, status, children, in order. End-to-end tests over real stores live in
``tests/integration``; these pin the rules of the runtime itself, fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from aetheris import Committed, NotExecuted, RetryPolicy
from aetheris.agents import AgentDef
from aetheris.errors import (
    Draining,
    JobCancelled,
    RuntimeFailure,
    SignalTimeout,
    StoreError,
    Suspend,
    ToolFailed,
    UnknownAgent,
)
from aetheris.journal import GENESIS_HASH, Event, EventDraft, EventType, OpRecord, args_hash
from aetheris.ledger import call_tool, step
from aetheris.run import JobRun
from aetheris.runner import execute
from aetheris.store._shared import seal_all, with_created_budget
from aetheris.store.port import (
    Budget,
    Claim,
    Commit,
    Control,
    EffectClass,
    EffectState,
    Job,
    JobStatus,
    Lease,
    ParkReason,
    Signal,
)
from aetheris.tools import ToolDef
from aetheris.waits import approval, run_agent, wait_for_signal


@dataclass
class FakeStore:
    """What a run needs of a store, in memory; ``fail_with`` makes the next commit raise."""

    job: Job
    commits: list[Commit] = field(default_factory=list)
    journal: list[Event] = field(default_factory=list)
    inbox: list[Signal] = field(default_factory=list)
    children: dict[str, Job] = field(default_factory=dict)
    fail_with: Exception | None = None
    registered: list[str] = field(default_factory=list)  # agents that workers registered
    agent_reads: int = 0

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        if self.fail_with is not None:
            raise self.fail_with
        head = commit.head or _head(self.journal)
        sealed = seal_all(self.job.id, head.count, head.hash, commit.events, 0.0)
        self.commits.append(commit)
        self.journal.extend(sealed)
        return sealed

    async def get_job(self, job_id: str) -> Job | None:
        return self.children.get(job_id, self.job if job_id == self.job.id else None)

    async def events(self, job_id: str) -> list[Event]:
        return list(self.journal)

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        return list(self.inbox)

    async def agents(self) -> list[str]:
        self.agent_reads += 1
        return list(self.registered)

    def written(self, kind: EventType) -> list[dict[str, Any]]:
        return [d.data for c in self.commits for d in c.events if d.type is kind]


def _head(events: Sequence[Event]) -> Any:
    from aetheris.store.port import Head

    return Head(len(events), events[-1].hash if events else GENESIS_HASH)


def make_job(**fields: Any) -> Job:
    job = Job(
        id="j1",
        agent="a",
        input={},
        status=JobStatus.RUNNING,
        park_reason=None,
        park_detail=None,
        result=None,
        error=None,
        idempotency_key=None,
        queue="default",
        priority=0,
        lease_epoch=1,
        lease_owner="w",
        lease_expires_at=None,
        run_at=0.0,
        attempts=1,
        event_count=0,
        head_hash=GENESIS_HASH,
        created_at=0.0,
        updated_at=0.0,
    )
    return replace(job, **fields)


async def _noop(ctx: Any) -> None:
    return None


def make_run(
    store: FakeStore,
    events: Sequence[Event] = (),
    agent: AgentDef | None = None,
    **options: Any,
) -> JobRun:
    return JobRun(
        job=store.job,
        lease=Lease(store.job.id, 1, "w"),
        agent=agent or AgentDef.of("a", _noop),
        store=store,  # type: ignore[arg-type]
        events=events,
        effects=options.pop("effects", ()),
        lease_deadline=lambda: float("inf"),
        max_payload_bytes=1 << 20,
        **options,
    )


def op_event(position: int, record: OpRecord, seq: int = 0) -> Event:
    [event] = seal_all("j1", seq, GENESIS_HASH, [record.draft(position)], 0.0)
    return event


def tool(name: str = "pay", effect: EffectClass = EffectClass.AT_MOST_ONCE, **kw: Any) -> ToolDef:
    calls: list[Any] = kw.pop("calls", [])

    async def body(amount: int) -> str:
        calls.append(amount)
        return f"paid {amount}"

    return ToolDef(name, body, effect, kw.pop("retry", RetryPolicy(max_attempts=1)), **kw)


# -- the cursor ---------------------------------------------------------------------------------


async def test_a_recorded_step_returns_its_result_without_running() -> None:
    store = FakeStore(make_job())
    recorded = OpRecord("step", "s", 1, _hash((2,)), result=3)
    run = make_run(store, [op_event(0, recorded)])
    ran: list[int] = []
    assert await step(run, "s", lambda x: ran.append(x) or x + 1, (2,), {}) == 3
    assert ran == [] and store.commits == []


async def test_a_step_the_journal_names_otherwise_parks_nondeterminism() -> None:
    store = FakeStore(make_job())
    run = make_run(store, [op_event(0, OpRecord("step", "s", 1, _hash((2,)), result=3))])
    with pytest.raises(Suspend) as parked:
        await step(run, "other", lambda: 1, (), {})
    assert parked.value.reason == ParkReason.NONDETERMINISM
    assert "journal: step s" in parked.value.detail["diff"]


async def test_an_intent_is_compared_with_the_code_before_control() -> None:
    store = FakeStore(make_job(control=Control.PAUSE))
    intent = {"kind": "tool", "name": "pay", "ordinal": 1, "args_hash": "x"}
    [event] = seal_all("j1", 0, GENESIS_HASH, [_draft(EventType.INTENT, intent, 0)], 0.0)
    run = make_run(store, [event])
    with pytest.raises(Suspend) as parked:  # a step inserted in front of the charge
        run.next_op("now", "now", "")
    assert parked.value.reason == ParkReason.NONDETERMINISM  # not paused there: compared first
    assert "effect intent" in parked.value.detail["diff"]


async def test_a_live_position_honours_a_cancel() -> None:
    run = make_run(FakeStore(make_job(control=Control.CANCEL)))
    with pytest.raises(JobCancelled):
        run.next_op("step", "s", "")


# -- the ledger --------------------------------------------------------------------------------


async def test_an_at_most_once_call_writes_its_intent_before_and_its_outcome_after() -> None:
    store = FakeStore(make_job())
    calls: list[int] = []
    result = await call_tool(make_run(store), tool(calls=calls), (5,), {})
    assert result == "paid 5" and calls == [5]
    [intent], [outcome] = (c.effects for c in store.commits)
    assert (intent.state, intent.expect) == (EffectState.INTENT, None)
    assert (outcome.state, outcome.expect) == (EffectState.COMMITTED, EffectState.INTENT)
    assert store.written(EventType.OP)[0]["idempotency_key"] == intent.idempotency_key


@pytest.mark.parametrize(
    ("answer", "dispatched", "settled"),
    [(Committed("seen"), 0, "committed"), (NotExecuted(), 1, "not_executed")],
)
async def test_an_intent_found_without_outcome_asks_reconcile(
    answer: Any, dispatched: int, settled: str
) -> None:
    store = FakeStore(make_job())
    calls: list[int] = []
    pay = tool(calls=calls, reconcile=lambda key: answer)
    row = await _intent_of(pay)
    await call_tool(make_run(store, effects=[row]), pay, (5,), {})
    assert len(calls) == dispatched
    resolved = store.written(EventType.EFFECT_RESOLVED)
    assert [r["resolution"] for r in resolved] == [settled]


async def test_an_intent_found_without_outcome_and_no_reconcile_parks_in_doubt() -> None:
    store = FakeStore(make_job())
    calls: list[int] = []
    pay = tool(calls=calls)
    with pytest.raises(Suspend) as parked:
        await call_tool(make_run(store, effects=[await _intent_of(pay)]), pay, (5,), {})
    assert parked.value.reason == ParkReason.EFFECT_IN_DOUBT and calls == []
    [doubt] = store.commits[0].effects
    assert doubt.state is EffectState.IN_DOUBT


async def test_an_idempotent_intent_is_dispatched_again_with_the_same_key() -> None:
    store = FakeStore(make_job())
    reserve = tool("reserve", EffectClass.IDEMPOTENT)
    row = await _intent_of(reserve)
    await call_tool(make_run(store, effects=[row]), reserve, (5,), {})
    [again] = store.commits[0].effects
    assert (again.attempt, again.idempotency_key) == (2, row.idempotency_key)


async def test_a_stopping_worker_dispatches_nothing_whose_intent_it_wrote() -> None:
    store = FakeStore(make_job())
    calls: list[int] = []
    run = make_run(store)
    run.drain()
    with pytest.raises(Draining):  # next_op raises it for a new operation
        await call_tool(run, tool(calls=calls), (5,), {})
    assert calls == [] and store.commits == []


async def test_a_store_error_reaches_agent_code_as_a_runtime_failure() -> None:
    store = FakeStore(make_job(), fail_with=StoreError("disk on fire"))
    with pytest.raises(RuntimeFailure) as failed:
        await call_tool(make_run(store), tool(), (5,), {})
    assert not isinstance(failed.value, Exception)  # an agent's except Exception cannot catch it
    assert isinstance(failed.value.__cause__, StoreError)


async def test_a_tool_that_fails_for_good_is_recorded_and_raised_as_tool_failed() -> None:
    async def broken(amount: int) -> str:
        raise ValueError("card declined")

    store = FakeStore(make_job())
    pay = ToolDef("pay", broken, EffectClass.AT_MOST_ONCE, RetryPolicy())
    with pytest.raises(ToolFailed, match="card declined"):
        await call_tool(make_run(store), pay, (5,), {})
    [_, outcome] = (c.effects[0] for c in store.commits)
    assert outcome.state is EffectState.FAILED


# -- waits -------------------------------------------------------------------------------------


async def test_a_signal_in_the_inbox_is_received_in_the_same_commit() -> None:
    store = FakeStore(make_job(), inbox=[Signal("j1", 1, "go", "s1", "hi", None, 0.0, None)])
    assert await wait_for_signal(make_run(store), "go", None) == "hi"
    assert list(store.commits[0].consume) == [(1, 0)]


async def test_a_wait_with_nothing_to_receive_parks_and_journals_itself() -> None:
    run = make_run(FakeStore(make_job()))
    with pytest.raises(Suspend) as parked:
        await wait_for_signal(run, "go", 30.0)
    assert parked.value.wake_on == "signal:go"
    position, record = parked.value.wait or (None, {})
    assert (position, record["kind"], record["name"]) == (0, "signal", "go")


async def test_a_wait_past_its_journaled_deadline_records_a_timeout() -> None:
    store = FakeStore(make_job())
    wait = {"kind": "signal", "name": "go", "args_hash": "", "deadline": 1.0}
    [event] = seal_all("j1", 0, GENESIS_HASH, [_draft(EventType.WAIT, wait, 0)], 0.0)
    with pytest.raises(SignalTimeout):
        await wait_for_signal(make_run(store, [event]), "go", 30.0)
    assert store.written(EventType.OP)[0]["error"]["type"] == "SignalTimeout"


async def test_a_decision_for_other_arguments_rejects_the_approval() -> None:
    decision = {"decision": "approved", "by": "x", "args_hash": "not-this-one"}
    inbox = [Signal("j1", 1, "approval:0", "approval:0", decision, "x", 0.0, None)]
    store = FakeStore(make_job(), inbox=inbox)
    with pytest.raises(Exception, match="rejected"):
        await approval(make_run(store), "pay", {"amount": 5}, None, None)


async def test_a_child_is_created_by_the_parents_park_commit() -> None:
    store = FakeStore(make_job(), registered=["kid"])
    run = make_run(store)
    with pytest.raises(Suspend) as parked:
        await run_agent(run, "kid", {"n": 1}, None)
    assert store.commits == []  # nothing written yet: the child travels with the park
    assert parked.value.wake_on == "job:j1.0"
    await run.commit()
    [child] = store.commits[0].create
    assert (child.id, child.parent_id, dict(child.input)) == ("j1.0", "j1", {"n": 1})


async def test_a_child_of_an_agent_nobody_serves_is_refused_at_the_call() -> None:
    store = FakeStore(make_job(), registered=["other"])
    run = make_run(store, agents={"a": AgentDef.of("a", _noop)})
    with pytest.raises(UnknownAgent, match=r"'kid' \(known agents: a, other\)") as refused:
        await run_agent(run, "kid", {"n": 1}, None)
    assert refused.value.known == ["a", "other"]
    [commit] = store.commits  # the refusal is recorded at the call's position; no child
    assert list(commit.create) == []
    [record] = store.written(EventType.OP)
    assert (record["kind"], record["name"], record["error"]["type"]) == (
        "child",
        "kid",
        "UnknownAgent",
    )


async def test_a_recorded_refusal_replays_without_asking_again() -> None:
    """Deterministic on replay: a worker serving the agent since then changes nothing."""
    store = FakeStore(make_job())
    with pytest.raises(UnknownAgent):
        await run_agent(make_run(store), "kid", {}, None)
    later = FakeStore(make_job(), registered=["kid"])
    with pytest.raises(UnknownAgent, match="'kid'"):
        await run_agent(make_run(later, store.journal), "kid", {}, None)
    assert later.agent_reads == 0 and later.commits == []


async def test_a_child_wait_that_began_is_not_checked_again() -> None:
    store = FakeStore(make_job(), registered=[])  # the worker that served "kid" went away
    wait = {"kind": "child", "name": "kid", "args_hash": args_hash(["kid"], {}), "deadline": None}
    [event] = seal_all("j1", 0, GENESIS_HASH, [_draft(EventType.WAIT, wait, 0)], 0.0)
    store.children["j1.0"] = make_job(
        id="j1.0", agent="kid", parent_id="j1", status=JobStatus.PENDING
    )
    with pytest.raises(Suspend):
        await run_agent(make_run(store, [event]), "kid", {}, None)
    assert store.agent_reads == 0


# -- the lifecycle -------------------------------------------------------------------------------


async def test_a_cancelled_run_leaves_an_intent_it_found_in_doubt() -> None:
    async def agent(ctx: Any) -> str:
        return str(await ctx.step("s", lambda: 1))

    store = FakeStore(make_job(control=Control.CANCEL))
    pay = tool()
    run = make_run(store, agent=AgentDef.of("a", agent), effects=[await _intent_of(pay, 3)])
    await execute(run)
    end = store.commits[-1]
    assert end.status is not None and end.status.status is JobStatus.CANCELLED
    [doubt] = end.effects
    assert (doubt.position, doubt.state) == (3, EffectState.IN_DOUBT)


async def test_a_signal_raised_in_a_task_group_parks_the_run() -> None:
    async def agent(ctx: Any) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(ctx.wait_for_signal("go"))

    store = FakeStore(make_job())
    await execute(make_run(store, agent=AgentDef.of("a", agent)))
    status = store.commits[-1].status
    assert status is not None and status.park_reason is ParkReason.SIGNAL


# -- helpers -------------------------------------------------------------------------------------


def _hash(args: tuple[Any, ...]) -> str:
    from aetheris.journal import args_hash

    return args_hash(args, {})


def _draft(kind: EventType, data: dict[str, Any], position: int) -> Any:
    from aetheris.journal import EventDraft

    return EventDraft(kind, data, position)


async def _intent_of(definition: ToolDef, position: int = 0) -> Any:
    """The ledger row a worker that died after writing the intent of ``definition(5)`` left."""
    store = FakeStore(make_job())
    run = make_run(store)
    for _ in range(position):
        run.next_op("step", "filler", "")
    slot = run.next_op("tool", definition.name, _hash((5,)))
    from aetheris.ledger import Call, write_intent
    from aetheris.tools import idempotency_key

    call = Call.of_tool(definition, (5,), {}, slot, _hash((5,)))
    await write_intent(run, call, idempotency_key("j1", position, call.args_hash), 1, None)
    return replace(run.ledger_row(position))  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("budget", "read"),
    [
        ({"tokens": 5, "cost": None}, Budget(5, None)),
        (None, None),
        ({"tokens": 5, "x": 1}, "unread"),
    ],
    ids=["budget", "none", "malformed"],
)
def test_a_claim_reads_the_created_budget_or_leaves_it_to_the_run(
    budget: dict[str, Any] | None, read: object
) -> None:
    data = {"agent": "a", "input": {}} | ({"budget": budget} if budget is not None else {})
    created = seal_all("j1", 0, GENESIS_HASH, [EventDraft(EventType.JOB_CREATED, data)], 1.0)
    claim = Claim(make_job(), Lease("j1", 1, "w"))
    got = with_created_budget(claim, created[0].body)
    if read == "unread":  # the run reads it at its first model call, and fails as it did
        assert got is claim and not got.budget_read
    else:
        assert (got.budget_read, got.budget) == (True, read)
    assert with_created_budget(claim, None) is claim
