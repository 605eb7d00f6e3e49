"""The life of one run: agent code from the top to an end, a park or a hand-back.

:func:`execute` calls the agent function with a :class:`~aetheris.Context` over the run's
cursor (:class:`~aetheris.run.JobRun`) and turns how it stops into the job's next state, in one
commit each:

=============================  ===========================================================
the agent returns              ``succeeded``
it raises                      compensations of committed effects, then ``compensated``
                               (or ``failed``)
a wait parks (``Suspend``)     ``parked``, holding no worker
cancel / deadline              in-flight effects interrupted, compensations, ``cancelled`` /
                               ``failed``
the worker stops (Draining)    what is in flight lands, then ``pending`` (handed back)
runtime failure / lease lost   propagated to the worker, which hands the job back (or not)
=============================  ===========================================================

It returns an :class:`Outcome`: the status it wrote last, for the worker's log.

No end leaves the ledger unsettled: the commit that ends a job turns every intent with no
outcome into ``in_doubt``; and a run never parks or ends while a parallel branch dispatches an
effect (it waits for it, or on cancel and deadline interrupts it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aetheris.compensation import compensate_all
from aetheris.context import Context
from aetheris.errors import (
    CompensationFailed,
    DeadlineExceeded,
    Draining,
    JobCancelled,
    LeaseLost,
    RuntimeFailure,
    Suspend,
    ToolFailed,
)
from aetheris.journal import EventDraft, EventType
from aetheris.ledger import error_doc
from aetheris.observe import Ended
from aetheris.run import JobRun, current_run
from aetheris.store.port import (
    Control,
    EffectState,
    EffectWrite,
    JobStatus,
    ParkReason,
    StatusWrite,
)

# Which control signal ends a run when parallel branches raised several: the runtime's own
# failures first, then what an operator or the clock asked, then the worker's stop, then a park.
_PRECEDENCE = (LeaseLost, RuntimeFailure, JobCancelled, DeadlineExceeded, Draining, Suspend)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: the status it wrote last (with its error, park reason and wake-up),
    the agent's whole traceback when it failed (``status.error`` keeps its last 4000
    characters), and why a run handed its job back."""

    status: StatusWrite
    traceback: str | None = None
    reason: str | None = None

    def ended(self) -> Ended:
        """How the run ended, for its observer (:mod:`aetheris.observe`)."""
        status = self.status
        if status.status is JobStatus.PENDING:
            return Ended("handed_back", reason=self.reason)
        reason = status.park_reason.value if status.park_reason is not None else None
        error = (status.error or {}).get("type")
        return Ended(status.status.value, str(error) if error else None, reason)

    def describe(self, now: float) -> tuple[int, str, str]:
        """For the worker's log line: its level, what happened (``succeeded``, ``parked
        (signal 'go')``...) and what follows the job's agent and run number (a failure's error and
        traceback, at ERROR; a park the operator must act on, at WARNING)."""
        status = self.status
        if status.status is JobStatus.PARKED:
            detail = status.park_detail or {}
            if status.park_reason in (ParkReason.NONDETERMINISM, ParkReason.EFFECT_IN_DOUBT):
                note = detail.get("diff") or detail.get("message")
                return logging.WARNING, f"parked ({_parked_on(status, now)})", f"\n{note}"
            return logging.INFO, f"parked ({_parked_on(status, now)})", ""
        if status.status is JobStatus.PENDING:
            return logging.INFO, f"handed back ({self.reason})", ""
        if status.status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
            return logging.INFO, status.status.value, ""
        error = status.error or {}
        more = f": {error.get('type')}: {error.get('message')}"
        if error.get("in_doubt"):
            more += f" (effects in doubt at positions {error['in_doubt']})"
        if self.traceback:
            more += "\n" + self.traceback.rstrip()
        return logging.ERROR, status.status.value, more


