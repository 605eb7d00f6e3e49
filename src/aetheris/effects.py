"""Tools and the effects ledger: at-most-once, honestly.

A tool declares its effect class. ``pure`` tools are simply journaled. For ``idempotent`` and
``at_most_once`` tools the runner writes an *intent* row (fenced, unique per job and position)
before dispatching and the *outcome* after, handing the tool a deterministic idempotency key.

If a worker dies between the two, recovery finds an intent without outcome:

* ``idempotent``: dispatched again with the same key;
* ``at_most_once``: *in doubt*. The tool's ``reconcile(key)`` may say what happened
  (:class:`Committed` or :class:`NotExecuted`); otherwise the job parks with reason
  ``effect_in_doubt`` until an operator resolves it. It is never re-run on a guess.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import typing
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from pydantic import TypeAdapter

from aetheris import crashpoints
from aetheris.context import ToolContext, current_run, enter_tool, leave_tool
from aetheris.errors import (
    ConfigurationError,
    Conflict,
    Draining,
    InvalidInput,
    JobNotFound,
    RetryableError,
    StoreError,
    Suspend,
    ToolFailed,
)
from aetheris.journal import EventDraft, EventType, args_hash, to_jsonable
from aetheris.store.port import (
    Commit,
    EffectClass,
    EffectState,
    EffectWrite,
    Guard,
    Job,
    JobStatus,
    ParkReason,
    StatusWrite,
    Store,
)

if TYPE_CHECKING:
    from aetheris.runner import JobRun, Slot

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter for errors raised before any effect happened.

    ``at_most_once`` tools are retried only for :class:`~aetheris.RetryableError`: any other
    exception means the tool ran and failed, so the failure is its outcome.
    """

    max_attempts: int = 3
    initial_interval: float = 0.2
    backoff: float = 2.0
    max_interval: float = 30.0
    jitter: float = 0.2
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")

    def allows(self, exc: BaseException, attempt: int, effect: EffectClass) -> bool:
        """Whether a failure on ``attempt`` (1-based) may be followed by another attempt."""
        if attempt >= self.max_attempts or isinstance(exc, self.give_up_on):
            return False
        if effect is EffectClass.AT_MOST_ONCE:
            return isinstance(exc, RetryableError)
        return isinstance(exc, (RetryableError, *self.retry_on))

    def delay(self, attempt: int, draw: float) -> float:
        """Seconds to wait before attempt ``attempt + 1``; ``draw`` in [0, 1) sets the jitter."""
        base = min(self.max_interval, self.initial_interval * self.backoff ** (attempt - 1))
        return max(0.0, base * (1 + self.jitter * (2 * draw - 1)))


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class Committed:
    """``reconcile`` answer: the effect happened, with this result."""

    result: Any = None


@dataclass(frozen=True, slots=True)
class NotExecuted:
    """``reconcile`` answer: the effect did not happen; it may be dispatched once."""


Reconciliation = Committed | NotExecuted | None


@dataclass(frozen=True, slots=True)
class CompensationRequest:
    """What a ``compensate`` function receives: the committed call it must undo."""

    job_id: str
    tool: str
    position: int
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any
    idempotency_key: str


@dataclass(frozen=True)
class ToolDef:
    """A registered tool."""

    name: str
    fn: Callable[..., Any]
    effect: EffectClass
    retry: RetryPolicy
    reconcile: Callable[[str], Reconciliation | Awaitable[Reconciliation]] | None = None
    compensate: Callable[[CompensationRequest], Any] | None = None
    requires_approval: bool = False
    approval_timeout: float | None = None
    is_async: bool = field(init=False)
    adapter: TypeAdapter[Any] | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.fn))
        object.__setattr__(self, "adapter", return_adapter(self.fn))

    def revive(self, value: Any) -> Any:
        """Turn a recorded JSON result back into the annotated return type."""
        return revive(self.adapter, value)


_adapters: weakref.WeakKeyDictionary[Callable[..., Any], TypeAdapter[Any] | None] = (
    weakref.WeakKeyDictionary()
)


def return_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    """A validator for ``fn``'s return annotation, so replay returns the live type.

    Cached per function: building a ``TypeAdapter`` costs more than a durable step.
    """
    try:
        return _adapters[fn]
    except (KeyError, TypeError):
        pass
    adapter = _build_adapter(fn)
    with contextlib.suppress(TypeError):
        _adapters[fn] = adapter
    return adapter


