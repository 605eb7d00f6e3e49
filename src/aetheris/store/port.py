"""The store port: the one narrow interface between the runtime and a database.

Every implementation (memory, SQLite, PostgreSQL) passes the same conformance suite in
``tests/store``, and the stateful tests there drive each against a model of these contracts.
The in-memory store (:mod:`aetheris.store.memory`) is the reference: one lock, plain
dictionaries, every method's meaning in a few lines; the SQL stores do the same with
transactions (their shared parts in :mod:`aetheris.store.sql`). Rows cross this boundary as the
frozen models below, never as driver rows, and driver errors are translated into
:mod:`aetheris.errors` here, not above.

Writes come in two shapes:

* :meth:`Store.commit` is a write *of a running job by its lease holder*. It is fenced: it applies
  only if the job's ``lease_epoch`` still equals the lease's epoch, in the same transaction, and
  raises :class:`~aetheris.errors.LeaseLost` otherwise. Events, ledger rows and a status change
  travel together, so status and the events that change it are one source of truth.
* :meth:`Store.apply` is a control-plane write (resolve an effect, later: signal, cancel). It
  checks the job's status, bumps the lease epoch (fencing out any zombie) and applies the same
  kind of :class:`Commit`.

A store made with a signing key (``signer``, see :mod:`aetheris.anchor`) anchors every write
that appends events (creation, claim, commit, apply, control): the last event it appends carries
a signature of the job's new head, in the same transaction. Events read back carry theirs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aetheris.journal import Event, EventDraft, Recorded, stamp_code
from aetheris.models import (
    DEFAULT_TENANT,
    TERMINAL_STATUSES,
    ApiKey,
    AttemptOutcome,
    Budget,
    Control,
    DeliveryAttempt,
    DeliveryClaim,
    DeliveryState,
    Effect,
    EffectClass,
    EffectState,
    Job,
    JobStatus,
    NewJob,
    ParkReason,
    Role,
    Signal,
    SigningKeyInfo,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WorkerInfo,
)
from aetheris.store.pruning import Pruning

# The base models, re-exported: the port speaks of them and most of the package imports them here.
__all__ = [
    "DEFAULT_TENANT",
    "TERMINAL_STATUSES",
    "ApiKey",
    "AttemptOutcome",
    "Budget",
    "Control",
    "DeliveryAttempt",
    "DeliveryClaim",
    "DeliveryState",
    "Effect",
    "EffectClass",
    "EffectState",
    "Job",
    "JobStatus",
    "NewJob",
    "ParkReason",
    "Role",
    "Signal",
    "SigningKeyInfo",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
    "WorkerInfo",
]

# A worker refreshes its row every PRESENCE_INTERVAL seconds while it runs, jobs or none; it
# counts as alive while its last refresh is at most WORKER_ALIVE_WINDOW seconds old (three
# refreshes missed). A row not refreshed for WORKER_FORGET_AFTER seconds (a worker killed long
# ago) is removed when another worker registers.
PRESENCE_INTERVAL = 5.0
WORKER_ALIVE_WINDOW = 3 * PRESENCE_INTERVAL
WORKER_FORGET_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """What a heartbeat learns: leases lost, and control actions requested on held jobs."""

    lost: set[str]
    control: dict[str, Control]


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of ownership: writes carry it and apply only while ``epoch`` is current."""

    job_id: str
    epoch: int
    owner: str


@dataclass(frozen=True, slots=True)
class EffectWrite:
    """Insert (``expect=None``) or update (row must be in state ``expect``) one ledger row."""

    position: int
    tool: str
    effect: EffectClass
    args_hash: str
    idempotency_key: str
    state: EffectState
    result: Any = None
    error: Mapping[str, Any] | None = None
    attempt: int = 1
    expect: EffectState | None = None


@dataclass(frozen=True, slots=True)
class StatusWrite:
    status: JobStatus
    park_reason: ParkReason | None = None
    park_detail: Mapping[str, Any] | None = None
    result: Any = None
    error: Mapping[str, Any] | None = None
    run_at: float | None = None
    wake_on: str | None = None  # "signal:<name>" or "job:<id>": what unparks the job
    wake_at: float | None = None  # when a parked job becomes due (a timer, a timeout)
    recovery: bool = False  # a run cut short (handed back after a runtime failure): counted