def _parked_on(status: StatusWrite, now: float) -> str:
    """What a parked job waits for: ``signal 'go'``, ``child job J``, ``timer, due in 5.0s``."""
    detail = status.park_detail or {}
    kind, _, name = (status.wake_on or "").partition(":")
    if status.park_reason is ParkReason.APPROVAL:
        what = f"approval {detail.get('name')!r} at position {detail.get('position')}"
    elif kind == "signal":
        what = f"signal {name!r}"
    elif kind == "job":
        what = f"child job {name}"
    elif status.park_reason is ParkReason.NONDETERMINISM:
        what = f"nondeterminism at position {detail.get('position')}"
    else:
        what = str(status.park_reason)
    if status.wake_at is not None:
        due = "due" if status.park_reason is ParkReason.TIMER else "timeout"
        what += f", {due} in {max(0.0, status.wake_at - now):.1f}s"
    return what


async def execute(run: JobRun) -> Outcome:
    """Run the agent to its end, a park, a hand-back, or a runtime failure (propagated)."""
    token = current_run.set(run)
    run.begin()
    try:
        try:
            return await _run_agent(run)
        except BaseExceptionGroup as group:  # an asyncio.TaskGroup of the agent's
            raise _signal_of(group) from None
        finally:
            run.begin_ending()
    except Suspend as suspend:
        await run.settle_flights()
        return await _park(run, suspend)
    except JobCancelled as cancelled:
        await run.settle_flights(interrupt=True)
        return await _ending(run, _stop(run, cancelled))
    except DeadlineExceeded as passed:
        await run.settle_flights(interrupt=True)
        return await _ending(run, _fail(run, passed))
    except Draining:
        await run.settle_flights()
        return await release(run, "the worker is stopping")
    except (RuntimeFailure, LeaseLost):
        await run.settle_flights(interrupt=True)
        raise
    except asyncio.CancelledError:
        return await _interrupted(run)
    finally:
        current_run.reset(token)


async def _run_agent(run: JobRun) -> Outcome:
    try:
        kwargs = run.agent.validate(run.job.input)
        value = await run.agent.fn(Context(run), **kwargs)
        await run.settle_flights()
        _check_consumed(run)
        result = run.encode_result(value, f"agent {run.agent.name!r}")
    except Exception as exc:
        await run.settle_flights()
        run.begin_ending()
        return await _fail(run, exc)
    run.begin_ending()
    return await _end(run, JobStatus.SUCCEEDED, EventType.JOB_SUCCEEDED, {"result": result})


async def _interrupted(run: JobRun) -> Outcome:
    """The worker interrupted the run: to cancel it or to enforce its deadline, or not ours.

    Any other cancellation (shutdown, lost lease) is re-raised for the worker to handle.
    """
    task = asyncio.current_task()
    if run.control is Control.CANCEL and task is not None:
        task.uncancel()
        await run.settle_flights(interrupt=True)
        cancelled = JobCancelled("cancelled by an operator while running")
        return await _ending(run, _stop(run, cancelled))
    if run.deadline_passed() and task is not None:
        task.uncancel()
        await run.settle_flights(interrupt=True)
        passed = DeadlineExceeded("the job's deadline passed while running")
        return await _ending(run, _fail(run, passed))
    raise asyncio.CancelledError


async def _ending(run: JobRun, end: Awaitable[Outcome]) -> Outcome:
    """An end that compensates; if the journal disagrees with the code there, park."""
    try:
        return await end
    except Suspend as suspend:
        return await _park(run, suspend)


