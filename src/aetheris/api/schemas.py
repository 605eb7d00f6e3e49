"""Request and response bodies of the HTTP API, as pydantic models (they make the OpenAPI
document). Times are ISO-8601 in UTC, as in the CLI's ``--json``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aetheris.audit import Verdict
from aetheris.journal import Event
from aetheris.store.port import (
    DeliveryAttempt,
    Effect,
    Job,
    Signal,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
)
from aetheris.timeline import Phase, Step

NAME = r"^[^\x00]{1,200}$"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ----------------------------------------------------------------------------------


class BudgetIn(Strict):
    tokens: int | None = Field(default=None, ge=0, le=2**62)
    cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class StartJob(Strict):
    agent: str = Field(pattern=NAME, description="The agent's name.")
    input: dict[str, Any] = Field(default_factory=dict, description="The agent's input.")
    queue: str = Field(default="default", pattern=NAME, description="The queue it waits in.")
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1, description="Higher runs first.")
    budget: BudgetIn | None = Field(default=None, description="What its model calls may spend.")


class SendSignal(Strict):
    data: Any = Field(default=None, description="The signal's payload (any JSON).")
    signal_id: str | None = Field(
        default=None, pattern=NAME, description="Sending twice with one id delivers once."
    )


class ForkJob(Strict):
    at: int = Field(ge=0, le=2**31 - 1, description="Keep the first N journal entries.")
    output: Any = Field(
        default=None,
        description="When given (even null), entry N too, its result replaced by this JSON.",
    )


class Decision(Strict):
    position: int | None = Field(default=None, ge=0, description="The request's position.")
    args_hash: str | None = Field(
        default=None, pattern=NAME, description="What was reviewed: refused unless it matches."
    )
    comment: str | None = Field(default=None, max_length=10_000, pattern=r"^[^\x00]*$")


class Resolve(Strict):
    outcome: Literal["committed", "not_executed", "fail"]
    result: Any = Field(default=None, description="The effect's result (committed only).")
    reason: str | None = Field(default=None, max_length=10_000, pattern=r"^[^\x00]*$")


class RaiseBudget(Strict):
    tokens: int | None = Field(default=None, ge=0, le=2**62)
    cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)


class CreateWebhook(Strict):
    url: str = Field(
        max_length=2048, description="Where to POST the events: an http:// or https:// URL."
    )
    events: list[WebhookEvent] = Field(
        min_length=1, max_length=20, description="The event types to send."
    )
    tenant: str | None = Field(
        default=None,
        pattern=NAME,
        description="Whose jobs (default: the key's tenant; a key may name only its own).",
    )


# -- responses ---------------------------------------------------------------------------------


class JobOut(BaseModel):
    id: str
    tenant: str
    agent: str
    status: str
    park_reason: str | None
    park_detail: dict[str, Any] | None
    input: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    idempotency_key: str | None
    queue: str
    priority: int
    parent_id: str | None
    control: str | None = Field(description="A cancel or pause its worker is to honour.")
    control_by: str | None = Field(description="Who asked for it (a key, and its role).")
    attempts: int
    recoveries: int = Field(description="Runs cut short by a dead worker or a runtime failure.")
    events: int
    head_hash: str = Field(description="The hash of its last journal event.")
    code_version: str | None = Field(
        default=None, description="The agent code version that last wrote its journal."
    )
    wake_on: str | None = Field(description="What a parked job waits for.")
    wake_at: str | None = Field(description="When a parked job is due anyway.")
    deadline: str | None
    lease_epoch: int = Field(description="The fencing token of its latest claim.")
    lease_owner: str | None = Field(
        description="The worker that holds it (shown to admins only: it names a host)."
    )
    lease_expires_at: str | None
    run_at: str | None = Field(description="When it may run (pending).")
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, job: Job, *, owner: bool = False) -> JobOut:
        """The job as a caller sees it; ``owner``: with the worker that holds it."""
        return cls(
            id=job.id,
            tenant=job.tenant,
            agent=job.agent,
            status=job.status.value,
            park_reason=job.park_reason.value if job.park_reason else None,
            park_detail=job.park_detail,
            input=job.input,
            result=job.result,
            error=job.error,
            idempotency_key=job.idempotency_key,
            queue=job.queue,
            priority=job.priority,
            parent_id=job.parent_id,
            control=job.control.value if job.control else None,
            control_by=job.control_by,
            attempts=job.attempts,
            recoveries=job.recoveries,
            events=job.event_count,
            head_hash=job.head_hash,
            code_version=job.code_version,
            wake_on=job.wake_on,
            wake_at=iso(job.wake_at),
            deadline=iso(job.deadline),
            lease_epoch=job.lease_epoch,
            lease_owner=job.lease_owner if owner else None,
            lease_expires_at=iso(job.lease_expires_at),
            run_at=iso(job.run_at),
            created_at=iso(job.created_at),
            updated_at=iso(job.updated_at),
        )


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page.")


class JobIds(BaseModel):
    ids: list[str] = Field(description="Ids of the tenant's jobs that start with the prefix.")


class EventOut(BaseModel):
    seq: int
    type: str
    position: int | None
    at: str | None
    data: dict[str, Any]
    hash: str
    prev_hash: str

    @classmethod
    def of(cls, event: Event) -> EventOut:
        return cls(
            seq=event.seq,
            type=event.type.value,
            position=event.position,
            at=iso(event.at),
            data=event.data,
            hash=event.hash,
            prev_hash=event.prev_hash,
        )


class EventPage(BaseModel):
    events: list[EventOut]
    next_after: int | None = Field(description="Pass as after for the next page.")


class SignalOut(BaseModel):
    job_id: str
    seq: int
    name: str
    signal_id: str
    payload: Any = Field(default=None, description="What was sent.")
    sender: str | None
    created_at: str | None
    consumed_position: int | None = Field(
        default=None, description="Where the job received it (null: not yet)."
    )
    created: bool = Field(description="False when this signal id was sent before.")

    @classmethod
    def of(cls, signal: Signal, created: bool = True) -> SignalOut:
        return cls(
            job_id=signal.job_id,
            seq=signal.seq,
            name=signal.name,
            signal_id=signal.signal_id,
            payload=signal.payload,
            sender=signal.sender,
            created_at=iso(signal.created_at),
            consumed_position=signal.consumed_position,
            created=created,
        )


class HookAccepted(BaseModel):
    signal_id: str = Field(description="The signal's id: the event id header, or the body's hash.")
    delivered_to: str | None = Field(
        description="The job whose inbox took it (null: no job waits on its key yet; it is kept "
        "until one does)."
    )
    created: bool = Field(description="False when this signal id was received before.")


class ApprovalOut(BaseModel):
    job_id: str
    agent: str
    name: str | None = Field(description="The tool (or request) to approve.")
    position: int | None
    args_hash: str | None = Field(description="The hash of exactly the arguments to approve.")
    request: dict[str, Any] = Field(description="The request as the job parked with it.")
    since: str | None


class EffectOut(BaseModel):
    job_id: str
    position: int
    tool: str
    effect: str
    state: str
    idempotency_key: str
    args_hash: str
    attempt: int
    result: Any
    error: dict[str, Any] | None
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, effect: Effect) -> EffectOut:
        return cls(
            job_id=effect.job_id,
            position=effect.position,
            tool=effect.tool,
            effect=effect.effect.value,
            state=effect.state.value,
            idempotency_key=effect.idempotency_key,
            args_hash=effect.args_hash,
            attempt=effect.attempt,
            result=effect.result,
            error=effect.error,
            created_at=iso(effect.created_at),
            updated_at=iso(effect.updated_at),
        )


class WebhookOut(BaseModel):
    id: str
    tenant: str
    url: str
    events: list[str]
    active: bool
    created_at: str | None
    disabled_at: str | None = Field(description="When it was deleted (null: active).")

    @classmethod
    def of(cls, hook: Webhook) -> WebhookOut:
        return cls(
            id=hook.id,
            tenant=hook.tenant,
            url=hook.url,
            events=[e.value for e in hook.events],
            active=hook.active,
            created_at=iso(hook.created_at),
            disabled_at=iso(hook.disabled_at),
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(description="Signs every delivery. Shown this once: keep it now.")


class AttemptOut(BaseModel):
    at: str | None
    status: int | None = Field(description="The receiver's HTTP status (null: no answer).")
    error: str | None = Field(description="What went wrong (null: delivered).")
    duration: float = Field(description="Seconds the try took.")
    retry_in: float | None = Field(description="Seconds until the next try (null: none).")

    @classmethod
    def of(cls, attempt: DeliveryAttempt) -> AttemptOut:
        return cls(
            at=iso(attempt.at),
            status=attempt.status,
            error=attempt.error,
            duration=attempt.duration,
            retry_in=attempt.retry_in,
        )


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str
    event_id: str = Field(description="The same on every try: receivers deduplicate on it.")
    event_type: str
    tenant: str
    job_id: str
    agent: str
    job_status: str = Field(description="The job's status when the event was written.")
    payload: dict[str, Any]
    state: str = Field(description="pending, delivered or dead.")
    attempts: int
    next_at: str | None = Field(description="When it is due (pending).")
    last_status: int | None
    last_error: str | None
    delivered_at: str | None
    created_at: str | None
    log: list[AttemptOut] = Field(description="Every try, oldest first.")

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id,
            webhook_id=row.webhook_id,
            event_id=row.event_id,
            event_type=row.event_type.value,
            tenant=row.tenant,
            job_id=row.job_id,
            agent=row.agent,
            job_status=row.job_status.value,
            payload=row.payload,
            state=row.state.value,
            attempts=row.attempts,
            next_at=iso(row.next_at),
            last_status=row.last_status,
            last_error=row.last_error,
            delivered_at=iso(row.delivered_at),
            created_at=iso(row.created_at),
            log=[AttemptOut.of(a) for a in row.log],
        )


class VerifyOut(BaseModel):
    """A verification's verdict (see ``aetheris.audit``): ``ok`` when every check held;
    ``anchored`` when a signature by a key the server trusts vouches for the whole journal."""

    job_id: str
    ok: bool
    events: int
    head: str
    anchored: bool = Field(description="A trusted key's signature vouches for the journal.")
    key_id: str | None = Field(description="The trusted key that signed the head.")
    problem: str | None
    seq: int | None = Field(description="The first event found bad, or not vouched for.")
    position: int | None = Field(description="The ledger position at fault, if any.")
    check: str | None = Field(
        description="The check that failed: chain, head, anchor, witness, blobs, job, ledger."
    )
    note: str | None = Field(description="Why the verdict claims no more (not anchored).")

    @classmethod
    def of(cls, verdict: Verdict) -> VerifyOut:
        return cls(**dataclasses.asdict(verdict))


class AgentOut(BaseModel):
    name: str
    input_schema: dict[str, Any] | None
    workers: int = Field(description="Live workers that serve it now.")


class ToolOut(BaseModel):
    name: str
    effect: str
    requires_approval: bool
    reconcile: bool
    compensate: bool


class Health(BaseModel):
    status: str
    detail: str | None = None


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    error: ErrorDetail


class SummaryOut(BaseModel):
    """What needs attention among the tenant's jobs."""

    jobs: dict[str, int] = Field(description="Jobs by status (every status, zero included).")
    oldest_pending_at: str | None = Field(description="When the oldest pending job was made.")
    in_doubt: int = Field(description="Effects in doubt: an operator must resolve them.")


