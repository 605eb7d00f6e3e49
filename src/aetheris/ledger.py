"""The effects ledger: a journaled call of a step or a tool, at most once, honestly.

``pure`` steps and tools are dispatched and their outcome journaled. For ``idempotent`` and
``at_most_once`` tools an *intent* row (fenced, unique per job and position) is written before
the dispatch and the *outcome* after, and the tool gets a deterministic idempotency key.

If a worker dies between the two, the next run finds an intent without outcome:

* ``idempotent``: dispatched again with the same key;
* ``at_most_once``: *in doubt*. The tool's ``reconcile(key)`` may say what happened
  (:class:`~aetheris.Committed` or :class:`~aetheris.NotExecuted`); otherwise the job parks
  with reason ``effect_in_doubt`` until an operator resolves it. It is never re-run on a guess.

A call goes one way: agent code → :class:`Tool` (or ``Context.step``) → :func:`call_tool` →
the run's cursor (:class:`~aetheris.run.JobRun`) → the store's fenced commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from pydantic import TypeAdapter

from aetheris import crashpoints
from aetheris.errors import (
    Draining,
    EncodingError,
    InvalidInput,
    StoreError,
    Suspend,
    ToolFailed,
)
from aetheris.journal import EventDraft, EventType, OpRecord, args_hash, to_jsonable
from aetheris.observe import Ended
from aetheris.run import FOR_THE_AGENT, JobRun, Slot, current_run
from aetheris.store.port import EffectClass, EffectState, EffectWrite, ParkReason
from aetheris.threads import BODY_THREADS
from aetheris.tools import (
    NO_RETRY,
    Committed,
    CompensationRequest,
    NotExecuted,
    RateLimit,
    Reconciliation,
    RetryPolicy,
    ToolContext,
    ToolDef,
    idempotency_key,
    return_adapter,
    revive,
    tool_context_var,
)
from aetheris.waits import approval

P = ParamSpec("P")
R = TypeVar("R")


class Tool(Generic[P, R]):
    """A tool function. Inside a running agent, calling it journals the call."""

    def __init__(self, definition: ToolDef) -> None:
        self.definition = definition
        functools.update_wrapper(self, definition.fn)

    @property
    def name(self) -> str:
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        run = current_run.get()
        if run is None:
            return invoke(self.definition.fn, self.definition.is_async, None, args, kwargs)
        return call_tool(run, self.definition, args, kwargs)

    def __repr__(self) -> str:
        return f"<aetheris tool {self.name} ({self.definition.effect})>"


async def invoke(
    fn: Callable[..., Any], is_async: bool, ctx: ToolContext | None, args: Any, kwargs: Any
) -> Any:
    """Call a tool or step body with its tool context set; sync bodies run in a thread
    (:data:`aetheris.threads.BODY_THREADS`).

    The run is hidden meanwhile, so that a tool called from inside a tool runs directly.
    """
    tokens = (tool_context_var.set(ctx), current_run.set(None)) if ctx is not None else None
    try:
        if is_async:
            return await fn(*args, **kwargs)
        return await BODY_THREADS.run(fn, *args, **kwargs)
    finally:
        if tokens is not None:
            current_run.reset(tokens[1])
            tool_context_var.reset(tokens[0])


@dataclass(slots=True)
class Outcome:
    """How one dispatch of a tool or step ended, ready to be recorded."""

    started_at: float
    attempts: int = 1
    result: Any = None
    error: dict[str, Any] | None = None
    exc: BaseException | None = None
    effect_happened: bool = False
    duration_ms: float = 0.0
    retries: list[dict[str, Any]] = field(default_factory=list)


def error_doc(exc: BaseException) -> dict[str, Any]:
    """How a failure is recorded. NUL characters become U+FFFD: no store can keep them."""
    return {"type": type(exc).__name__, "message": str(exc).replace("\x00", "\ufffd")}


# Provenance: the journal position of the model answer that came last in this task (a job's
# run, or one of its parallel branches). The tool calls that follow it are the ones it asked
# for (a model client runs the tool calls of the answer it just got), so each records it as
# ``proposed_by``: the trace answers "which model answer led to this payment?". Set by
# :mod:`aetheris.modelcalls` after each model call, live or replayed; not part of any hash.
last_answer: ContextVar[int | None] = ContextVar("aetheris_last_answer", default=None)


@dataclass(frozen=True, slots=True)
class Call:
    """One journaled call: what runs, under which name and position."""

    kind: str
    name: str
    fn: Callable[..., Any]
    is_async: bool
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    args_hash: str
    retry: RetryPolicy
    effect: EffectClass
    slot: Slot
    proposed_by: int | None = None  # the position of the model answer that asked for it
    rate_limit: RateLimit | None = None

    @classmethod
    def of_tool(
        cls, tool: ToolDef, args: tuple[Any, ...], kwargs: dict[str, Any], slot: Slot, digest: str
    ) -> Call:
        """The call of ``tool`` with these arguments (``digest``, their hash) at ``slot``."""
        fields = (tool.fn, tool.is_async, args, kwargs, digest, tool.retry, tool.effect, slot)
        answer = last_answer.get()
        return cls("tool", tool.name, *fields, proposed_by=answer, rate_limit=tool.rate_limit)

    def record(self, outcome: Outcome, key: str | None = None, **extra: Any) -> OpRecord:
        """The ``op`` record of this call's outcome."""
        if self.proposed_by is not None:
            extra = {"proposed_by": self.proposed_by, **extra}
        return OpRecord(
            kind=self.kind,
            name=self.name,
            ordinal=self.slot.ordinal,
            args_hash=self.args_hash,
            effect=self.effect.value,
            outcome=_outcome_label(self.effect, outcome),
            result=outcome.result if outcome.error is None else None,
            error=outcome.error,
            attempts=outcome.attempts,
            started_at=outcome.started_at,
            duration_ms=round(outcome.duration_ms, 3),
            idempotency_key=key,
            retries=tuple(outcome.retries),
            extra=extra,
        )

    def ledger_write(
        self,
        key: str,
        state: EffectState,
        attempt: int,
        expect: EffectState | None,
        outcome: Outcome | None = None,
    ) -> EffectWrite:
        """The ledger row of this call, moving to ``state`` (from ``expect``; None inserts)."""
        return EffectWrite(
            self.slot.position,
            self.name,
            self.effect,
            self.args_hash,
            key,
            state,
            result=outcome.result if outcome else None,
            error=outcome.error if outcome else None,
            attempt=attempt,
            expect=expect,
        )


