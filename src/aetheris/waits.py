"""Durable waits: signals, timers, human approvals and child agents.

A wait is a durable operation like any other: it takes a journal position. If what it waits
for is already there (a signal in the inbox, a timer that is due, a child that ended), the
result is recorded at that position and the agent goes on. Otherwise the job *parks*: the
agent unwinds, the worker forgets it, and the job holds no worker and no memory until a
signal, a due time or a child's end makes it claimable again; the agent then replays from the
top and every earlier operation returns its recorded result (nothing runs twice, unlike an
``interrupt()`` that re-runs the node).

The first time a wait parks, a ``wait`` event journals it at its position: which operation it
is (kind, name, args hash, so a changed code is caught there like at any recorded position)
and its deadline, so a job resumed on another worker, days later, keeps the same deadline.
Before parking, the run waits for effects that parallel branches are dispatching, so that their
outcomes are recorded rather than left in doubt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aetheris.errors import (
    ApprovalRejected,
    ApprovalTimeout,
    ChildFailed,
    Conflict,
    InvalidInput,
    SignalKeyTaken,
    SignalTimeout,
    Suspend,
    UnknownAgent,
    WaitError,
)
from aetheris.journal import EventDraft, OpRecord, args_hash, canonical, check_text, to_jsonable
from aetheris.models import Budget
from aetheris.run import JobRun, Slot
from aetheris.store.port import (
    Job,
    JobStatus,
    NewJob,
    ParkReason,
    Signal,
    job_wake,
    keyed_signal,
    signal_wake,
)

_ERRORS: dict[str, type[WaitError]] = {
    "SignalTimeout": SignalTimeout,
    "SignalKeyTaken": SignalKeyTaken,
    "ApprovalRejected": ApprovalRejected,
    "ApprovalTimeout": ApprovalTimeout,
    "ChildFailed": ChildFailed,
}


@dataclass(frozen=True, slots=True)
class Approval:
    """A human's decision on an approval request, as the journal recorded it."""

    approved: bool
    by: str | None
    at: float | None
    comment: str | None
    request_id: str


APPROVAL_PREFIX = "approval:"
BUDGET_SIGNAL = "aetheris.budget"  # carries an operator's new budget limits


def approval_signal(position: int) -> str:
    """The signal that carries the decision on the approval requested at ``position``."""
    return f"{APPROVAL_PREFIX}{position}"


def _recorded(slot: Slot) -> Any:
    """A wait's recorded outcome: its result, or its failure raised again as it was."""
    recorded = slot.recorded()
    error = recorded.error
    if error is not None and error["type"] == "UnknownAgent":
        raise UnknownAgent(error["detail"]["agent"], error["detail"]["known"])
    if error is not None:
        kind = _ERRORS.get(error["type"], WaitError)
        raise kind(error["message"], position=slot.position, detail=error.get("detail"))
    return recorded.result


def _op(
    slot: Slot,
    kind: str,
    name: str,
    digest: str,
    *,
    result: Any = None,
    error: Mapping[str, Any] | None = None,
    **extra: Any,
) -> EventDraft:
    """The ``op`` event of a wait that ended (with ``result`` or ``error``)."""
    record = OpRecord(
        kind=kind,
        name=name,
        ordinal=slot.ordinal,
        args_hash=digest,
        outcome="pure" if error is None else "permanent_failure",
        result=result,
        error=error,
        extra=extra,
    )
    return record.draft(slot.position)


async def _record_error(
    run: JobRun,
    slot: Slot,
    kind: str,
    name: str,
    digest: str,
    error: type[WaitError],
    message: str,
    detail: Mapping[str, Any] | None = None,
) -> WaitError:
    """Record a wait's failure at its position; return the error to raise in agent code."""
    details = dict(detail or {})
    doc = {"type": error.__name__, "message": message, "detail": details}
    await run.commit(_op(slot, kind, name, digest, error=doc))
    return error(message, position=slot.position, detail=details)