def signal_wake(name: str) -> str:
    return f"signal:{name}"


def job_wake(job_id: str) -> str:
    return f"job:{job_id}"


KEYED_PREFIX = "keyed:"  # inbox names of keyed signals: no plain signal may take one


def keyed_signal(name: str, key: str) -> str:
    """The inbox name of signal ``name`` correlated by ``key``: ``keyed:["name","key"]``.

    A keyed signal reaches the job's inbox under this name (and its id under
    ``<this name>:<signal id>``), so that it is never taken by a plain wait for ``name``, nor
    by a wait for the same name with another key. JSON keeps the pair unambiguous whatever
    characters the name and the key hold.
    """
    return KEYED_PREFIX + json.dumps([name, key], ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Delivery:
    """What :meth:`Store.deliver_keyed` did: the job whose inbox took the signal (``None``:
    no job holds the key, and it waits in the mailbox), and whether it is new (``False``: the
    same ``signal_id`` arrived before, and this is that first delivery)."""

    signal_id: str
    job_id: str | None
    created: bool


@dataclass(frozen=True, slots=True)
class Head:
    """The end of a job's journal: how many events it has and the hash of the last one."""

    count: int
    hash: str


@dataclass(frozen=True, slots=True)
class Commit:
    """What one transaction writes: events, ledger rows and at most one status change.

    ``head`` is where the writer believes the journal ends. The lease holder always knows it
    (only its epoch may append), so the store need not read it, and a commit whose reply was
    lost can be told apart from one that never landed: it would find the head moved.

    ``wake`` unparks other jobs (a child's end wakes its parent). The store locks every job it
    wakes *before* it writes this job's row: one lock order (waiter first) for every wake-up, so
    that a waiter parking at the same moment either sees this commit or is woken by it.
    ``create`` makes child jobs fenced by this job's lease, so a zombie creates none; a child
    whose id exists already is left as it is.

    ``correlate`` makes the job the holder of each ``(name, key)`` in its tenant (see
    :meth:`Store.deliver_keyed`), and moves the keyed signals waiting for it in the mailbox to
    the job's inbox, in this transaction. A key another job holds, one that has not ended, is a
    :class:`~aetheris.errors.Conflict`: the first job to hold a key keeps it until it ends.
    """

    events: Sequence[EventDraft] = ()
    effects: Sequence[EffectWrite] = ()
    status: StatusWrite | None = None
    head: Head | None = None
    consume: Sequence[tuple[int, int]] = ()  # (signal seq, journal position) received
    wake: Sequence[tuple[str, str]] = ()  # (job id, wake_on) of parked jobs to unpark
    create: Sequence[NewJob] = ()  # child jobs, created unless a job with the same id exists
    cancel_children: bool = False  # the job ends: cancel its children that have not ended
    blobs: Sequence[tuple[str, bytes]] = ()  # (sha256 hex, bytes) the events refer to
    correlate: Sequence[tuple[str, str]] = ()  # (signal name, key) the job holds from now on
    code_version: str | None = None  # the job's entries are now those of this agent version

    def by_code(self, code: str) -> Commit:
        """Written by agent version ``code``: its entries that hold a position record it (and
        if there is any, the job's ``code_version`` becomes ``code``)."""
        events, coded = stamp_code(self.events, code)
        return dataclasses.replace(self, events=events, code_version=code) if coded else self


@dataclass(frozen=True, slots=True)
class ForkedJob(NewJob):
    """A job created with a journal in it already: a fork of another job (``App.fork``).

    ``forked_from`` (``{"job": origin, "at": N, ...}``) goes into its ``job_created`` event;
    ``journal`` (events, ledger rows, blobs) is written after that event in the same
    transaction, so a fork exists whole or not at all.
    """

    forked_from: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    journal: Commit = dataclasses.field(default_factory=Commit)


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed job and its lease. On a job's first run (:attr:`Job.first_run`) the store also
    reads the budget it was created with (``budget_read``; ``budget`` ``None``: none), so that
    its first model call reads no events."""

    job: Job
    lease: Lease
    recovered_from: str | None = None
    budget_read: bool = False
    budget: Budget | None = None


@dataclass(frozen=True, slots=True)
class ClaimFilter:
    """Jobs of ``agents`` (in ``queues``), none of ``skip``. ``versions``: each agent's code
    version the claimer runs (its ``job_claimed`` event records it); ``matching_only``: pass
    over a job whose ``code_version`` is another one (``None``, no code wrote yet: taken)."""

    agents: Sequence[str]
    queues: Sequence[str] | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    matching_only: bool = False
    skip: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: int
    latest: int

    @property
    def up_to_date(self) -> bool:
        return self.current == self.latest


@dataclass(frozen=True, slots=True)
class Summary:
    """What :meth:`Store.summary` tells: jobs by status (only statuses that have jobs), when
    the oldest pending job was created, how many effects are in doubt; and, for metrics, the
    jobs of each tenant by status and the effects by state (only those that have any)."""

    jobs: Mapping[JobStatus, int]
    oldest_pending_at: float | None
    in_doubt: int
    by_tenant: Mapping[str, Mapping[JobStatus, int]] = field(default_factory=dict)
    effects: Mapping[EffectState, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Guard:
    """Precondition of a control-plane write."""

    statuses: frozenset[JobStatus]
    park_reasons: frozenset[ParkReason] | None = None


class Store(Pruning, Protocol):
    """The store port. All methods are coroutines; all timestamps are Unix seconds.

    ``open(migrate=True)`` applies pending migrations (serialized across processes); with
    ``migrate=False`` it only connects, and :meth:`schema` tells where the schema stands.

    Liveness: a worker registers while it runs. Where the store can *prove* a registered worker
    is gone (its process died and the operating system released its lock), :meth:`reap` expires
    that worker's leases at once, so recovery need not wait for the lease TTL. Where it cannot
    tell, nothing happens and the TTL bounds recovery. Reaping is never a guess: a worker that is
    only slow is never reaped (and fencing would stop it anyway).

    Visibility is a separate, weaker signal: each worker also keeps a row (what it serves, where
    it runs, when it was last seen) that :meth:`workers` lists for operators. A row's ``alive``
    is a recent ``last_seen``, not a proof; nothing is reaped on it.
    """

    url: str

    async def open(self, *, migrate: bool = True) -> None:
        """Connect; with ``migrate`` also bring the schema to the latest version (serialized
        across processes). Opening an open store does nothing. Raises
        :class:`~aetheris.errors.StoreUnavailable` when the database cannot be reached and
        :class:`~aetheris.errors.SchemaMismatch` when its schema is newer than this code."""
        ...

    async def close(self) -> None:
        """Release every connection and file this store holds; the store may be opened again."""
        ...

    async def schema(self) -> SchemaState:
        """Where the schema stands (version 0: no tables yet). Reads only, never migrates."""
        ...

    async def migrate(self) -> SchemaState:
        """Apply pending migrations in one transaction (a new database gets the whole schema)."""
        ...

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        """Create a pending job and append its ``job_created`` event; ``(job, True)``.

        A job with the same ``idempotency_key`` and the same agent and input is returned as
        it is: ``(existing, False)``. The same key with another agent or input raises
        :class:`~aetheris.errors.IdempotencyConflict`; an id that is taken,
        :class:`~aetheris.errors.Conflict`."""
        ...

    async def get_job(self, job_id: str) -> Job | None:
        """The job, or ``None`` when there is no such job."""
        ...

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        agent: str | None = None,
        since: float | None = None,
        limit: int = 100,
        tenant: str | None = None,
        park_reason: ParkReason | None = None,
        until: float | None = None,
        after: tuple[float, str] | None = None,
        idempotency_key: str | None = None,
    ) -> list[Job]:
        """Up to ``limit`` jobs, newest first (by ``created_at``, then id); only those with
        ``status``, of ``agent``, of ``tenant``, parked for ``park_reason``, created at
        ``since`` or later and before ``until``, started with ``idempotency_key``, when given.
        ``after`` is a cursor: the ``(created_at, id)`` of the last job of the previous page;
        only jobs after it in this order are listed."""
        ...

    async def find_jobs(
        self, prefix: str, *, limit: int = 10, tenant: str | None = None
    ) -> list[str]:
        """Ids of jobs (of ``tenant``, when given) that start with ``prefix``, in id order, at
        most ``limit``."""
        ...

    async def summary(self, *, tenant: str | None = None) -> Summary:
        """Counts for an operator: jobs by status, the oldest pending job, effects in doubt;
        of one ``tenant``'s jobs, when given."""
        ...

    async def claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        """Take one runnable job of ``where``'s agents (and queues) for ``owner``, or ``None``.

        Order: jobs whose lease expired first (they were running), then parked jobs whose
        ``wake_at`` passed, then pending jobs that are due (higher ``priority`` first). The claim
        bumps the lease epoch (fencing out the previous holder), counts an attempt, appends a
        ``job_claimed`` event and holds the lease for ``lease_ttl`` seconds. Concurrent claimers
        never get the same job. ``Claim.recovered_from`` names the owner of an expired lease.
        See :class:`ClaimFilter` for code versions."""
        ...

    async def heartbeat(self, leases: Sequence[Lease], lease_ttl: float) -> Heartbeat:
        """Extend the leases still held by ``lease_ttl``. Reports the jobs whose lease is lost
        (epoch moved on, or not running any more) and control actions requested on the others."""
        ...

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        """Write ``commit`` for the lease holder, all or nothing; returns the events sealed.

        Raises :class:`~aetheris.errors.LeaseLost` unless the job is running under
        ``lease.epoch``; :class:`~aetheris.errors.Conflict` when ``commit.head`` is not where
        the journal ends, a ledger row to insert exists, a row to update is not in its
        ``expect`` state, or a signal to receive was received already. See :class:`Commit`
        for wake-ups, children and lock order. With ``commit.code_version``, the job's
        ``code_version`` becomes it."""
        ...

    async def apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        """A control-plane write: check ``guard`` (else :class:`~aetheris.errors.Conflict`),
        bump the lease epoch so no holder can write again, then write ``commit`` at the
        journal's head. Returns the job after it. Unknown job:
        :class:`~aetheris.errors.JobNotFound`."""
        ...

    async def events(
        self, job_id: str, *, after: int = -1, limit: int | None = None
    ) -> list[Event]:
        """The job's journal in order (empty for an unknown job): the events whose seq is
        over ``after``, at most ``limit`` of them."""
        ...

    async def journal(self, job_id: str) -> list[Recorded]:
        """The job's journal in order as a run reads it at its claim: its events without their
        hashes (see :class:`~aetheris.journal.Recorded`)."""
        ...

    async def effects(
        self,
        *,
        job_id: str | None = None,
        states: Sequence[EffectState] | None = None,
        tenant: str | None = None,
    ) -> list[Effect]:
        """Ledger rows, by job and position, optionally of one job, in some states, of the
        jobs of one tenant."""
        ...

    async def send_signal(
        self, job_id: str, name: str, payload: Any, signal_id: str, sender: str | None
    ) -> tuple[Signal, bool]:
        """Put a signal in the job's inbox and wake the job if it waits for ``name``:
        ``(signal, True)``. The same ``signal_id`` again returns the first one: ``(signal,
        False)``. A job that has ended takes none (:class:`~aetheris.errors.Conflict`)."""
        ...

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        """The job's signals in arrival order; by default only those not yet received."""
        ...

    async def deliver_keyed(
        self, tenant: str, name: str, key: str, payload: Any, signal_id: str, sender: str | None
    ) -> Delivery:
        """Deliver signal ``name`` correlated by ``key`` in ``tenant`` (an incoming webhook's).

        If a job that has not ended holds the key (it committed ``correlate`` for it), the
        signal goes to its inbox under :func:`keyed_signal` and wakes it if it waits for it.
        Otherwise it waits in the tenant's mailbox until a job takes the key. The same
        ``signal_id`` for the same name and key is one signal: the first delivery is returned
        (``created=False``). One transaction, ordered with the commits that take the key, so a
        signal is never lost between the two: it reaches the inbox either way."""
        ...

    async def key_holder(self, tenant: str, name: str, key: str) -> str | None:
        """The job that holds ``(name, key)`` in ``tenant``, unless it has ended."""
        ...

    async def control(self, job_id: str, action: Control, by: str | None = None) -> Job:
        """Cancel, pause or resume a job (see ``_shared.plan_control``): a running job is only
        flagged, its worker honours the flag; any other job changes at once, and the event
        written names ``by`` (who asked). A cancel reaches the job's children. Refusals are
        :class:`~aetheris.errors.Conflict`."""
        ...

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new API key (its id must be new: else :class:`~aetheris.errors.Conflict`)."""
        ...

    async def api_key(self, key_id: str) -> ApiKey | None:
        """The API key with this id, revoked or not; ``None`` when there is none."""
        ...

    async def api_keys(self) -> list[ApiKey]:
        """Every API key, revoked ones too, oldest first."""
        ...

    async def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke a key now (a key revoked already keeps its first ``revoked_at``); returns
        it, or ``None`` when there is no such key."""
        ...

    async def record_signing_key(self, key_id: str, public_key: str) -> None:
        """Record the public key of a signing key in use (the first time it is seen): for
        operators' information only; verifiers trust only keys given from outside."""
        ...

    async def signing_keys(self) -> list[SigningKeyInfo]:
        """The public keys recorded by :meth:`record_signing_key`, oldest first."""
        ...

    async def next_wake(self) -> float | None:
        """The earliest ``wake_at`` of a parked job (a timer or a timeout), if any."""
        ...

    async def blobs(self, job_id: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]:
        """The job's blobs by hash (those of ``hashes``, else all); a missing one is absent."""
        ...

    async def register_agents(self, agents: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Record that a worker serves these agents now, each with the JSON schema of its
        input (``None``: any object), replacing what an earlier worker registered."""
        ...

    async def agent_input_schema(self, name: str) -> dict[str, Any] | None:
        """The JSON schema of ``name``'s input as last registered (``None``: none known)."""
        ...

    async def agents(self) -> list[str]:
        """Every agent a worker has ever registered, by name."""
        ...

    async def kv_put(self, space: str, items: Mapping[str, bytes], *, replace: bool = True) -> None:
        """Write ``items`` (key: value) in ``space``, all or nothing. With ``replace=False`` a
        key that is there already keeps its value. Keys are text without NUL; keys compare in
        code point order on every store, so a prefix is a range (see :meth:`kv_scan`).

        The key-value space is for integrations (LangGraph checkpoints): it is not a job's
        journal, and its writes are not fenced by any lease."""
        ...

    async def kv_get(self, space: str, keys: Sequence[str]) -> dict[str, bytes]:
        """The values of those ``keys`` that are in ``space``."""
        ...

    async def kv_scan(
        self,
        space: str,
        prefix: str = "",
        *,
        below: str | None = None,
        descending: bool = False,
        limit: int | None = None,
    ) -> list[tuple[str, bytes]]:
        """The entries of ``space`` whose key starts with ``prefix`` (and is less than
        ``below``), in key order (``descending``: from the greatest), at most ``limit``."""
        ...

    async def kv_delete(
        self, space: str, keys: Sequence[str] = (), *, prefix: str | None = None
    ) -> None:
        """Remove ``keys`` from ``space``, and with ``prefix`` every key that starts with it."""
        ...

    async def take_token(self, name: str, rate: float, burst: float) -> float:
        """Take a call's token from the bucket ``name`` (refilled at ``rate`` a second, holding
        at most ``burst``): the seconds the caller waits before its call, 0 to go now. A taken
        token is a reservation: callers queue up behind it. PostgreSQL keeps the bucket in one
        row, updated in one statement on the database's clock (every worker shares it); the
        memory and SQLite stores keep it in the process."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work may have arrived (a notification, where the store has them) or
        after ``timeout`` seconds, whichever is first."""
        ...

    async def register_worker(
        self, owner: str, *, agents: Sequence[str] = (), queues: Sequence[str] | None = None
    ) -> None:
        """Announce a live worker: the proof of life :meth:`reap` looks for, and its row in
        :meth:`workers`: the ``agents`` it serves, its ``queues`` (``None``: every queue), the
        calling process's host and pid, started and last seen now. Rows of workers not seen
        for ``WORKER_FORGET_AFTER`` seconds are removed (forgotten) here."""
        ...

    async def touch_worker(self, owner: str) -> None:
        """``owner`` (registered through this store) is still alive: its ``last_seen`` is now.
        A row removed meanwhile is written again as it was registered. One cheap write; a
        worker touches every ``PRESENCE_INTERVAL`` seconds whether it runs jobs or not."""
        ...

    async def unregister_worker(self, owner: str, *, graceful: bool = True) -> None:
        """Withdraw ``owner``'s presence and remove its row; ``graceful=False`` leaves both as a
        killed process would (the row then stops being alive after ``WORKER_ALIVE_WINDOW``)."""
        ...

    async def workers(self) -> list[WorkerInfo]:
        """Every worker row, oldest first; ``alive`` when its ``last_seen`` is at most
        ``WORKER_ALIVE_WINDOW`` seconds old by the store's clock (the database's on
        PostgreSQL). A worker that stopped gracefully has no row; a killed one keeps its row,
        not alive, until it is forgotten (see :meth:`register_worker`)."""
        ...

    async def reap(self) -> list[str]:
        """Expire the leases of workers proven dead (see above); returns their ids."""
        ...

    # -- outgoing webhooks: subscriptions and the outbox -------------------------------------
    #
    # Every event that tells of a job's end (job_succeeded, _failed, _cancelled,
    # _compensated), of a park for approval (job_parked, reason approval) or of an effect in
    # doubt (effect_in_doubt) puts one delivery per active subscription of the job's tenant to
    # that event type in the outbox, in the transaction that appends the event (see
    # :func:`aetheris.store.outbox.notices`): a write that is refused sends nothing, and
    # nothing written is ever left unsent.

    async def create_webhook(self, webhook: Webhook) -> None:
        """Store a new subscription (its id must be new: else
        :class:`~aetheris.errors.Conflict`). Only events written after it reach it."""
        ...

    async def webhook(self, webhook_id: str) -> Webhook | None:
        """The subscription with this id, disabled or not; ``None`` when there is none."""
        ...

    async def webhooks(self, *, tenant: str | None = None, disabled: bool = False) -> list[Webhook]:
        """Active subscriptions (``disabled``: the deleted ones too), of ``tenant`` when
        given, oldest first."""
        ...

    async def disable_webhook(self, webhook_id: str) -> Webhook | None:
        """Delete a subscription: it gets no new deliveries, and its pending ones become
        ``dead`` (``last_error`` says why). It stays readable, with its first ``disabled_at``.
        Returns it, or ``None`` when there is no such subscription."""
        ...

    async def claim_deliveries(
        self, *, limit: int = 10, lease: float = 60.0
    ) -> list[DeliveryClaim]:
        """Take up to ``limit`` pending deliveries that are due (``next_at`` passed), the
        longest due first, for ``lease`` seconds: until then no other claim gets them, after
        that (their deliverer died) they are due again. Concurrent claimers never get the
        same delivery."""
        ...

    async def record_attempt(
        self, delivery_id: int, token: str, outcome: AttemptOutcome
    ) -> WebhookDelivery | None:
        """Log one try of a claimed delivery and what follows (delivered, due again in
        ``retry_in`` seconds, or dead); the claim ends. ``None``, and nothing written, when
        the claim ``token`` no longer holds it (its lease ran out and another deliverer
        claimed it, or it was settled meanwhile)."""
        ...

    async def deliveries(
        self,
        *,
        tenant: str | None = None,
        webhook_id: str | None = None,
        state: DeliveryState | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        """Deliveries newest first, of ``tenant``, of one subscription, in one state, when
        given; at most ``limit``."""
        ...
