"""``App``: the registry of agents and tools, and the entry point to start, watch and run jobs."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar, Unpack, cast, overload

from aetheris.agents import (
    AgentDef,
    AgentFn,
    agent_name,
    check_input,
    check_texts,
    new_job_id,
)
from aetheris.anchor import (
    PublicKey,
    SigningKey,
    TrustedKeys,
    signing_key_from_env,
    trusted_from_env,
)
from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.codec import PayloadCodec, codec_from_env
from aetheris.errors import (
    ConfigurationError,
    Conflict,
    InvalidInput,
    JobFailed,
    JobNotFound,
    UnknownAgent,
)
from aetheris.forking import UNSET, fork_job
from aetheris.hooks import Hook, HookOptions, Hooks
from aetheris.journal import canonical, check_text
from aetheris.ledger import Tool
from aetheris.models import Budget, Serving
from aetheris.payloads import PayloadViews, Shredded, StoreView, shred_job
from aetheris.polling import until_ended
from aetheris.resolution import Resolution, resolve_effect
from aetheris.retention import Age, Retention
from aetheris.scheduler import Doorbell, Worker
from aetheris.store import create_store, default_url
from aetheris.store.port import (
    DEFAULT_TENANT,
    KEYED_PREFIX,
    Control,
    EffectClass,
    Job,
    JobStatus,
    NewJob,
    Signal,
    Store,
    WorkerInfo,
)
from aetheris.tools import (
    CompensationRequest,
    RateLimit,
    Reconciliation,
    RetryPolicy,
    ToolDef,
    revive,
)
from aetheris.waits import APPROVAL_PREFIX, BUDGET_SIGNAL, approval_decision

P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_MAX_PAYLOAD = 8 * 1024 * 1024


class ToolDecorator(Protocol):
    """What ``@app.tool(...)`` returns: turns a sync or async function into a :class:`Tool`."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Tool[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Tool[P, R]: ...