def _outcome_label(effect: EffectClass, outcome: Outcome) -> str:
    if outcome.error is not None:
        return "permanent_failure"
    return "pure" if effect is EffectClass.PURE else "side_effect_committed"


async def dispatch(run: JobRun, call: Call, ctx: ToolContext | None) -> Outcome:
    """Run ``call``'s body (with retries); never raises for the call's own failures.

    It is observed (:mod:`aetheris.probe`) from its first attempt to its outcome: the tool's
    log lines and ``tool_context().traceparent`` belong to its journal position.
    """
    attempt = ctx.attempt if ctx is not None else 1
    live = run.probe.start(call.slot.position, call.kind, call.name, attempt, call.effect)
    try:
        outcome = await _attempts(run, call, ctx)
        if live.observed:
            error = outcome.error["type"] if outcome.error is not None else None
            label = _outcome_label(call.effect, outcome)
            if call.kind == "compensation" and error is None:
                label = "compensated"
            live.done(Ended(label, error, attempts=outcome.attempts))
        return outcome
    finally:
        live.end()


async def _attempts(run: JobRun, call: Call, ctx: ToolContext | None) -> Outcome:
    outcome = Outcome(started_at=run.clock.time())
    began = run.clock.monotonic()
    attempt = ctx.attempt if ctx is not None else 1
    while True:
        if attempt > (ctx.attempt if ctx is not None else 1):
            await pace(run, call)  # a retry waits its turn too
        if call.effect is not EffectClass.PURE:
            run.check_lease()
        attempt_ctx = ctx
        if ctx is not None and ctx.attempt != attempt:
            attempt_ctx = dataclasses.replace(ctx, attempt=attempt)
        try:
            value = await invoke(call.fn, call.is_async, attempt_ctx, call.args, call.kwargs)
        except Exception as exc:
            if call.retry.allows(exc, attempt, call.effect):
                outcome.retries.append({"attempt": attempt, **error_doc(exc)})
                await asyncio.sleep(call.retry.delay(attempt, run.clock.random()))
                attempt += 1
                continue
            outcome.error, outcome.exc = error_doc(exc), exc
        else:
            crashpoints.reach("after_dispatch", call.name)
            outcome.effect_happened = True
            try:
                outcome.result = run.encode_result(value, f"{call.kind} {call.name!r}")
            except InvalidInput as exc:
                outcome.error, outcome.exc = error_doc(exc), exc
        break
    outcome.attempts = attempt - (ctx.attempt - 1 if ctx is not None else 0)
    outcome.duration_ms = (run.clock.monotonic() - began) * 1000
    return outcome