def _build_adapter(fn: Callable[..., Any]) -> TypeAdapter[Any] | None:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None
    annotation = hints.get("return")
    if annotation is None or annotation is Any or annotation is type(None):
        return None
    return TypeAdapter(annotation)


def revive(adapter: TypeAdapter[Any] | None, value: Any) -> Any:
    return value if adapter is None else adapter.validate_python(value)


async def invoke(
    fn: Callable[..., Any], is_async: bool, ctx: ToolContext | None, args: Any, kwargs: Any
) -> Any:
    """Call a tool or step body with its tool context set; sync bodies run in a thread."""
    tokens = enter_tool(ctx) if ctx is not None else None
    try:
        if is_async:
            return await fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)
    finally:
        if tokens is not None:
            leave_tool(tokens)


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
        return run.call_tool(self.definition, args, kwargs)

    def __repr__(self) -> str:
        return f"<aetheris tool {self.name} ({self.definition.effect})>"


def idempotency_key(job_id: str, position: int, args_hash: str) -> str:
    """Deterministic: the same call of the same job gets the same key on every worker."""
    return f"aeth-{job_id}-{position}-{args_hash[:16]}"


# -- the ledger protocol --------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """How one call of a tool or step ended, ready to be recorded."""

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

    def op_data(self, outcome: Outcome, **extra: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "ordinal": self.slot.ordinal,
            "args_hash": self.args_hash,
            "effect": self.effect.value,
            "outcome": _outcome_label(self.effect, outcome),
            "attempts": outcome.attempts,
            "started_at": outcome.started_at,
            "duration_ms": round(outcome.duration_ms, 3),
        }
        if outcome.error is not None:
            data["error"] = outcome.error
        else:
            data["result"] = outcome.result
        if outcome.retries:
            data["retries"] = outcome.retries
        data.update(extra)
        return data


def _outcome_label(effect: EffectClass, outcome: Outcome) -> str:
    if outcome.error is not None:
        return "permanent_failure"
    return "pure" if effect is EffectClass.PURE else "side_effect_committed"


async def execute(run: JobRun, call: Call, ctx: ToolContext | None) -> Outcome:
    """Dispatch ``call`` with retries; never raises for the call's own failures."""
    outcome = Outcome(started_at=run.clock.time())
    began = run.clock.monotonic()
    attempt = ctx.attempt if ctx is not None else 1
    while True:
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


def deliver(call: Call, data: Mapping[str, Any], adapter: TypeAdapter[Any] | None) -> Any:
    """Return a recorded (or just recorded) result, or raise its recorded failure."""
    error = data.get("error")
    if error is not None:
        raise ToolFailed(call.name, error["type"], error["message"], position=call.slot.position)
    return revive(adapter, data.get("result"))


async def run_pure(run: JobRun, call: Call, adapter: TypeAdapter[Any] | None) -> Any:
    """A pure step or tool: execute, record, return. Re-executed if the record never landed."""
    position = call.slot.position
    key = idempotency_key(run.job.id, position, call.args_hash)
    ctx = ToolContext(run.job.id, call.name, position, key, run.lease.epoch, 1)
    flight = run.take_off()
    try:
        if run.draining:
            raise Draining(f"the worker is stopping; {call.name} was not run")
        outcome = await execute(run, call, ctx)
        data = call.op_data(outcome)
        await run.commit(EventDraft(EventType.OP, data, call.slot.position))
    finally:
        run.land(flight)
    crashpoints.reach("after_outcome", call.name)
    return _deliver_live(call, data, adapter, outcome)


def _deliver_live(
    call: Call, data: Mapping[str, Any], adapter: TypeAdapter[Any] | None, outcome: Outcome
) -> Any:
    try:
        return deliver(call, data, adapter)
    except ToolFailed as failed:
        raise failed from outcome.exc