# -- what the web UI shows ---------------------------------------------------------------------


class StepOut(BaseModel):
    position: int
    seq: int = Field(description="The event that settled it (else its latest).")
    kind: str
    name: str = Field(description="name#ordinal")
    start: float = Field(description="Seconds from the job's creation.")
    end: float | None = Field(description="Seconds from the job's creation (null: still open).")
    duration: float | None = Field(description="Seconds from start to end.")
    busy: float | None = Field(description="Seconds its last dispatch took.")
    state: str = Field(description="done, failed, running, waiting, in_doubt or interrupted.")
    outcome: str
    attempts: int = Field(description="Tries in its last dispatch.")
    dispatches: int = Field(description="Intents written (more than one after a crash).")
    retries: list[dict[str, Any]] = Field(description="The errors of failed tries.")
    error: str | None
    effect: str | None
    model: str | None
    tokens: list[int] | None = Field(description="Input and output tokens (model calls).")
    cost: float | None

    @classmethod
    def of(cls, step: Step) -> StepOut:
        return cls(
            **{k: getattr(step, k) for k in _STEP_FIELDS},
            duration=step.duration,
            retries=list(step.retries),
            tokens=list(step.tokens) if step.tokens is not None else None,
        )


_STEP_FIELDS = (
    "position", "seq", "kind", "name", "start", "end", "busy", "state", "outcome", "attempts",
    "dispatches", "error", "effect", "model", "cost",
)  # fmt: skip


