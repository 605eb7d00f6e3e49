"""The base: what a job, a ledger row, a signal and a worker are, and the enums that describe
them.

Imports nothing else from the package; everything above (errors, journal, stores, runtime,
CLI) speaks of jobs in these terms.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_TENANT = "default"  # the tenant of jobs started without one (and of every job before)


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PARKED = "parked"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.COMPENSATED}
)


class ParkReason(enum.StrEnum):
    SIGNAL = "signal"
    APPROVAL = "approval"
    TIMER = "timer"
    EFFECT_IN_DOUBT = "effect_in_doubt"
    NONDETERMINISM = "nondeterminism"
    PAUSED = "paused"
    CHILD = "child"
    BUDGET = "budget"  # its model calls spent the job's budget: an operator may raise it


class Control(enum.StrEnum):
    """An operator's request to a job, honoured at its next durable operation."""

    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"


class EffectClass(enum.StrEnum):
    PURE = "pure"
    IDEMPOTENT = "idempotent"
    AT_MOST_ONCE = "at_most_once"


class EffectState(enum.StrEnum):
    INTENT = "intent"  # written before dispatch; no outcome yet
    COMMITTED = "committed"  # the tool returned; the world changed
    FAILED = "failed"  # the tool reported a failure (or an operator said so)
    IN_DOUBT = "in_doubt"  # intent found without outcome after a crash
    NOT_EXECUTED = "not_executed"  # resolved: it did not happen; one dispatch is allowed
    COMPENSATED = "compensated"  # its compensation ran


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored.

    ``attempts`` counts the job's runs (its claims): the first, every resume after a park or a
    hand-back, and every take-over from a dead worker; a job that waited twice for a signal
    and succeeded has 3. ``recoveries`` counts the runs cut short (a worker died, or the
    runtime failed while running it): past the App's ``max_recoveries`` the job fails as
    ``PoisonJob``. Neither counts failures of the agent's own code, which end the job.
    """

    id: str
    agent: str
    input: dict[str, Any]
    status: JobStatus
    park_reason: ParkReason | None
    park_detail: dict[str, Any] | None
    result: Any
    error: dict[str, Any] | None
    idempotency_key: str | None
    queue: str
    priority: int
    lease_epoch: int
    lease_owner: str | None
    lease_expires_at: float | None
    run_at: float
    attempts: int
    event_count: int
    head_hash: str
    created_at: float
    updated_at: float
    wake_on: str | None = None
    wake_at: float | None = None
    parent_id: str | None = None
    control: Control | None = None
    control_by: str | None = None  # who requested ``control``, as a journal names them
    deadline: float | None = None
    recoveries: int = 0
    tenant: str = DEFAULT_TENANT
    code_version: str | None = None  # the agent's version that last wrote journal entries

    @property
    def first_run(self) -> bool:
        """Claimed for its first run, with a journal of its creation and that claim only:
        nothing to replay, no journal to read. (A fork's first claim finds the entries it was
        created with.)"""
        return self.attempts == 1 and self.event_count <= 2

    @property
    def waiting_for(self) -> str | None:
        """The signal the job waits for when parked (``approval:<position>`` for an
        approval), else ``None``."""
        kind, _, name = (self.wake_on or "").partition(":")
        return name if self.status is JobStatus.PARKED and kind == "signal" else None


@dataclass(frozen=True, slots=True)
class Effect:
    job_id: str
    position: int
    tool: str
    effect: EffectClass
    args_hash: str
    idempotency_key: str
    state: EffectState
    result: Any
    error: dict[str, Any] | None
    attempt: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class NewJob:
    id: str
    agent: str
    input: Mapping[str, Any]
    idempotency_key: str | None = None
    queue: str = "default"
    priority: int = 0
    run_at: float | None = None
    parent_id: str | None = None
    deadline: float | None = None
    budget: Budget | None = None
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class Budget:
    """What a job's model calls may spend: tokens (input + output) and cost (in the price
    table's currency, US dollars by default). ``None``: no limit of that kind."""

    tokens: int | None = None
    cost: float | None = None

    def __post_init__(self) -> None:
        for name in ("tokens", "cost"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value >= 0):
                raise ValueError(f"budget {name} must be a non-negative number, got {value!r}")

    @classmethod
    def of(cls, value: Budget | Mapping[str, Any] | None) -> Budget | None:
        if value is None or isinstance(value, Budget):
            return value
        unknown = set(value) - {"tokens", "cost"}
        if unknown:
            raise ValueError(f"unknown budget fields {sorted(unknown)}: use tokens and cost")
        return cls(value.get("tokens"), value.get("cost"))

    def to_data(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "cost": self.cost}


@dataclass(slots=True)
class Spend:
    """What a job's model calls have spent so far; ``cost_unknown`` when a call's model has no
    price (its cost is not 0, it is unknown)."""

    tokens: int = 0
    cost: float = 0.0
    cost_unknown: bool = False
    calls: int = 0

    def over(self, budget: Budget | None) -> str | None:
        """Why ``budget`` allows no further call, else ``None``."""
        if budget is None:
            return None
        if budget.tokens is not None and self.tokens >= budget.tokens:
            return f"{self.tokens} tokens spent of a budget of {budget.tokens}"
        if budget.cost is not None and self.cost_unknown:
            return "a model's price is unknown, so the cost budget cannot be kept"
        if budget.cost is not None and self.cost >= budget.cost:
            return f"{self.cost:.6g} spent of a cost budget of {budget.cost:.6g}"
        return None