def _signal_of(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The control signal a group of branch failures stands for (else the group itself)."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    for kind in _PRECEDENCE:
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return group


def _check_consumed(run: JobRun) -> None:
    """The code ended before a position the journal holds: it is not the code that ran."""
    leftover = run.leftover()
    if leftover is not None:
        run.diverged(leftover[0], leftover[1], {})


async def fail_poisoned(run: JobRun, limit: int, last_failure: str | None = None) -> Outcome:
    """A job whose runs keep being cut short is failed, not retried forever."""
    error = {
        "type": "PoisonJob",
        "message": f"its runs were cut short {run.job.recoveries} times (its worker died "
        f"or the runtime failed; max_recoveries={limit}); giving up",
    }
    if last_failure:
        error["last_failure"] = last_failure
    return await _end(run, JobStatus.FAILED, EventType.JOB_FAILED, {"error": error})


async def release(run: JobRun, why: str) -> Outcome:
    """Hand the job back (pending), so that any worker can take it up again."""
    data = {"owner": run.lease.owner, "reason": why}
    status = StatusWrite(JobStatus.PENDING)
    await run.commit(EventDraft(EventType.JOB_RELEASED, data), status=status)
    return Outcome(status, reason=why)


async def _stop(run: JobRun, cancelled: JobCancelled) -> Outcome:
    """Cancelled: compensate what was committed, leave in doubt what may have happened."""
    run.begin_compensating()
    error: dict[str, Any] = {"type": "Cancelled", "message": str(cancelled)}
    if run.diverged_at is not None:
        # No compensation runs through a journal the code does not match: name what stands.
        error["compensated"] = []
        error["not_compensated"] = run.committed_tools()
    else:
        try:
            error["compensated"] = await compensate_all(run)
        except CompensationFailed as failed:
            error["compensation_error"] = str(failed)
    data = {"error": error, **await run.requested_by()}
    return await _end(run, JobStatus.CANCELLED, EventType.JOB_CANCELLED, data)


async def _fail(run: JobRun, exc: BaseException) -> Outcome:
    """The agent failed: compensate what was committed; ``compensated`` if all was undone."""
    run.begin_compensating()
    error = error_doc(exc)
    if isinstance(exc, ToolFailed):
        error.update(position=exc.position, tool=exc.name, cause=exc.error_type)
    text = "".join(traceback.format_exception(exc))
    error["traceback"] = text[-4000:]
    status, event = JobStatus.FAILED, EventType.JOB_FAILED
    standing = run.committed_tools() if run.diverged_at is not None else []
    if standing:
        error["not_compensated"] = standing
    elif run.compensations:
        try:
            error["compensated"] = await compensate_all(run)
        except CompensationFailed as failed:
            error["compensation_error"] = str(failed)
        else:
            _check_consumed(run)
            status, event = JobStatus.COMPENSATED, EventType.JOB_COMPENSATED
    ended = await _end(run, status, event, {"error": error})
    return dataclasses.replace(ended, traceback=text)


async def _end(run: JobRun, status: JobStatus, event: EventType, data: dict[str, Any]) -> Outcome:
    """The job's last commit: its end, and every intent still open settled as in doubt."""
    drafts, writes = _settlement(run)
    error = data.get("error")
    if writes and isinstance(error, dict):
        error["in_doubt"] = [w.position for w in writes]
    drafts.append(EventDraft(event, data))
    write = StatusWrite(status, result=data.get("result"), error=error)
    await run.commit(*drafts, effects=writes, status=write)
    return Outcome(write)


def _settlement(run: JobRun) -> tuple[list[EventDraft], list[EffectWrite]]:
    drafts: list[EventDraft] = []
    writes: list[EffectWrite] = []
    for row in run.open_intents():
        data = {
            "name": row.tool,
            "idempotency_key": row.idempotency_key,
            "attempt": row.attempt,
            "reason": "the job ended before the outcome was recorded",
        }
        drafts.append(EventDraft(EventType.EFFECT_IN_DOUBT, data, row.position))
        writes.append(
            dataclasses.replace(row, state=EffectState.IN_DOUBT, expect=EffectState.INTENT)
        )
    return drafts, writes


async def _park(run: JobRun, suspend: Suspend) -> Outcome:
    reason = suspend.reason
    events = []
    if suspend.wait is not None:
        position, data = suspend.wait
        events.append(EventDraft(EventType.WAIT, data, position))
    parked: dict[str, Any] = {"reason": reason.value, "detail": suspend.detail}
    if reason is ParkReason.PAUSED:
        parked.update(await run.requested_by())
    events.append(EventDraft(EventType.JOB_PARKED, parked))
    wake_at = suspend.wake_at
    if run.job.deadline is not None:
        # Past its deadline a parked job is due too: it wakes to end as failed.
        wake_at = min(wake_at or run.job.deadline, run.job.deadline)
    status = StatusWrite(
        JobStatus.PARKED,
        park_reason=reason,
        park_detail=suspend.detail,
        wake_on=suspend.wake_on,
        wake_at=wake_at,
    )
    await run.commit(*events, status=status)
    return Outcome(status)
