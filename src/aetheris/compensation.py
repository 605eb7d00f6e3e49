"""Compensation: undoing the committed effects of a job that fails or is cancelled.

Each tool with a ``compensate`` function whose effect committed is undone, in reverse order,
by a journaled ``compensation`` operation (idempotent: re-run with the same key if its outcome
was lost). A compensation that fails for good ends the job failed with
:class:`~aetheris.errors.CompensationFailed`.
"""

from __future__ import annotations

import inspect
from dataclasses import replace

from aetheris.errors import CompensationFailed
from aetheris.journal import OpRecord, args_hash
from aetheris.ledger import Call, dispatch, write_intent
from aetheris.run import JobRun
from aetheris.store.port import EffectClass, EffectState, EffectWrite
from aetheris.tools import CompensationRequest, RetryPolicy, ToolContext, ToolDef


async def compensate_all(run: JobRun) -> list[str]:
    """Run compensations of committed effects in reverse order; return the tools undone."""
    undone = []
    for tool, request in reversed(run.compensations):
        await _compensate(run, tool, request)
        undone.append(request.tool)
    return undone


async def _compensate(run: JobRun, tool: ToolDef, request: CompensationRequest) -> None:
    assert tool.compensate is not None
    ahash = args_hash([request.position], {})
    name = f"compensate:{tool.name}"
    slot = run.next_op("compensation", name, ahash)
    is_async = inspect.iscoroutinefunction(tool.compensate)
    call = Call(
        "compensation",
        name,
        tool.compensate,
        is_async,
        (request,),
        {},
        ahash,
        RetryPolicy(),
        EffectClass.IDEMPOTENT,
        slot,
    )
    if slot.replayed is not None:
        _raise_if_failed(call, slot.recorded())
        return
    key = request.idempotency_key + ":compensate"
    row = run.ledger_row(slot.position)
    attempt = 1 if row is None else row.attempt + 1
    await write_intent(run, call, key, attempt, None if row is None else EffectState.INTENT)
    ctx = ToolContext(run.job.id, call.name, slot.position, key, run.lease.epoch, attempt)
    outcome = await dispatch(run, call, ctx)
    record = call.record(outcome, key, compensates=request.position)
    if outcome.error is None:
        record = replace(record, outcome="compensated")
    state = EffectState.COMMITTED if outcome.error is None else EffectState.FAILED
    writes = [call.ledger_write(key, state, attempt, EffectState.INTENT, outcome)]
    if outcome.error is None and tool.effect is not EffectClass.PURE:
        writes.append(_compensated(request, tool))
    await run.commit(record.draft(slot.position), effects=writes)
    _raise_if_failed(call, record)


def _compensated(request: CompensationRequest, tool: ToolDef) -> EffectWrite:
    """The undone effect's own ledger row, now ``compensated``."""
    return EffectWrite(
        request.position,
        request.tool,
        tool.effect,
        "",
        "",
        EffectState.COMPENSATED,
        result=request.result,
        expect=EffectState.COMMITTED,
    )


def _raise_if_failed(call: Call, record: OpRecord) -> None:
    error = record.error
    if error is not None:
        raise CompensationFailed(
            f"compensation of {call.name} (position {call.slot.position}) failed: "
            f"{error['type']}: {error['message']}"
        )
