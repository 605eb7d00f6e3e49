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

No end leaves the ledger unsettled: the commit that ends a job turns every intent with no
outcome into ``in_doubt``; and a run never parks or ends while a parallel branch dispatches an
effect (it waits for it, or on cancel and deadline interrupts it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import traceback
from collections.abc import Awaitable
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
from aetheris.run import JobRun, current_run
from aetheris.store.port import (
    Control,
    EffectState,
    EffectWrite,
    JobStatus,
    StatusWrite,
)

# Which control signal ends a run when parallel branches raised several: the runtime's own
# failures first, then what an operator or the clock asked, then the worker's stop, then a park.
_PRECEDENCE = (LeaseLost, RuntimeFailure, JobCancelled, DeadlineExceeded, Draining, Suspend)


async def execute(run: JobRun) -> None:
    """Run the agent to its end, a park, a hand-back, or a runtime failure (propagated)."""
    token = current_run.set(run)
    run.begin()
    try:
        try:
            await _run_agent(run)
        except BaseExceptionGroup as group:  # an asyncio.TaskGroup of the agent's
            raise _signal_of(group) from None
        finally:
            run.begin_ending()
    except Suspend as suspend:
        await run.settle_flights()
        await _park(run, suspend)
    except JobCancelled as cancelled:
        await run.settle_flights(interrupt=True)
        await _ending(run, _stop(run, cancelled))
    except DeadlineExceeded as passed:
        await run.settle_flights(interrupt=True)
        await _ending(run, _fail(run, passed))
    except Draining:
        await run.settle_flights()
        await release(run, "the worker is stopping")
    except (RuntimeFailure, LeaseLost):
        await run.settle_flights(interrupt=True)
        raise
    except asyncio.CancelledError:
        await _interrupted(run)
    finally:
        current_run.reset(token)


async def _run_agent(run: JobRun) -> None:
    try:
        kwargs = run.agent.validate(run.job.input)
        value = await run.agent.fn(Context(run), **kwargs)
        await run.settle_flights()
        _check_consumed(run)
        result = run.encode_result(value, f"agent {run.agent.name!r}")
    except Exception as exc:
        await run.settle_flights()
        run.begin_ending()
        await _fail(run, exc)
        return
    run.begin_ending()
    await _end(run, JobStatus.SUCCEEDED, EventType.JOB_SUCCEEDED, {"result": result})


async def _interrupted(run: JobRun) -> None:
    """The worker interrupted the run: to cancel it or to enforce its deadline, or not ours.

    Any other cancellation (shutdown, lost lease) is re-raised for the worker to handle.
    """
    task = asyncio.current_task()
    if run.control is Control.CANCEL and task is not None:
        task.uncancel()
        await run.settle_flights(interrupt=True)
        await _ending(run, _stop(run, JobCancelled("cancelled by an operator while running")))
    elif run.deadline_passed() and task is not None:
        task.uncancel()
        await run.settle_flights(interrupt=True)
        passed = DeadlineExceeded("the job's deadline passed while running")
        await _ending(run, _fail(run, passed))
    else:
        raise asyncio.CancelledError


async def _ending(run: JobRun, end: Awaitable[None]) -> None:
    """An end that compensates; if the journal disagrees with the code there, park."""
    try:
        await end
    except Suspend as suspend:
        await _park(run, suspend)


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


async def fail_poisoned(run: JobRun, limit: int, last_failure: str | None = None) -> None:
    """A job whose runs keep being cut short is failed, not retried forever."""
    error = {
        "type": "PoisonJob",
        "message": f"its runs were cut short {run.job.recoveries} times (its worker died "
        f"or the runtime failed; max_recoveries={limit}); giving up",
    }
    if last_failure:
        error["last_failure"] = last_failure
    await _end(run, JobStatus.FAILED, EventType.JOB_FAILED, {"error": error})


async def release(run: JobRun, why: str) -> None:
    """Hand the job back (pending), so that any worker can take it up again."""
    data = {"owner": run.lease.owner, "reason": why}
    await run.commit(
        EventDraft(EventType.JOB_RELEASED, data), status=StatusWrite(JobStatus.PENDING)
    )


async def _stop(run: JobRun, cancelled: JobCancelled) -> None:
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
    await _end(run, JobStatus.CANCELLED, EventType.JOB_CANCELLED, {"error": error})


async def _fail(run: JobRun, exc: BaseException) -> None:
    """The agent failed: compensate what was committed; ``compensated`` if all was undone."""
    run.begin_compensating()
    error = error_doc(exc)
    if isinstance(exc, ToolFailed):
        error.update(position=exc.position, tool=exc.name, cause=exc.error_type)
    error["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
    standing = run.committed_tools() if run.diverged_at is not None else []
    if standing or not run.compensations:
        if standing:
            error["not_compensated"] = standing
        await _end(run, JobStatus.FAILED, EventType.JOB_FAILED, {"error": error})
        return
    try:
        undone = await compensate_all(run)
    except CompensationFailed as failed:
        error["compensation_error"] = str(failed)
        await _end(run, JobStatus.FAILED, EventType.JOB_FAILED, {"error": error})
        return
    _check_consumed(run)
    error["compensated"] = undone
    await _end(run, JobStatus.COMPENSATED, EventType.JOB_COMPENSATED, {"error": error})


async def _end(run: JobRun, status: JobStatus, event: EventType, data: dict[str, Any]) -> None:
    """The job's last commit: its end, and every intent still open settled as in doubt."""
    drafts, writes = _settlement(run)
    error = data.get("error")
    if writes and isinstance(error, dict):
        error["in_doubt"] = [w.position for w in writes]
    drafts.append(EventDraft(event, data))
    await run.commit(
        *drafts,
        effects=writes,
        status=StatusWrite(status, result=data.get("result"), error=error),
    )


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


async def _park(run: JobRun, suspend: Suspend) -> None:
    reason = suspend.reason
    events = []
    if suspend.wait is not None:
        position, data = suspend.wait
        events.append(EventDraft(EventType.WAIT, data, position))
    events.append(
        EventDraft(EventType.JOB_PARKED, {"reason": reason.value, "detail": suspend.detail})
    )
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