class PhaseOut(BaseModel):
    kind: str = Field(description="pending, run, parked or recovery.")
    label: str = Field(description="A run's epoch, a park's reason.")
    start: float
    end: float | None

    @classmethod
    def of(cls, phase: Phase) -> PhaseOut:
        return cls(kind=phase.kind, label=phase.label, start=phase.start, end=phase.end)


class SpendOut(BaseModel):
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float | None = Field(description="Dollars (null: a model's price is unknown).")


class TimelineOut(BaseModel):
    job_id: str
    status: str = Field(description="The job's status now.")
    created_at: str | None
    events: int = Field(description="Journal events it was computed from.")
    end: float | None = Field(description="Seconds from creation to the end (null: not ended).")
    now: float = Field(description="Seconds from creation to now (to the end, once ended).")
    steps: list[StepOut]
    phases: list[PhaseOut]
    model_calls: SpendOut


class ModelCallOut(BaseModel):
    seq: int
    position: int | None
    name: str = Field(description="The model asked for.")
    model: str | None = Field(description="The model that answered.")
    provider: str | None
    at: str | None
    duration_ms: float | None
    input_tokens: int
    output_tokens: int
    cost: float | None
    params: dict[str, Any] = Field(description="The request's parameters (blobs read).")
    messages: list[str] = Field(description="Hashes of the messages sent, oldest first.")
    response: Any = Field(description="The response (its blob read).")
    error: dict[str, Any] | None
    problem: str | None = Field(description="A blob it refers to that is missing.")