async def call_tool(
    run: JobRun, tool: ToolDef, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """The journaled call of a tool by agent code."""
    ahash = args_hash(args, kwargs)
    if tool.requires_approval:
        from aetheris.waits import approval

        # A durable approval of exactly this call (its arguments and their hash), each time.
        request = {
            "tool": tool.name,
            "args": to_jsonable(list(args)),
            "kwargs": to_jsonable(kwargs),
            "args_hash": ahash,
        }
        await approval(run, f"tool:{tool.name}", request, tool.approval_timeout, None)
    slot = run.next_op("tool", tool.name, ahash)
    call = Call(
        "tool",
        tool.name,
        tool.fn,
        tool.is_async,
        args,
        kwargs,
        ahash,
        tool.retry,
        tool.effect,
        slot,
    )
    if slot.recorded is not None:
        value = deliver(call, slot.recorded.data, tool.adapter)
        _remember_compensation(run, tool, call, slot.recorded.data)
        return value
    if tool.effect is EffectClass.PURE:
        return await run_pure(run, call, tool.adapter)
    return await _ledgered(run, tool, call)


async def _ledgered(run: JobRun, tool: ToolDef, call: Call) -> Any:
    # next_op compared any intent at this position with this call: the row is this call's.
    flight = run.take_off()
    try:
        return await _dispatch_once(run, tool, call)
    finally:
        run.land(flight)


async def _dispatch_once(run: JobRun, tool: ToolDef, call: Call) -> Any:
    position = call.slot.position
    key = idempotency_key(run.job.id, position, call.args_hash)
    row = run.ledger_row(position)
    intent = _intent_writer(run, call, key)
    if row is None:
        crashpoints.reach("before_intent", call.name)
        await intent(1, None)
        crashpoints.reach("after_intent", call.name)
        attempt = 1
    elif row.state is EffectState.INTENT and tool.effect is EffectClass.IDEMPOTENT:
        attempt = row.attempt + 1
        await intent(attempt, EffectState.INTENT)
    elif row.state in (EffectState.INTENT, EffectState.IN_DOUBT):
        settled = await _settle_in_doubt(run, tool, call, key, row)
        if isinstance(settled, Committed):
            data = {"result": settled.result, "idempotency_key": key}
            _remember_compensation(run, tool, call, data)
            return deliver(call, data, tool.adapter)
        attempt = settled
    elif row.state is EffectState.NOT_EXECUTED:
        attempt = row.attempt + 1
        await intent(attempt, EffectState.NOT_EXECUTED)
    else:
        raise StoreError(
            f"job {run.job.id}: ledger row at position {position} is {row.state} "
            "but the journal has no outcome for it"
        )
    if run.draining:
        await _not_dispatched(run, call, key, attempt)
    ctx = ToolContext(run.job.id, call.name, position, key, run.lease.epoch, attempt)
    # Between intent and outcome the effect is in flight: if the run is interrupted here
    # (cancel, deadline), it may have happened, and the job's end records it in doubt.
    outcome = await execute(run, call, ctx)
    data = call.op_data(outcome, idempotency_key=key)
    state = EffectState.COMMITTED if outcome.effect_happened else EffectState.FAILED
    await run.commit(
        EventDraft(EventType.OP, data, position),
        effects=[_effect_write(call, key, state, attempt, EffectState.INTENT, outcome)],
    )
    crashpoints.reach("after_outcome", call.name)
    value = _deliver_live(call, data, tool.adapter, outcome)
    _remember_compensation(run, tool, call, data)
    return value


async def _not_dispatched(run: JobRun, call: Call, key: str, attempt: int) -> None:
    """The worker began stopping while the intent was written: dispatch nothing, say so."""
    data = {
        "name": call.name,
        "by": "worker stopping",
        "idempotency_key": key,
        "resolution": "not_executed",
        "reason": "the worker stopped before dispatching it",
    }
    write = _effect_write(call, key, EffectState.NOT_EXECUTED, attempt, EffectState.INTENT)
    await run.commit(
        EventDraft(EventType.EFFECT_RESOLVED, data, call.slot.position), effects=[write]
    )
    raise Draining(f"the worker is stopping; {call.name} was not dispatched")


def _intent_writer(
    run: JobRun, call: Call, key: str
) -> Callable[[int, EffectState | None], Awaitable[None]]:
    async def write(attempt: int, expect: EffectState | None) -> None:
        data = {
            "kind": call.kind,
            "name": call.name,
            "ordinal": call.slot.ordinal,
            "args_hash": call.args_hash,
            "effect": call.effect.value,
            "idempotency_key": key,
            "attempt": attempt,
        }
        write_ = EffectWrite(
            call.slot.position,
            call.name,
            call.effect,
            call.args_hash,
            key,
            EffectState.INTENT,
            attempt=attempt,
            expect=expect,
        )
        await run.commit(EventDraft(EventType.INTENT, data, call.slot.position), effects=[write_])

    return write


def _effect_write(
    call: Call,
    key: str,
    state: EffectState,
    attempt: int,
    expect: EffectState | None,
    outcome: Outcome | None = None,
) -> EffectWrite:
    return EffectWrite(
        call.slot.position,
        call.name,
        call.effect,
        call.args_hash,
        key,
        state,
        result=outcome.result if outcome else None,
        error=outcome.error if outcome else None,
        attempt=attempt,
        expect=expect,
    )


async def _settle_in_doubt(
    run: JobRun, tool: ToolDef, call: Call, key: str, row: EffectWrite
) -> Committed | int:
    """An ``at_most_once`` intent with no outcome: ask ``reconcile`` or park. Never guess."""
    position = call.slot.position
    if row.state is EffectState.INTENT:
        await run.commit(
            EventDraft(
                EventType.EFFECT_IN_DOUBT,
                {"name": call.name, "idempotency_key": key, "attempt": row.attempt},
                position,
            ),
            effects=[
                _effect_write(call, key, EffectState.IN_DOUBT, row.attempt, EffectState.INTENT)
            ],
        )
    answer, problem = await _ask_reconcile(tool, key)
    resolved = {"name": call.name, "by": "reconcile", "idempotency_key": key}
    if isinstance(answer, Committed):
        outcome = Outcome(started_at=run.clock.time(), attempts=row.attempt, effect_happened=True)
        outcome.result = run.encode_result(answer.result, f"reconcile of {call.name!r}")
        await run.commit(
            EventDraft(
                EventType.EFFECT_RESOLVED, {**resolved, "resolution": "committed"}, position
            ),
            EventDraft(
                EventType.OP, call.op_data(outcome, idempotency_key=key, reconciled=True), position
            ),
            effects=[
                _effect_write(
                    call, key, EffectState.COMMITTED, row.attempt, EffectState.IN_DOUBT, outcome
                )
            ],
        )
        return Committed(outcome.result)
    if isinstance(answer, NotExecuted):
        attempt = row.attempt + 1
        await run.commit(
            EventDraft(
                EventType.EFFECT_RESOLVED, {**resolved, "resolution": "not_executed"}, position
            ),
            effects=[_effect_write(call, key, EffectState.INTENT, attempt, EffectState.IN_DOUBT)],
        )
        return attempt
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


# -- compensation ---------------------------------------------------------------------------


def _remember_compensation(run: JobRun, tool: ToolDef, call: Call, data: Mapping[str, Any]) -> None:
    if tool.compensate is None or data.get("error") is not None:
        return
    run.compensable.append(
        (
            tool,
            CompensationRequest(
                job_id=run.job.id,
                tool=call.name,
                position=call.slot.position,
                args=call.args,
                kwargs=call.kwargs,
                result=data.get("result"),
                idempotency_key=data.get("idempotency_key")
                or idempotency_key(run.job.id, call.slot.position, call.args_hash),
            ),
        )
    )


class CompensationFailed(Exception):
    """A registered compensation failed for good; the job fails with this."""


async def compensate_all(run: JobRun) -> list[str]:
    """Run compensations of committed effects in reverse order; return the tools undone."""
    undone = []
    for tool, request in reversed(run.compensable):
        await _compensate(run, tool, request)
        undone.append(request.tool)
    return undone


async def _compensate(run: JobRun, tool: ToolDef, request: CompensationRequest) -> None:
    assert tool.compensate is not None
    ahash = args_hash([request.position], {})
    name = f"compensate:{tool.name}"
    slot = run.next_op("compensation", name, ahash)
    call = Call(
        "compensation",
        name,
        tool.compensate,
        inspect.iscoroutinefunction(tool.compensate),
        (request,),
        {},
        ahash,
        RetryPolicy(),
        EffectClass.IDEMPOTENT,
        slot,
    )
    if slot.recorded is not None:
        _raise_failed_compensation(call, slot.recorded.data)
        return
    key = request.idempotency_key + ":compensate"
    row = run.ledger_row(slot.position)
    attempt = 1 if row is None else row.attempt + 1
    await _intent_writer(run, call, key)(attempt, None if row is None else EffectState.INTENT)
    outcome = await execute(
        run, call, ToolContext(run.job.id, call.name, slot.position, key, run.lease.epoch, attempt)
    )
    data = call.op_data(outcome, idempotency_key=key, compensates=request.position)
    if outcome.error is None:
        data["outcome"] = "compensated"
    writes = [
        _effect_write(
            call,
            key,
            EffectState.COMMITTED if outcome.error is None else EffectState.FAILED,
            attempt,
            EffectState.INTENT,
            outcome,
        )
    ]
    if outcome.error is None and tool.effect is not EffectClass.PURE:
        writes.append(
            EffectWrite(
                request.position,
                request.tool,
                tool.effect,
                "",
                "",
                EffectState.COMPENSATED,
                result=request.result,
                expect=EffectState.COMMITTED,
            )
        )
    await run.commit(EventDraft(EventType.OP, data, slot.position), effects=writes)
    _raise_failed_compensation(call, data)


def _raise_failed_compensation(call: Call, data: Mapping[str, Any]) -> None:
    error = data.get("error")
    if error is not None:
        raise CompensationFailed(
            f"compensation of {call.name} (position {call.slot.position}) failed: "
            f"{error['type']}: {error['message']}"
        )


# -- operator resolution of in-doubt effects -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolution:
    """An operator's answer for an in-doubt effect: exactly one of the three."""

    committed: bool = False
    result: Any = None
    not_executed: bool = False
    fail: bool = False
    reason: str | None = None
    by: str | None = None

    def __post_init__(self) -> None:
        if sum((self.committed, self.not_executed, self.fail)) != 1:
            raise ConfigurationError("resolve with exactly one of committed, not_executed, fail")

    @property
    def label(self) -> str:
        if self.committed:
            return "committed"
        return "not_executed" if self.not_executed else "failed"


async def resolve_effect(
    store: Store, job_id: str, position: int, resolution: Resolution, now: float
) -> Job:
    """Apply an operator's resolution of an in-doubt effect.

    A job parked on it becomes pending and resumes. A job that has ended (cancelled or failed
    while the effect was in doubt) keeps its status: the ledger records what really happened.
    """
    job = await store.get_job(job_id)
    if job is None:
        raise JobNotFound(job_id)
    rows = await store.effects(job_id=job_id)
    row = next((r for r in rows if r.position == position), None)
    if row is None:
        raise ConfigurationError(f"job {job_id} has no effect at position {position}")
    if row.state is not EffectState.IN_DOUBT:
        raise Conflict(
            f"effect at position {position} of job {job_id} is {row.state}, not in doubt: "
            "there is nothing to resolve"
        )
    intents = [
        e
        for e in await store.events(job_id)
        if e.type is EventType.INTENT and e.position == position
    ]
    recorded = intents[-1].data if intents else {}
    base = {
        "name": row.tool,
        "by": resolution.by or "operator",
        "reason": resolution.reason,
        "idempotency_key": row.idempotency_key,
        "resolution": resolution.label,
    }
    events = [EventDraft(EventType.EFFECT_RESOLVED, base, position)]
    state, result, error = _resolved_state(resolution)
    if not resolution.not_executed and not job.status.terminal:
        # The resumed run finds this outcome at the position, as if the tool had returned it.
        op: dict[str, Any] = {
            "kind": recorded.get("kind", "tool"),
            "name": row.tool,
            "ordinal": recorded.get("ordinal", 1),
            "args_hash": row.args_hash,
            "effect": row.effect.value,
            "attempts": row.attempt,
            "started_at": now,
            "duration_ms": 0.0,
            "idempotency_key": row.idempotency_key,
            "resolved_by": base["by"],
            "outcome": "side_effect_committed" if resolution.committed else "permanent_failure",
        }
        op.update({"result": result} if resolution.committed else {"error": error})
        events.append(EventDraft(EventType.OP, op, position))
    write = EffectWrite(
        position,
        row.tool,
        row.effect,
        row.args_hash,
        row.idempotency_key,
        state,
        result=result,
        error=error,
        attempt=row.attempt,
        expect=EffectState.IN_DOUBT,
    )
    if job.status.terminal:
        guard = Guard(frozenset({job.status}))
        return await store.apply(job_id, Commit(events, [write]), guard)
    guard = Guard(frozenset({JobStatus.PARKED}), frozenset({ParkReason.EFFECT_IN_DOUBT}))
    return await store.apply(
        job_id,
        Commit(
            [*events, EventDraft(EventType.JOB_RESUMED, {"by": base["by"]})],
            [write],
            StatusWrite(JobStatus.PENDING),
        ),
        guard,
    )


def _resolved_state(resolution: Resolution) -> tuple[EffectState, Any, dict[str, Any] | None]:
    if resolution.not_executed:
        return EffectState.NOT_EXECUTED, None, None
    if resolution.committed:
        return EffectState.COMMITTED, to_jsonable(resolution.result), None
    message = resolution.reason or "an operator resolved the in-doubt effect as failed"
    return EffectState.FAILED, None, {"type": "ResolvedAsFailed", "message": message}