def _signal_fields(signal: Signal) -> dict[str, Any]:
    return {
        "signal_id": signal.signal_id,
        "signal_seq": signal.seq,
        "sender": signal.sender,
        "sent_at": signal.created_at,
    }


def _deadline(run: JobRun, position: int, timeout: float | None) -> float | None:
    """The wait's deadline: journaled at its first park, else from now."""
    recorded = run.wait_record(position)
    if recorded is not None:
        deadline: float | None = recorded.get("deadline")
        return deadline
    return None if timeout is None else run.clock.time() + timeout


@dataclass(frozen=True, slots=True)
class _Wait:
    """A wait that is about to park: its operation, and what makes it due."""

    slot: Slot
    kind: str
    name: str
    digest: str

    async def park(
        self,
        run: JobRun,
        reason: ParkReason,
        detail: dict[str, Any],
        *,
        wake_on: str | None = None,
        deadline: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Suspend:
        """What parks the job, to raise; journals the wait the first time (or as it changes)."""
        record = None
        if run.wait_record(self.slot.position) is None or extra:
            data: dict[str, Any] = {"kind": self.kind, "name": self.name, "args_hash": self.digest}
            data.update({"deadline": deadline, **(extra or {})})
            record = (self.slot.position, data)
        suspend = Suspend(reason, detail, wake_on=wake_on, wake_at=deadline, wait=record)
        return await run.suspend(suspend)


# -- signals -----------------------------------------------------------------------------------


async def wait_for_signal(run: JobRun, name: str, timeout: float | None) -> Any:
    slot = run.next_op("signal", name, "")
    if slot.replayed is not None:
        return _recorded(slot)
    deadline = _deadline(run, slot.position, timeout)
    signal = await run.take_signal(name)
    if signal is not None:
        await run.commit(
            _op(slot, "signal", name, "", result=signal.payload, **_signal_fields(signal)),
            consume=[(signal.seq, slot.position)],
        )
        return signal.payload
    if deadline is not None and run.clock.time() >= deadline:
        raise await _record_error(
            run, slot, "signal", name, "", SignalTimeout, f"no signal {name!r} within {timeout}s"
        )
    detail = {
        "signal": name,
        "position": slot.position,
        "deadline": deadline,
        "message": f"waiting for signal {name!r}: `aetheris signal {run.job.id} {name}`",
    }
    wait = _Wait(slot, "signal", name, "")
    raise await wait.park(
        run, ParkReason.SIGNAL, detail, wake_on=signal_wake(name), deadline=deadline
    )


async def wait_for_keyed(run: JobRun, name: str, key: str, timeout: float | None) -> Any:
    """``wait_for_signal(name, key=key)``: the next signal ``name`` correlated by ``key`` in
    the job's tenant (an incoming webhook's, :meth:`~aetheris.store.port.Store.deliver_keyed`).

    The first time, the job takes the key in a commit of its own, which also moves what the
    key's mailbox holds (signals that came before any job waited) into the job's inbox; it
    holds the key until it ends, so later signals for it go straight to its inbox. A key that
    another job holds is this wait's failure (:class:`~aetheris.SignalKeyTaken`), recorded at
    its position. The key is part of the operation's args hash: code that waits on another
    key at a recorded position diverges.
    """
    if not isinstance(key, str) or not key:
        raise InvalidInput(f"the key of signal {name!r} must be a non-empty str, not {key!r}")
    check_text(key, "signal key")
    digest = args_hash([name], {"key": key})
    slot = run.next_op("signal", name, digest)
    if slot.replayed is not None:
        return _recorded(slot)
    deadline = _deadline(run, slot.position, timeout)
    await _hold_key(run, slot, name, key, digest)
    inbox = keyed_signal(name, key)
    signal = await run.take_signal(inbox)
    if signal is not None:
        fields = {**_signal_fields(signal), "key": key}
        fields["signal_id"] = signal.signal_id.removeprefix(f"{inbox}:")  # the sender's id
        record = _op(slot, "signal", name, digest, result=signal.payload, **fields)
        await run.commit(record, consume=[(signal.seq, slot.position)])
        return signal.payload
    if deadline is not None and run.clock.time() >= deadline:
        message = f"no signal {name!r} with key {key!r} within {timeout}s"
        detail = {"key": key}
        raise await _record_error(run, slot, "signal", name, digest, SignalTimeout, message, detail)
    parked: dict[str, Any] = {
        "signal": name,
        "key": key,
        "position": slot.position,
        "deadline": deadline,
        "message": f"waiting for signal {name!r} with key {key!r}: `POST /v1/hooks/{name}`",
    }
    wait = _Wait(slot, "signal", name, digest)
    raise await wait.park(
        run, ParkReason.SIGNAL, parked, wake_on=signal_wake(inbox), deadline=deadline
    )


async def _hold_key(run: JobRun, slot: Slot, name: str, key: str, digest: str) -> None:
    """Take the key unless the job holds it; another job holding it is the wait's failure."""
    holder = await run.read(run.store.key_holder, run.job.tenant, name, key)
    if holder is None:
        await run.commit(correlate=[(name, key)])  # refused if another job took it meanwhile
    elif holder != run.job.id:
        message = f"job {holder} already waits for signal {name!r} with key {key!r}"
        detail = {"key": key, "held_by": holder}
        raise await _record_error(
            run, slot, "signal", name, digest, SignalKeyTaken, message, detail
        )


# -- durable time ------------------------------------------------------------------------------


async def sleep(run: JobRun, seconds: float) -> None:
    digest = args_hash([seconds], {})
    slot = run.next_op("sleep", "sleep", digest)
    if slot.replayed is not None:
        return
    until = _deadline(run, slot.position, seconds)
    assert until is not None
    if run.clock.time() >= until:
        await run.commit(_op(slot, "sleep", "sleep", digest, result=None, until=until))
        return
    detail = {"position": slot.position, "until": until, "seconds": seconds}
    raise await _Wait(slot, "sleep", "sleep", digest).park(
        run, ParkReason.TIMER, detail, deadline=until
    )


# -- approvals ---------------------------------------------------------------------------------


async def approval(
    run: JobRun,
    name: str,
    payload: Any,
    timeout: float | None,
    escalate_to: str | None,
) -> Approval:
    body = to_jsonable(payload)
    canonical(body)  # what has no stored form is the caller's mistake, refused here
    digest = args_hash([name], {"payload": body})
    slot = run.next_op("approval", name, digest)
    request_id = f"{run.job.id}:{slot.position}"
    if slot.replayed is not None:
        return Approval(request_id=request_id, **_recorded(slot))
    wait = run.wait_record(slot.position) or {}
    deadline = _deadline(run, slot.position, timeout)
    decision = await run.take_signal(approval_signal(slot.position))
    if decision is not None:
        return await _decided(run, slot, name, digest, request_id, decision)
    escalated = bool(wait.get("escalated"))
    extra: dict[str, Any] | None = None
    if deadline is not None and run.clock.time() >= deadline:
        if escalate_to is None or escalated:
            timed_out = f"nobody decided on {name!r} by the deadline"
            detail = {"request_id": request_id, "escalated_to": wait.get("to")}
            raise await _record_error(
                run, slot, "approval", name, digest, ApprovalTimeout, timed_out, detail
            )
        # Once, the request goes to ``escalate_to`` for another ``timeout``.
        deadline, escalated = run.clock.time() + (timeout or 0.0), True
        extra = {"escalated": True, "to": escalate_to}
    detail = {
        "request_id": request_id,
        "position": slot.position,
        "name": name,
        "payload": body,
        "args_hash": digest,
        "deadline": deadline,
        "escalated_to": escalate_to if escalated else None,
        "message": f"approval {name!r} requested: `aetheris approve {run.job.id}` or "
        f"`aetheris reject {run.job.id} --reason ...`",
    }
    raise await _Wait(slot, "approval", name, digest).park(
        run,
        ParkReason.APPROVAL,
        detail,
        wake_on=signal_wake(approval_signal(slot.position)),
        deadline=deadline,
        extra=extra,
    )


async def _decided(
    run: JobRun, slot: Slot, name: str, digest: str, request_id: str, decision: Signal
) -> Approval:
    body = decision.payload if isinstance(decision.payload, dict) else {}
    who: dict[str, Any] = {"by": body.get("by"), "at": decision.created_at}
    consume = [(decision.seq, slot.position)]
    if body.get("args_hash") != digest:
        # A decision binds to exactly what was reviewed: one naming other arguments, or none
        # at all (sent before the request existed), approves nothing.
        problem = "other arguments" if body.get("args_hash") else "no arguments in particular"
        body = {
            **body,
            "decision": "rejected",
            "reason": f"the decision was for {problem}, not this request's ({digest[:12]}…)",
        }
    if body.get("decision") != "approved":
        reason = str(body.get("reason") or "rejected")
        message = f"{name!r} rejected: {reason}"
        details: dict[str, Any] = {**who, "reason": reason, "request_id": request_id}
        doc = {"type": "ApprovalRejected", "message": message, "detail": details}
        await run.commit(
            _op(slot, "approval", name, digest, error=doc, **_signal_fields(decision)),
            consume=consume,
        )
        raise ApprovalRejected(message, position=slot.position, detail=details)
    result: dict[str, Any] = {"approved": True, **who, "comment": body.get("comment")}
    await run.commit(
        _op(slot, "approval", name, digest, result=result, **_signal_fields(decision)),
        consume=consume,
    )
    return Approval(request_id=request_id, **result)


# -- child agents ------------------------------------------------------------------------------


async def run_agent(run: JobRun, agent: str, data: Mapping[str, Any], job_id: str | None) -> Any:
    body = to_jsonable(dict(data))
    canonical(body)  # what has no stored form is the caller's mistake, refused here
    digest = args_hash([agent], body)
    slot = run.next_op("child", agent, digest)
    if slot.replayed is not None:
        return _recorded(slot)
    child_id = job_id or f"{run.job.id}.{slot.position}"
    known = run.agents.get(agent)
    if known is not None:
        known.validate(body)
    elif run.wait_record(slot.position) is None:
        await _check_served(run, slot, agent, digest)  # the first time only: then it waited
    new = NewJob(
        id=child_id,
        agent=agent,
        input=body,
        idempotency_key=child_id,
        queue=run.job.queue,
        parent_id=run.job.id,
        tenant=run.job.tenant,  # a child belongs to its parent's tenant
    )
    child = await run.read(run.store.get_job, child_id)
    if child is None:
        # Created in the same fenced commit that parks this job (with any ctx.uuid() or
        # ctx.now() its input was built from): a zombie creates nothing, a crash creates
        # nothing that a replay would create differently.
        run.create_child(new)
    elif child.parent_id != run.job.id or child.agent != agent or child.input != body:
        # Another run of this job may have created it (this one would then be a zombie): a
        # fenced write tells, and only the lease holder sees the conflict as its own.
        await run.commit()
        raise InvalidInput(f"child job id {child_id!r} is taken by another job")
    elif child.status.terminal:
        return await _child_ended(run, slot, agent, digest, child)
    detail = {
        "child": child_id,
        "agent": agent,
        "position": slot.position,
        "message": f"waiting for child job {child_id} ({agent})",
    }
    wait = _Wait(slot, "child", agent, digest)
    raise await wait.park(run, ParkReason.CHILD, detail, wake_on=job_wake(child_id))


async def _check_served(run: JobRun, slot: Slot, agent: str, digest: str) -> None:
    """A child of an agent no worker ever registered would wait forever: refuse it at the call.

    The refusal is recorded at the call's position, so a later run (when a worker serving it
    may have come) replays the same refusal rather than taking another path.
    """
    registered = await run.read(run.store.agents)
    if agent in registered:
        return
    refused = UnknownAgent(agent, sorted({*registered, *run.agents}))
    detail = {"agent": agent, "known": refused.known}
    doc = {"type": "UnknownAgent", "message": str(refused), "detail": detail}
    await run.commit(_op(slot, "child", agent, digest, error=doc))
    raise refused


async def _child_ended(run: JobRun, slot: Slot, agent: str, digest: str, child: Job) -> Any:
    fields: dict[str, Any] = {"child": child.id, "status": child.status.value}
    if child.status is JobStatus.SUCCEEDED:
        await run.commit(_op(slot, "child", agent, digest, result=child.result, **fields))
        return child.result
    raise await _record_error(
        run,
        slot,
        "child",
        agent,
        digest,
        ChildFailed,
        f"child {agent!r} ({child.id}) ended {child.status}",
        {**fields, "error": child.error},
    )


# -- budgets -----------------------------------------------------------------------------------


async def budget_raised(run: JobRun, why: str) -> Budget:
    """The job's budget is spent (``why``): take an operator's raise from the inbox, journaled
    at this position, or park with reason ``budget`` until one arrives."""
    slot = run.next_op("budget", "budget", "")
    if slot.replayed is not None:
        return _raised(run, _recorded(slot))
    signal = await run.take_signal(BUDGET_SIGNAL)
    if signal is not None:
        record = _op(slot, "budget", "budget", "", result=signal.payload, **_signal_fields(signal))
        await run.commit(record, consume=[(signal.seq, slot.position)])
        return _raised(run, signal.payload)
    detail = {
        "position": slot.position,
        "spent": {"tokens": run.spent.tokens, "cost": run.spent.cost},
        "budget": run.budget.to_data() if run.budget else None,
        "message": f"budget spent ({why}): `aetheris budget {run.job.id} --tokens N --cost X`",
    }
    wait = _Wait(slot, "budget", "budget", "")
    raise await wait.park(run, ParkReason.BUDGET, detail, wake_on=signal_wake(BUDGET_SIGNAL))


def _raised(run: JobRun, payload: Mapping[str, Any]) -> Budget:
    """The limits after a raise: those it names replace the job's, the others stay."""
    now = run.budget or Budget()
    run.budget = Budget(payload.get("tokens", now.tokens), payload.get("cost", now.cost))
    return run.budget


def approval_decision(
    job: Job,
    approved: bool,
    position: int | None,
    by: str | None,
    text: str | None,
    args_hash: str | None,
) -> tuple[str, dict[str, Any]]:
    """The signal (name, payload) that decides ``job``'s pending approval request, checked
    against the request (its position, what was reviewed: ``args_hash``); Conflict if not."""
    request = job.park_detail if job.park_reason is ParkReason.APPROVAL else None
    if request is None:
        raise Conflict(f"job {job.id} has no pending approval request (it is {job.status})")
    if position is not None and position != request["position"]:
        raise Conflict(
            f"job {job.id} has no pending approval request at position {position} "
            f"(the pending one is at {request['position']})"
        )
    position = int(request["position"])
    expected = str(request["args_hash"])
    if args_hash is not None and args_hash != expected:
        raise Conflict(
            f"the args hash given ({args_hash[:12]}…) is not that of the pending approval "
            f"request {job.id}:{position} ({expected}): check what you typed, or, if its "
            "arguments changed since you saw them, review it again"
        )
    for value, what in ((by, "by"), (text, "comment" if approved else "reason")):
        if value is not None:
            check_text(value, what)
    name = approval_signal(position)
    # The decision names the request's args hash: the run accepts it for that request only.
    payload = {
        "decision": "approved" if approved else "rejected",
        "by": by,
        "args_hash": expected,
        ("comment" if approved else "reason"): text,
    }
    return name, payload