async def pace(run: JobRun, call: Call) -> None:
    """Wait for the tool's rate limit (a token of its bucket in the store), if it has one."""
    limit = call.rate_limit
    if limit is not None:
        wait = await run.read(run.store.take_token, f"tool:{call.name}", limit.per_second,
                              limit.burst)  # fmt: skip
        if wait > 0:
            await asyncio.sleep(wait)


def deliver(call: Call, record: OpRecord, adapter: TypeAdapter[Any] | None) -> Any:
    """Return a recorded (or just recorded) result, or raise its recorded failure."""
    return _delivered(call.name, call.slot.position, record.error, record.result, adapter)


def _delivered(
    name: str,
    position: int,
    error: Mapping[str, Any] | None,
    result: Any,
    adapter: TypeAdapter[Any] | None,
) -> Any:
    if error is not None:
        raise ToolFailed(name, error["type"], error["message"], position=position)
    return revive(adapter, result)


def _deliver_live(
    call: Call, record: OpRecord, adapter: TypeAdapter[Any] | None, outcome: Outcome
) -> Any:
    try:
        return deliver(call, record, adapter)
    except ToolFailed as failed:
        raise failed from outcome.exc


def _hash_args(
    run: JobRun, kind: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str:
    """The arguments' hash; arguments that cannot be journaled are named with their call."""
    try:
        return args_hash(args, kwargs)
    except EncodingError as exc:
        raise _unjournaled(run, kind, name, exc) from None


def _unjournaled(run: JobRun, kind: str, name: str, exc: EncodingError) -> EncodingError:
    return EncodingError(
        f"the arguments of {kind} {name!r} (journal position {run.next_position}) cannot "
        f"be journaled: {exc}; pass JSON values or pydantic models"
    )


# -- steps and pure tools ----------------------------------------------------------------------


async def step(
    run: JobRun,
    name: str,
    fn: Callable[..., Awaitable[Any]] | Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """``ctx.step(name, fn, *args)``: a pure, journaled call of ``fn``."""
    try:  # (what _hash_args does, inline: a resume replays every step)
        ahash = args_hash(args, kwargs)
    except EncodingError as exc:
        raise _unjournaled(run, "step", name, exc) from None
    slot = run.next_op("step", name, ahash)
    adapter = return_adapter(fn)
    replayed = slot.replayed
    if replayed is not None:  # nothing runs; read straight from the entry: a resume replays
        error = replayed.get("error")  # every step, and an OpRecord costs more than the rest
        if error is None:
            return revive(adapter, replayed.get("result"))
        return _delivered(name, slot.position, error, None, adapter)
    is_async = asyncio.iscoroutinefunction(fn)
    call = Call("step", name, fn, is_async, args, kwargs, ahash, NO_RETRY, EffectClass.PURE, slot)
    try:  # only the step's own outcome reaches agent code (see JobRun.guarded)
        return await run_pure(run, call, adapter)
    except FOR_THE_AGENT:
        raise
    except Exception as exc:
        raise run.runtime_failure(exc) from exc


async def run_pure(run: JobRun, call: Call, adapter: TypeAdapter[Any] | None) -> Any:
    """A pure step or tool: dispatch, record, return. Run again if the record never landed."""
    position = call.slot.position
    key = idempotency_key(run.job.id, position, call.args_hash)
    ctx = ToolContext(run.job.id, call.name, position, key, run.lease.epoch, 1)
    flight = run.take_off()
    try:
        if run.draining:
            raise Draining(f"the worker is stopping; {call.name} was not run")
        outcome = await dispatch(run, call, ctx)
        record = call.record(outcome)
        await run.commit(record.draft(position))
    finally:
        run.land(flight)
    crashpoints.reach("after_outcome", call.name)
    return _deliver_live(call, record, adapter, outcome)


# -- tools ---------------------------------------------------------------------------------------


async def journaled_call(
    name: str,
    fn: Callable[..., Any],
    kwargs: Mapping[str, Any] | None = None,
    *,
    effect: EffectClass | str = EffectClass.AT_MOST_ONCE,
    retry: RetryPolicy | None = None,
    reconcile: Callable[[str], Any] | None = None,
    requires_approval: bool = False,
    rate_limit: RateLimit | None = None,
    schema: dict[str, Any] | None = None,
) -> Any:
    """``fn(**kwargs)`` as a journaled tool call named ``name``, for code that holds a callable
    rather than an ``@app.tool`` (a framework's tool, an MCP call): inside a running agent it
    takes a journal position and follows the ledger rules of ``effect``; outside, it runs.

    ``effect`` defaults to ``at_most_once``: a call whose effect is not declared is never run
    twice on a guess (a crash mid-call leaves it in doubt for ``reconcile`` or an operator).
    The result must have a JSON form; a replay returns that form (dicts, lists, strings).
    """
    definition = ToolDef(
        name,
        fn,
        EffectClass(effect),
        retry or RetryPolicy(),
        reconcile=reconcile,
        requires_approval=requires_approval,
        rate_limit=rate_limit,
        schema=schema,
    )
    arguments = dict(kwargs or {})
    run = current_run.get()
    if run is None:
        return await invoke(fn, definition.is_async, None, (), arguments)
    return await call_tool(run, definition, (), arguments)


async def call_tool(
    run: JobRun, tool: ToolDef, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The journaled call of a tool by agent code."""
    try:  # only the tool's own outcome reaches agent code (see JobRun.guarded)
        return await _call_tool(run, tool, args, kwargs)
    except FOR_THE_AGENT:
        raise
    except Exception as exc:
        raise run.runtime_failure(exc) from exc


async def _call_tool(
    run: JobRun, tool: ToolDef, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    ahash = _hash_args(run, "tool", tool.name, args, kwargs)
    if tool.requires_approval:
        # A durable approval of exactly this call (its arguments and their hash), each time.
        request = {
            "tool": tool.name,
            "args": to_jsonable(list(args)),
            "kwargs": to_jsonable(kwargs),
            "args_hash": ahash,
        }
        await approval(run, f"tool:{tool.name}", request, tool.approval_timeout, None)
    slot = run.next_op("tool", tool.name, ahash)
    call = Call.of_tool(tool, args, kwargs, slot, ahash)
    if slot.replayed is not None:
        recorded = slot.recorded()
        value = deliver(call, recorded, tool.adapter)
        remember_compensation(run, tool, call, recorded)
        return value
    await pace(run, call)  # before the intent: a crash while waiting leaves nothing in doubt
    if tool.effect is EffectClass.PURE:
        return await run_pure(run, call, tool.adapter)
    # next_op compared any intent at this position with this call: the row is this call's.
    flight = run.take_off()
    try:
        return await _ledgered(run, tool, call)
    finally:
        run.land(flight)


async def _ledgered(run: JobRun, tool: ToolDef, call: Call) -> Any:
    position = call.slot.position
    key = idempotency_key(run.job.id, position, call.args_hash)
    attempt_or_done = await _begin(run, tool, call, key)
    if isinstance(attempt_or_done, Committed):
        record = OpRecord(
            "tool",
            call.name,
            call.slot.ordinal,
            call.args_hash,
            result=attempt_or_done.result,
            idempotency_key=key,
        )
        remember_compensation(run, tool, call, record)
        return deliver(call, record, tool.adapter)
    attempt = attempt_or_done
    if run.draining:
        await _not_dispatched(run, call, key, attempt)
    ctx = ToolContext(run.job.id, call.name, position, key, run.lease.epoch, attempt)
    # Between intent and outcome the effect is in flight: if the run is interrupted here
    # (cancel, deadline), it may have happened, and the job's end records it in doubt.
    outcome = await dispatch(run, call, ctx)
    record = call.record(outcome, key)
    state = EffectState.COMMITTED if outcome.effect_happened else EffectState.FAILED
    await run.commit(
        record.draft(position),
        effects=[call.ledger_write(key, state, attempt, EffectState.INTENT, outcome)],
    )
    crashpoints.reach("after_outcome", call.name)
    value = _deliver_live(call, record, tool.adapter, outcome)
    remember_compensation(run, tool, call, record)
    return value


async def _begin(run: JobRun, tool: ToolDef, call: Call, key: str) -> Committed | int:
    """Write the intent of the attempt about to be dispatched (its number), or settle a doubt."""
    row = run.ledger_row(call.slot.position)
    if row is None:
        crashpoints.reach("before_intent", call.name)
        await write_intent(run, call, key, 1, None)
        crashpoints.reach("after_intent", call.name)
        return 1
    if row.state is EffectState.INTENT and tool.effect is EffectClass.IDEMPOTENT:
        await write_intent(run, call, key, row.attempt + 1, EffectState.INTENT)
        return row.attempt + 1
    if row.state in (EffectState.INTENT, EffectState.IN_DOUBT):
        return await _settle_in_doubt(run, tool, call, key, row)
    if row.state is EffectState.NOT_EXECUTED:
        await write_intent(run, call, key, row.attempt + 1, EffectState.NOT_EXECUTED)
        return row.attempt + 1
    raise StoreError(
        f"job {run.job.id}: ledger row at position {call.slot.position} is {row.state} "
        "but the journal has no outcome for it"
    )


async def _not_dispatched(run: JobRun, call: Call, key: str, attempt: int) -> None:
    """The worker began stopping while the intent was written: dispatch nothing, say so."""
    data = {
        "name": call.name,
        "by": "worker stopping",
        "idempotency_key": key,
        "resolution": "not_executed",
        "reason": "the worker stopped before dispatching it",
    }
    write = call.ledger_write(key, EffectState.NOT_EXECUTED, attempt, EffectState.INTENT)
    await run.commit(
        EventDraft(EventType.EFFECT_RESOLVED, data, call.slot.position), effects=[write]
    )
    raise Draining(f"the worker is stopping; {call.name} was not dispatched")


async def write_intent(
    run: JobRun, call: Call, key: str, attempt: int, expect: EffectState | None
) -> None:
    """The intent row and event of attempt ``attempt``, before it is dispatched."""
    data = {
        "kind": call.kind,
        "name": call.name,
        "ordinal": call.slot.ordinal,
        "args_hash": call.args_hash,
        "effect": call.effect.value,
        "idempotency_key": key,
        "attempt": attempt,
    }
    write = call.ledger_write(key, EffectState.INTENT, attempt, expect)
    await run.commit(EventDraft(EventType.INTENT, data, call.slot.position), effects=[write])


# -- in doubt ------------------------------------------------------------------------------------


async def _settle_in_doubt(
    run: JobRun, tool: ToolDef, call: Call, key: str, row: EffectWrite
) -> Committed | int:
    """An ``at_most_once`` intent with no outcome: ask ``reconcile`` or park. Never guess."""
    position = call.slot.position
    if row.state is EffectState.INTENT:
        data = {"name": call.name, "idempotency_key": key, "attempt": row.attempt}
        await run.commit(
            EventDraft(EventType.EFFECT_IN_DOUBT, data, position),
            effects=[call.ledger_write(key, EffectState.IN_DOUBT, row.attempt, EffectState.INTENT)],
        )
    answer, problem = await _ask_reconcile(tool, key)
    if isinstance(answer, Committed):
        return await _reconciled_committed(run, call, key, row, answer)
    if isinstance(answer, NotExecuted):
        resolved = {"name": call.name, "by": "reconcile", "idempotency_key": key}
        await run.commit(
            EventDraft(
                EventType.EFFECT_RESOLVED, {**resolved, "resolution": "not_executed"}, position
            ),
            effects=[
                call.ledger_write(key, EffectState.INTENT, row.attempt + 1, EffectState.IN_DOUBT)
            ],
        )
        return row.attempt + 1
    detail = {
        "position": position,
        "tool": call.name,
        "idempotency_key": key,
        "args_hash": call.args_hash,
        "message": f"{call.name} may or may not have happened; resolve with "
        f"`aetheris effects resolve {run.job.id} {position} "
        "(--committed JSON | --not-executed | --fail)`",
    }
    if problem:
        detail["reconcile_error"] = problem
    raise Suspend(ParkReason.EFFECT_IN_DOUBT, detail)


async def _reconciled_committed(
    run: JobRun, call: Call, key: str, row: EffectWrite, answer: Committed
) -> Committed:
    outcome = Outcome(started_at=run.clock.time(), attempts=row.attempt, effect_happened=True)
    outcome.result = run.encode_result(answer.result, f"reconcile of {call.name!r}")
    resolved = {"name": call.name, "by": "reconcile", "idempotency_key": key}
    position = call.slot.position
    await run.commit(
        EventDraft(EventType.EFFECT_RESOLVED, {**resolved, "resolution": "committed"}, position),
        call.record(outcome, key, reconciled=True).draft(position),
        effects=[
            call.ledger_write(
                key, EffectState.COMMITTED, row.attempt, EffectState.IN_DOUBT, outcome
            )
        ],
    )
    return Committed(outcome.result)


async def _ask_reconcile(tool: ToolDef, key: str) -> tuple[Reconciliation, str | None]:
    if tool.reconcile is None:
        return None, None
    try:
        answer = tool.reconcile(key)
        if inspect.isawaitable(answer):
            answer = await answer
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if answer is None or isinstance(answer, Committed | NotExecuted):
        return answer, None
    return None, f"reconcile returned {answer!r}; expected Committed, NotExecuted or None"


def remember_compensation(run: JobRun, tool: ToolDef, call: Call, record: OpRecord) -> None:
    """A committed effect with a ``compensate``: the run will undo it if the job fails."""
    if tool.compensate is None or record.error is not None:
        return
    key = record.idempotency_key or idempotency_key(run.job.id, call.slot.position, call.args_hash)
    request = CompensationRequest(
        job_id=run.job.id,
        tool=call.name,
        position=call.slot.position,
        args=call.args,
        kwargs=call.kwargs,
        result=record.result,
        idempotency_key=key,
    )
    run.remember_compensation(tool, request)