class ModelCallsOut(BaseModel):
    calls: list[ModelCallOut]
    messages: dict[str, Any] = Field(description="Every message sent, by hash: once each.")
    total: SpendOut


class DiffEntryOut(BaseModel):
    kind: str
    name: str
    args_hash: str
    output: dict[str, Any] = Field(description="The recorded result or error.")
    output_hash: str


class DiffRowOut(BaseModel):
    position: int
    differs: Literal["operation", "output"] = Field(
        description="operation: the runs did different things here (or one did nothing); "
        "output: the same operation gave another output."
    )
    a: DiffEntryOut | None
    b: DiffEntryOut | None


class DiffEndOut(BaseModel):
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    same: bool


class DiffOut(BaseModel):
    a: str
    b: str
    same: bool = Field(description="No position and no end differ.")
    first_divergence: DiffRowOut | None = Field(
        description="The first position where the runs did different operations."
    )
    rows: list[DiffRowOut] = Field(description="Every position that differs, in order.")
    end: DiffEndOut


class ReplayOut(BaseModel):
    job_id: str
    outcome: str = Field(description="matched, diverged, incomplete or different_end.")
    ok: bool
    operations: int = Field(description="Recorded operations replayed.")
    position: int | None = Field(description="Where it diverged, or where the journal stops.")
    diff: str | None
    location: str | None = Field(
        default=None, description="The line of code that asked for the diverging operation."
    )
    recorded_end: dict[str, Any] | None
    replayed_end: dict[str, Any] | None