class JobHandle:
    """A started job: wait for its result or read its state."""

    def __init__(self, app: App, job_id: str) -> None:
        self.app = app
        self.job_id = job_id

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_id}>"

    async def job(self) -> Job:
        return await self.app.get_job(self.job_id)

    async def status(self) -> JobStatus:
        return (await self.job()).status

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the job ends; return its result (secret fields too: it is for the program
        that started it, not for people) or raise :class:`JobFailed`."""
        read = functools.partial(self.app.get_job, self.job_id, view="reveal")
        job = await until_ended(read, timeout, self.app.clock.monotonic, first=0.005, most=0.25)
        if job.status is JobStatus.SUCCEEDED:
            return self.app.revive_result(job)
        raise JobFailed(job.id, job.status, job.error)

    def result_sync(self, timeout: float | None = None) -> Any:
        return asyncio.run(self.result(timeout))


class App:
    """A set of agents and tools bound to one database.

    ``database_url`` defaults to ``AETHERIS_DATABASE_URL``, else ``sqlite:///.aetheris/aetheris.db``.
    ``signing_key`` (a :class:`~aetheris.anchor.SigningKey`, a key file's path or a base64
    seed; default ``AETHERIS_SIGNING_KEY``) anchors every write of this App's store;
    ``trusted_keys`` (default ``AETHERIS_TRUSTED_KEYS``, and the signing key's own public key)
    are the keys its verifications trust. ``codec`` (default: an
    :class:`~aetheris.codec.EncryptionCodec` on ``AETHERIS_PAYLOAD_KEY_DIR``, if set) encodes
    every payload before it reaches the database (see :mod:`aetheris.payloads`).
    ``retention`` (``"30d"``, a timedelta, a :class:`~aetheris.retention.Retention`): its
    workers delete jobs that ended longer ago than that (see :mod:`aetheris.retention`).
    Several Apps on several databases work side by side in one process: there is no global state.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        lease_ttl: float = 30.0,
        poll_interval: float = 0.2,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        max_recoveries: int = 5,
        name: str | None = None,
        clock: Clock | None = None,
        signing_key: SigningKey | str | None = None,
        trusted_keys: Iterable[str | PublicKey] | None = None,
        codec: PayloadCodec | None = None,
        retention: Retention | Age | None = None,
    ) -> None:
        if not lease_ttl >= 0.5:
            raise ConfigurationError(f"lease_ttl must be at least 0.5 seconds, got {lease_ttl}")
        self.database_url = database_url or default_url()
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.max_payload_bytes = max_payload_bytes
        self.max_recoveries = max_recoveries
        self.name = name
        self.clock = clock or SYSTEM_CLOCK
        self._agents: dict[str, AgentDef] = {}
        self._tools: dict[str, ToolDef] = {}
        self._store: Store | None = None
        self._store_lock: asyncio.Lock | None = None
        self.doorbell = Doorbell()  # rung after each write, so that local workers wake
        self.hooks = Hooks()
        self.codec = codec if codec is not None else codec_from_env()
        self.retention = Retention.of(retention)  # what its workers prune (None: nothing)
        self.payloads = PayloadViews(self.codec, self._tools, self._agents)
        # Anchors: the key this App signs its writes with (never stored in the database) and
        # the public keys its verifications trust; by default from the environment.
        if isinstance(signing_key, str):
            signing_key = SigningKey.from_setting(signing_key)
        self.signing_key = signing_key if signing_key is not None else signing_key_from_env()
        trusted = trusted_from_env() if trusted_keys is None else TrustedKeys.parse(trusted_keys)
        own = [self.signing_key.public] if self.signing_key is not None else []
        self.trusted_keys = TrustedKeys.of([*trusted.keys.values(), *own])

    def __repr__(self) -> str:
        return f"<aetheris.App {self.database_url} agents={sorted(self._agents)}>"

    # -- registration -----------------------------------------------------------------------

    @overload
    def agent(self, fn: AgentFn, /) -> AgentFn: ...
    @overload
    def agent(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        secret: Sequence[str] = (),
        version: str | None = None,
        retention: Age | None = None,
    ) -> Callable[[AgentFn], AgentFn]: ...

    def agent(
        self,
        fn: AgentFn | None = None,
        /,
        *,
        name: str | None = None,
        secret: Sequence[str] = (),
        version: str | None = None,
        retention: Age | None = None,
    ) -> AgentFn | Callable[[AgentFn], AgentFn]:
        """Register ``async def f(ctx, **input)`` as an agent (``name`` defaults to f's name).

        ``secret``: fields of its input and result shown ``[redacted]`` (see
        :mod:`aetheris.redaction`). ``version``: the agent's code version, recorded with every
        journal entry its runs write; by default a fingerprint of its code (see
        :mod:`aetheris.fingerprint`). ``retention``: how long its ended jobs are kept, when
        not the App's (``"7d"``, ``"forever"``)."""

        def register(func: AgentFn) -> AgentFn:
            agent_name = name or func.__name__
            if agent_name in self._agents:
                raise ConfigurationError(f"agent {agent_name!r} is already registered")
            self._agents[agent_name] = AgentDef.of(
                agent_name, func, tuple(secret), version, retention
            )
            func.__aetheris_agent__ = agent_name  # type: ignore[attr-defined]
            return func

        return register(fn) if fn is not None else register

    @overload
    def tool(self, fn: Callable[P, Awaitable[R]], /) -> Tool[P, R]: ...
    @overload
    def tool(self, fn: Callable[P, R], /) -> Tool[P, R]: ...
    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        effect: str | EffectClass = EffectClass.PURE,
        retry: RetryPolicy | None = None,
        reconcile: Callable[[str], Reconciliation | Awaitable[Reconciliation]] | None = None,
        compensate: Callable[[CompensationRequest], Any] | None = None,
        requires_approval: bool = False,
        approval_timeout: float | None = None,
        rate_limit: float | RateLimit | None = None,
        secret: Sequence[str] = (),
    ) -> ToolDecorator: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        effect: str | EffectClass = EffectClass.PURE,
        retry: RetryPolicy | None = None,
        reconcile: Callable[[str], Reconciliation | Awaitable[Reconciliation]] | None = None,
        compensate: Callable[[CompensationRequest], Any] | None = None,
        requires_approval: bool = False,
        approval_timeout: float | None = None,
        rate_limit: float | RateLimit | None = None,
        secret: Sequence[str] = (),
    ) -> Tool[Any, Any] | ToolDecorator:
        """Register a tool. ``effect`` is ``pure``, ``idempotent`` or ``at_most_once``.

        ``requires_approval``: each call waits for a human to approve exactly that call (its
        arguments, bound by their hash) before it is dispatched. ``rate_limit``: calls a
        second (or a :class:`RateLimit`), held across every worker on PostgreSQL. ``secret``:
        fields of its result and arguments shown ``[redacted]`` to people (see
        :mod:`aetheris.redaction`).
        """
        limit = RateLimit.of(rate_limit)
        try:
            effect_class = EffectClass(effect)
        except ValueError:
            raise ConfigurationError(
                f"effect must be one of {[e.value for e in EffectClass]}, got {effect!r}"
            ) from None

        def register(func: Callable[..., Any]) -> Tool[Any, Any]:
            tool_name = name or func.__name__
            if tool_name in self._tools:
                raise ConfigurationError(f"tool {tool_name!r} is already registered")
            if reconcile is not None and effect_class is not EffectClass.AT_MOST_ONCE:
                raise ConfigurationError(f"tool {tool_name!r}: reconcile is for at_most_once tools")
            definition = ToolDef(
                tool_name, func, effect_class, retry or RetryPolicy(), reconcile, compensate,
                requires_approval, approval_timeout, limit, secret=tuple(secret),
            )  # fmt: skip
            self._tools[tool_name] = definition
            return Tool(definition)

        return register(fn) if fn is not None else cast(ToolDecorator, register)

    def hook(self, name: str, **options: Unpack[HookOptions]) -> Hook:
        """Declare an incoming webhook, ``POST /v1/hooks/{name}`` (see :meth:`Hooks.declare`)."""
        return self.hooks.declare(name, **options)

    @property
    def agent_names(self) -> list[str]:
        return sorted(self._agents)

    @property
    def agents(self) -> Mapping[str, AgentDef]:
        return self._agents

    @property
    def tools(self) -> Mapping[str, ToolDef]:
        return self._tools

    def agent_def(self, name: str) -> AgentDef:
        try:
            return self._agents[name]
        except KeyError:
            raise UnknownAgent(name, list(self._agents)) from None

    def revive_result(self, job: Job) -> Any:
        definition = self._agents.get(job.agent)
        return revive(definition.adapter if definition else None, job.result)

    # -- the store --------------------------------------------------------------------------

    async def open_store(self, *, migrate: bool = True, view: StoreView = "redact") -> Store:
        """The opened store of this app, migrated unless ``migrate=False`` (then nothing is
        created or changed: a reader checks :meth:`Store.schema` itself), read as ``view``
        (``redact``, ``reveal``, ``keep`` or ``raw``: see :mod:`aetheris.payloads`)."""
        return self.payloads.of(await self._open(migrate), view)

    async def _open(self, migrate: bool) -> Store:
        if self._store is not None:
            return self._store
        if self._store_lock is None:
            self._store_lock = asyncio.Lock()
        async with self._store_lock:
            if self._store is None:
                key = self.signing_key
                store = create_store(self.database_url, clock=self.clock, signer=key)
                await store.open(migrate=migrate)
                if key is not None and migrate:
                    await store.record_signing_key(key.key_id, key.public.text)
                self._store = store
        return self._store

    async def close(self) -> None:
        store, self._store = self._store, None
        self._store_lock = None
        if store is not None:
            await store.close()

    async def __aenter__(self) -> App:
        await self.open_store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- jobs -------------------------------------------------------------------------------

    async def start(
        self,
        agent: str | AgentFn,
        input: Mapping[str, Any] | None = None,
        *,
        job_id: str | None = None,
        idempotency_key: str | None = None,
        queue: str = "default",
        priority: int = 0,
        deadline: float | None = None,
        budget: Budget | Mapping[str, Any] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> JobHandle:
        """Start a job of ``agent``; starting twice with one ``idempotency_key`` gives one job.

        ``deadline`` (seconds from now): past it, the job stops at its next durable operation
        (a tool still running is interrupted), runs its compensations and ends failed.
        ``budget`` (``Budget(tokens=, cost=)`` or a dict): checked before each model call; when
        spent, the job parks with reason ``budget`` until :meth:`raise_budget`. ``tenant``:
        whose job it is (API keys see their tenant's jobs only; idempotency keys are per tenant).
        """
        name = agent_name(agent)
        try:
            limits = Budget.of(budget)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"budget: {exc}") from None
        data = {} if input is None else input
        self._check_input(data)
        check_texts(
            agent_name=name, job_id=job_id, queue=queue, idempotency_key=idempotency_key,
            tenant=tenant,
        )  # fmt: skip
        store = await self.open_store()
        await self._check_agent(store, name, data)
        new = NewJob(
            id=job_id or new_job_id(self.clock),
            agent=name,
            input=data,
            idempotency_key=idempotency_key,
            queue=queue,
            priority=priority,
            deadline=None if deadline is None else self.clock.time() + deadline,
            budget=limits,
            tenant=tenant,
        )
        job, _ = await store.create_job(new)
        self._wake_workers()
        return JobHandle(self, job.id)

    async def fork(
        self, job_id: str, at: int, *, output: Any = UNSET, new_id: str | None = None,
        by: str | None = None,
    ) -> JobHandle:  # fmt: skip
        """A new job that replays ``job_id``'s first ``at`` journal entries and goes live after;
        with ``output``, entry ``at`` too, its result replaced (see :mod:`aetheris.forking`)."""
        check_texts(job_id=new_id)
        fork_id = new_id or new_job_id(self.clock)
        store = await self.open_store(view="keep")
        await fork_job(store, job_id, at, fork_id, output=output, by=by)
        self._wake_workers()
        return JobHandle(self, fork_id)

    def _check_input(self, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"input must be a JSON object, got {type(data).__name__}")
        size = len(canonical(data))
        if size > self.max_payload_bytes:
            raise InvalidInput(
                f"input is {size} bytes, over the payload limit of {self.max_payload_bytes}"
            )

    async def _check_agent(self, store: Store, name: str, data: Mapping[str, Any]) -> None:
        """Validate against this App's agent; else against the agents workers registered.

        A database no worker has served yet knows no agents: the job is accepted and waits for
        a worker that serves it (as Temporal and DBOS accept any workflow name).
        """
        definition = self._agents.get(name)
        if definition is not None:
            definition.validate(data)
            return
        known = await store.agents()
        if (known or self._agents) and name not in known:
            raise UnknownAgent(name, sorted({*known, *self._agents}))
        schema = await store.agent_input_schema(name) if known else None
        if schema is not None:
            check_input(name, schema, data)

    def start_sync(
        self, agent: str | AgentFn, input: Mapping[str, Any] | None = None, **options: Any
    ) -> JobHandle:
        return asyncio.run(self.start(agent, input, **options))

    def handle(self, job_id: str) -> JobHandle:
        return JobHandle(self, job_id)

    async def get_job(self, job_id: str, *, view: StoreView = "redact") -> Job:
        job = await (await self.open_store(view=view)).get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list_jobs(
        self, *, status: JobStatus | None = None, limit: int = 100, **filters: Any
    ) -> list[Job]:
        """Jobs, newest first; ``filters`` are those of :meth:`Store.list_jobs` (``agent``,
        ``tenant``, ``park_reason``, ``since``, ``until``, ``after``)."""
        return await (await self.open_store()).list_jobs(status=status, limit=limit, **filters)

    async def waiting_for(self, job_id: str) -> str | None:
        """The signal a parked job waits for now (``approval:<position>`` for an approval),
        else ``None``: a signal of another name stays in its inbox until a wait takes it."""
        return (await self.get_job(job_id)).waiting_for

    # -- human in the loop and control -------------------------------------------------------

    async def raise_budget(
        self,
        job_id: str,
        *,
        tokens: int | None = None,
        cost: float | None = None,
        sender: str | None = None,
    ) -> Signal:
        """Give a job new budget limits (``None`` keeps that limit); a job parked for its
        budget resumes, and the raise is journaled where the job takes it."""
        try:
            limits = Budget(tokens, cost)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if tokens is None and cost is None:
            raise InvalidInput("raise_budget needs tokens or cost")
        store = await self.open_store()
        payload = {k: v for k, v in limits.to_data().items() if v is not None}
        signal, _ = await store.send_signal(
            job_id, BUDGET_SIGNAL, payload, self.clock.uuid4().hex, sender
        )
        self._wake_workers()
        return signal

    async def signal(
        self,
        job_id: str,
        name: str,
        payload: Any = None,
        *,
        signal_id: str | None = None,
        sender: str | None = None,
    ) -> Signal:
        """Send a signal to a job's inbox; the same ``signal_id`` is delivered only once.

        Raises :class:`JobNotFound` for an unknown job and :class:`Conflict` for one that ended.
        Names starting with ``approval:`` are the approval channel: use :meth:`approve` or
        :meth:`reject`, which bind the decision to the request that was reviewed; those
        starting with ``keyed:`` carry keyed signals (:meth:`hook`).
        """
        if name == BUDGET_SIGNAL:
            raise InvalidInput(f"signal name {name!r} is reserved: use raise_budget()")
        if name.startswith(APPROVAL_PREFIX):
            raise InvalidInput(
                f"signal name {name!r} is reserved for approval decisions: "
                "use approve() or reject() (`aetheris approve` / `aetheris reject`)"
            )
        if name.startswith(KEYED_PREFIX):
            raise InvalidInput(f"signal name {name!r} is reserved for incoming webhooks")
        for text, what in ((name, "signal name"), (signal_id, "signal id"), (sender, "sender")):
            if text is not None:
                check_text(text, what)
        store = await self.open_store()
        canonical(payload)  # refuse what has no JSON form before anything is written
        signal, _ = await store.send_signal(
            job_id, name, payload, signal_id or self.clock.uuid4().hex, sender
        )
        self._wake_workers()
        return signal

    async def approve(
        self,
        job_id: str,
        *,
        position: int | None = None,
        by: str | None = None,
        comment: str | None = None,
        args_hash: str | None = None,
    ) -> Signal:
        """Approve the job's pending approval request (``args_hash``: what you reviewed)."""
        return await self._decide(job_id, True, position, by, comment, args_hash)

    async def reject(
        self,
        job_id: str,
        *,
        position: int | None = None,
        by: str | None = None,
        reason: str | None = None,
        args_hash: str | None = None,
    ) -> Signal:
        """Reject the job's pending approval request; the agent sees ApprovalRejected."""
        return await self._decide(job_id, False, position, by, reason, args_hash)

    async def _decide(
        self,
        job_id: str,
        approved: bool,
        position: int | None,
        by: str | None,
        text: str | None,
        args_hash: str | None,
    ) -> Signal:
        job = await self.get_job(job_id)
        name, payload = approval_decision(job, approved, position, by, text, args_hash)
        store = await self.open_store()
        signal, created = await store.send_signal(job_id, name, payload, name, by)
        if not created:
            raise Conflict(f"approval request {job_id}:{name.split(':')[-1]} was already decided")
        self._wake_workers()
        return signal

    async def cancel(self, job_id: str, *, by: str | None = None) -> Job:
        """Cancel a job (and its child jobs); a running one stops at its next durable operation.
        ``by`` (who asked) is recorded with the request where it is journaled."""
        return await self._control(job_id, Control.CANCEL, by)

    async def pause(self, job_id: str, *, by: str | None = None) -> Job:
        """Park a job at its next durable operation until :meth:`resume`."""
        return await self._control(job_id, Control.PAUSE, by)

    async def resume(self, job_id: str, *, by: str | None = None) -> Job:
        return await self._control(job_id, Control.RESUME, by)

    async def _control(self, job_id: str, action: Control, by: str | None) -> Job:
        if by is not None:
            check_text(by, "by")
        job = await (await self.open_store()).control(job_id, action, by)
        self.doorbell.announce(job_id, job.control)
        return job

    def _wake_workers(self) -> None:
        self.doorbell.ring()

    async def resolve_effect(
        self,
        job_id: str,
        position: int,
        *,
        committed: bool = False,
        result: Any = None,
        not_executed: bool = False,
        fail: bool = False,
        reason: str | None = None,
        by: str | None = None,
    ) -> Job:
        """Resolve an in-doubt effect: it happened (with ``result``), did not, or failed."""
        resolution = Resolution(committed, result, not_executed, fail, reason, by)
        store = await self.open_store(view="keep")
        job: Job = await resolve_effect(store, job_id, position, resolution, self.clock.time())
        self._wake_workers()
        return job

    # -- workers ----------------------------------------------------------------------------

    async def shred(self, job_id: str) -> Shredded:
        """Destroy an ended job's payload keys: its content is unreadable for good, its journal
        still verifies (see :mod:`aetheris.payloads`)."""
        return await shred_job(await self.open_store(view="raw"), self.codec, job_id)

    async def workers(self) -> list[WorkerInfo]:
        """The workers registered on this database, oldest first (see ``WorkerInfo.alive``)."""
        return await (await self.open_store()).workers()

    async def serving(self, agent: str | AgentFn, queue: str | None = None) -> Serving:
        """Who serves ``agent`` now: the live workers claiming its jobs (in ``queue``, if
        given), and whether any worker ever registered it; ``.warning`` says why its jobs
        would wait."""
        name = agent_name(agent)
        store = await self.open_store()
        live = [w for w in await store.workers() if w.alive and w.serves(name, queue)]
        registered = name in await store.agents()
        return Serving(name, queue, tuple(live), registered, name in self._agents)

    def worker(self, **options: Any) -> Worker:
        """A worker of this App (``concurrency``, ``queues``, ``lease_ttl``, ``grace``, ...)."""
        return Worker(self, **options)

    async def run_worker(
        self,
        concurrency: int = 10,
        *,
        queues: Sequence[str] | None = None,
        stop: asyncio.Event | None = None,
        **options: Any,
    ) -> None:
        """Run a worker in this event loop until ``stop`` is set."""
        if not self._agents:
            raise ConfigurationError("this App has no agents: nothing for a worker to run")
        await self.worker(concurrency=concurrency, queues=queues, **options).run(stop)

    def run_worker_sync(self, concurrency: int = 10, **options: Any) -> None:
        asyncio.run(self.run_worker(concurrency, **options))