@dataclass(frozen=True, slots=True)
class Signal:
    """A message in a job's inbox; ``consumed_position`` is set once the job received it."""

    job_id: str
    seq: int
    name: str
    signal_id: str
    payload: Any
    sender: str | None
    created_at: float
    consumed_position: int | None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A registered worker as the store last heard of it.

    ``queues`` is ``None`` for a worker that claims from every queue. ``alive``: ``last_seen``
    is within the store's liveness window (see ``aetheris.store.port.WORKER_ALIVE_WINDOW``) at
    the time of the read, on the store's clock (the database's, on PostgreSQL).
    """

    id: str
    agents: tuple[str, ...]
    queues: tuple[str, ...] | None
    host: str
    pid: int
    started_at: float
    last_seen: float
    alive: bool

    def serves(self, agent: str, queue: str | None = None) -> bool:
        """Whether this worker claims jobs of ``agent`` (in ``queue``, when one is named)."""
        in_queue = queue is None or self.queues is None or queue in self.queues
        return agent in self.agents and in_queue


class Role(enum.StrEnum):
    """What an API key may do: ``viewer`` reads; ``approver`` also approves and rejects;
    ``operator`` also starts, controls, signals, resolves effects and raises budgets (but
    does not decide approvals); ``admin`` does everything."""

    ADMIN = "admin"
    OPERATOR = "operator"
    APPROVER = "approver"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class SigningKeyInfo:
    """A public key that signed anchors on this database, as the database records it: for
    information only (a verifier trusts only the keys it is given from outside)."""

    key_id: str
    public_key: str  # ``ed25519:<base64>``
    first_seen: float


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: never its secret, only the secret's sha256 (``secret_hash``)."""

    id: str
    tenant: str
    role: Role
    secret_hash: str
    name: str | None
    created_at: float
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class WebhookEvent(enum.StrEnum):
    """What a webhook subscription may ask to be told of: a job's end (by its status), a job
    parked for a person's approval, and an effect that may or may not have happened."""

    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    JOB_COMPENSATED = "job.compensated"
    APPROVAL_REQUESTED = "job.approval_requested"
    EFFECT_IN_DOUBT = "effect.in_doubt"


class DeliveryState(enum.StrEnum):
    """Where a webhook delivery stands: still to be sent (or retried), received, given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's subscription: POST these ``events`` of its jobs to ``url``, signed with
    ``secret`` (kept to sign with; shown to people only when the subscription is made).
    ``disabled_at`` set: deleted, nothing more is sent, its deliveries stay readable."""

    id: str
    tenant: str
    url: str
    secret: str
    events: tuple[WebhookEvent, ...]
    created_at: float
    disabled_at: float | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try at a delivery: when, the HTTP status the receiver answered (``None``: no
    answer), what went wrong (``None``: delivered), how long it took, and the delay chosen
    before the next try (``None``: no next try)."""

    at: float
    status: int | None
    error: str | None
    duration: float
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event for one subscription, from the outbox written with the event itself.

    ``event_id`` (``<job id>:<journal seq>``) is the same on every try and for every
    subscription: receivers deduplicate on it. ``job_status`` is the job's status when the
    event was written; ``payload`` the event's own facts; ``log`` every try, oldest first."""

    id: int
    webhook_id: str
    tenant: str
    job_id: str
    agent: str
    job_status: JobStatus
    event_id: str
    event_type: WebhookEvent
    payload: dict[str, Any]
    created_at: float
    state: DeliveryState
    attempts: int
    next_at: float
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    log: tuple[DeliveryAttempt, ...] = ()


@dataclass(frozen=True, slots=True)
class Serving:
    """Who serves an agent on this database now: :meth:`App.serving`.

    ``workers``: the live workers that claim its jobs (in the queue asked about);
    ``registered``: some worker registered the agent on this database, ever; ``defined``: this
    App defines it. A job of an agent nobody serves is accepted and waits for such a worker.
    """

    agent: str
    queue: str | None
    workers: tuple[WorkerInfo, ...]
    registered: bool
    defined: bool

    @property
    def warning(self) -> str | None:
        """Why a job of this agent would wait (no live worker serves it), else ``None``."""
        if self.workers:
            return None
        where = f" in queue {self.queue!r}" if self.queue is not None else ""
        if not self.registered:
            return (
                f"no worker has ever served agent {self.agent!r} on this database: its jobs "
                "wait until a worker that defines it starts (`aetheris worker MODULE:APP`)"
            )
        return (
            f"no live worker serves agent {self.agent!r}{where} now: its jobs wait until "
            "one starts (`aetheris worker MODULE:APP`)"
        )


@dataclass(frozen=True, slots=True)
class DeliveryClaim:
    """A delivery taken by one deliverer until ``lease`` runs out: where to send it, the
    secret to sign it with, and the ``token`` that proves the claim when its try is recorded."""

    delivery: WebhookDelivery
    url: str
    secret: str
    token: str


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one try of a delivery came to: the receiver's HTTP ``status`` (``None``: no
    answer), the ``error`` (``None``: delivered), how long it took, and what follows:
    ``delivered``, else a retry in ``retry_in`` seconds, else (``retry_in`` ``None``) dead."""

    status: int | None
    error: str | None
    duration: float
    delivered: bool = False
    retry_in: float | None = None
