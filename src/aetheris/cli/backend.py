"""What the commands talk to: the database through an :class:`~aetheris.App` (:class:`Direct`)
or a server through a :class:`~aetheris.Client` (:class:`Remote`), behind one small interface.

A command is written once against :class:`Backend` and prints the same thing either way; only
the line that says where it looked differs (``database: …`` or ``server: …``). What only the
database can answer (``worker``, ``replay``, ``db migrate``, ``status``, ``keys``) stays on
:func:`~aetheris.cli.base.with_app`, which refuses clearly when a server is set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol

from aetheris.anchor import TrustedKeys
from aetheris.app import App
from aetheris.audit import Verdict, audit, gone, job_ids, verify_job
from aetheris.bundle import parse_bundle
from aetheris.cli.base import (
    Env,
    database_option,
    load_app,
    open_for_reading,
    pass_env,
    resolve_job_id,
    run,
)
from aetheris.client import Client, PendingApproval
from aetheris.errors import WebhookNotFound
from aetheris.journal import Event
from aetheris.models import (
    DEFAULT_TENANT,
    Budget,
    DeliveryState,
    Effect,
    EffectState,
    Job,
    JobStatus,
    ParkReason,
    Signal,
    Webhook,
    WebhookDelivery,
)
from aetheris.store import safe_url
from aetheris.store.port import Summary
from aetheris.webhooks import create_webhook
from aetheris.witness import Witness


class Backend(Protocol):
    """The verbs the commands use; ``by`` is who acts (a server records its key instead)."""

    @property
    def where(self) -> str: ...
    async def get_job(self, job_id: str) -> Job: ...
    async def list_jobs(
        self, status: JobStatus | None, agent: str | None, since: float | None, limit: int
    ) -> list[Job]: ...
    async def events(self, job_id: str, after: int = -1) -> list[Event]: ...
    async def summary(self) -> Summary: ...
    async def fork(self, job_id: str, at: int, output: Any, by: str | None) -> str: ...
    async def effects(self, job_id: str | None, in_doubt: bool) -> list[Effect]: ...
    async def approvals(self, limit: int) -> list[PendingApproval]: ...
    async def start(
        self, agent: str, data: dict[str, Any], key: str | None, queue: str, priority: int,
        budget: Budget | None,
    ) -> Job: ...  # fmt: skip
    async def serving_warning(self, agent: str, queue: str) -> str | None: ...
    async def signal(
        self, job_id: str, name: str, payload: Any, signal_id: str | None, by: str | None
    ) -> Signal: ...
    async def decide(
        self, job_id: str, approved: bool, position: int | None, by: str | None,
        text: str | None, args_hash: str | None,
    ) -> Signal: ...  # fmt: skip
    async def control(self, action: str, job_id: str) -> Job: ...
    async def resolve_effect(self, job_id: str, position: int, **resolution: Any) -> Job: ...
    async def raise_budget(
        self, job_id: str, tokens: int | None, cost: float | None, by: str | None
    ) -> Signal: ...
    async def verify(
        self, job_id: str, trusted: TrustedKeys, witness: Witness | None
    ) -> Verdict: ...
    async def job_ids(self) -> list[str]: ...
    async def gone(
        self, witness: Witness, present: set[str], trusted: TrustedKeys
    ) -> list[Verdict]: ...
    async def export(self, job_id: str) -> dict[str, Any]: ...
    async def create_webhook(
        self, url: str, events: Sequence[str], tenant: str | None
    ) -> Webhook: ...
    async def webhooks(self, tenant: str | None, disabled: bool) -> list[Webhook]: ...
    async def delete_webhook(self, webhook_id: str) -> Webhook: ...
    async def deliveries(
        self, webhook_id: str | None, state: DeliveryState | None, limit: int,
        tenant: str | None,
    ) -> list[WebhookDelivery]: ...  # fmt: skip


class Direct:
    """The database, through an App (the App's own checks; ``by`` recorded as given)."""

    def __init__(self, app: App) -> None:
        self.app = app

    @property
    def where(self) -> str:
        return f"database: {safe_url(self.app.database_url)}"

    async def get_job(self, job_id: str) -> Job:
        return await self.app.get_job(job_id)

    async def list_jobs(
        self, status: JobStatus | None, agent: str | None, since: float | None, limit: int
    ) -> list[Job]:
        return await self.app.list_jobs(status=status, agent=agent, since=since, limit=limit)

    async def events(self, job_id: str, after: int = -1) -> list[Event]:
        return await (await self.app.open_store()).events(job_id, after=after)

    async def summary(self) -> Summary:
        return await (await self.app.open_store()).summary()

    async def fork(self, job_id: str, at: int, output: Any, by: str | None) -> str:
        return (await self.app.fork(job_id, at, output=output, by=by)).job_id

    async def effects(self, job_id: str | None, in_doubt: bool) -> list[Effect]:
        states = [EffectState.IN_DOUBT] if in_doubt else None
        return await (await self.app.open_store()).effects(job_id=job_id, states=states)

    async def approvals(self, limit: int) -> list[PendingApproval]:
        parked = await self.app.list_jobs(
            status=JobStatus.PARKED, park_reason=ParkReason.APPROVAL, limit=100_000
        )
        return [
            PendingApproval(
                job_id=j.id,
                agent=j.agent,
                name=(j.park_detail or {}).get("name"),
                position=(j.park_detail or {}).get("position"),
                args_hash=(j.park_detail or {}).get("args_hash"),
                request=j.park_detail or {},
                since=j.updated_at,
            )
            for j in sorted(parked, key=lambda j: j.updated_at)[:limit]
        ]

    async def start(
        self, agent: str, data: dict[str, Any], key: str | None, queue: str, priority: int,
        budget: Budget | None,
    ) -> Job:  # fmt: skip
        handle = await self.app.start(
            agent, data, idempotency_key=key, queue=queue, priority=priority, budget=budget
        )
        return await handle.job()

    async def serving_warning(self, agent: str, queue: str) -> str | None:
        return (await self.app.serving(agent, queue)).warning

    async def signal(
        self, job_id: str, name: str, payload: Any, signal_id: str | None, by: str | None
    ) -> Signal:
        return await self.app.signal(job_id, name, payload, signal_id=signal_id, sender=by)

    async def decide(
        self, job_id: str, approved: bool, position: int | None, by: str | None,
        text: str | None, args_hash: str | None,
    ) -> Signal:  # fmt: skip
        if approved:
            return await self.app.approve(
                job_id, position=position, by=by, comment=text, args_hash=args_hash
            )
        return await self.app.reject(
            job_id, position=position, by=by, reason=text, args_hash=args_hash
        )

    async def control(self, action: str, job_id: str) -> Job:
        job: Job = await getattr(self.app, action)(job_id)
        return job

    async def resolve_effect(self, job_id: str, position: int, **resolution: Any) -> Job:
        return await self.app.resolve_effect(job_id, position, **resolution)

    async def raise_budget(
        self, job_id: str, tokens: int | None, cost: float | None, by: str | None
    ) -> Signal:
        return await self.app.raise_budget(job_id, tokens=tokens, cost=cost, sender=by)

    async def verify(self, job_id: str, trusted: TrustedKeys, witness: Witness | None) -> Verdict:
        keys = TrustedKeys.of([*self.app.trusted_keys.keys.values(), *trusted.keys.values()])
        return await verify_job(await self.app.open_store(view="raw"), job_id, keys, witness)

    async def job_ids(self) -> list[str]:
        return await job_ids(await self.app.open_store())

    async def gone(
        self, witness: Witness, present: set[str], trusted: TrustedKeys
    ) -> list[Verdict]:
        """Witnessed jobs no longer here: pruned ones (by their tombstones) are ok."""
        keys = TrustedKeys.of([*self.app.trusted_keys.keys.values(), *trusted.keys.values()])
        missing = [i for i in witness.jobs if i not in present]
        stones = await (await self.app.open_store()).tombstones(missing) if missing else {}
        return gone(witness, present, stones, keys)

    async def export(self, job_id: str) -> dict[str, Any]:
        from aetheris.bundle import export_bundle

        store = await self.app.open_store(view="raw")  # the stored bytes, as they verify
        return await export_bundle(store, job_id, signer=self.app.signing_key)

    async def create_webhook(self, url: str, events: Sequence[str], tenant: str | None) -> Webhook:
        store = await self.app.open_store()
        return await create_webhook(
            store, tenant or DEFAULT_TENANT, url, events, clock=self.app.clock
        )

    async def webhooks(self, tenant: str | None, disabled: bool) -> list[Webhook]:
        store = await self.app.open_store()
        return await store.webhooks(tenant=tenant, disabled=disabled)

    async def delete_webhook(self, webhook_id: str) -> Webhook:
        hook = await (await self.app.open_store()).disable_webhook(webhook_id)
        if hook is None:
            raise WebhookNotFound(webhook_id)
        return hook

    async def deliveries(
        self, webhook_id: str | None, state: DeliveryState | None, limit: int,
        tenant: str | None,
    ) -> list[WebhookDelivery]:  # fmt: skip
        store = await self.app.open_store()
        if webhook_id is not None and await store.webhook(webhook_id) is None:
            raise WebhookNotFound(webhook_id)
        return await store.deliveries(
            tenant=tenant, webhook_id=webhook_id, state=state, limit=limit
        )


class Remote:
    """A server, through a Client: the key's role and tenant apply, and the server records
    the key as who acted (``by`` is not sent)."""

    def __init__(self, client: Client, code: App | None = None) -> None:
        self.client = client
        self.code = code  # ``start --app``: the input is checked against it before sending

    @property
    def where(self) -> str:
        return f"server: {self.client.url}"

    async def get_job(self, job_id: str) -> Job:
        return await self.client.get_job(job_id)

    async def list_jobs(
        self, status: JobStatus | None, agent: str | None, since: float | None, limit: int
    ) -> list[Job]:
        return await self.client.list_jobs(status=status, agent=agent, since=since, limit=limit)

    async def events(self, job_id: str, after: int = -1) -> list[Event]:
        return await self.client.events(job_id, after=after)

    async def summary(self) -> Summary:
        return await self.client.summary()

    async def fork(self, job_id: str, at: int, output: Any, by: str | None) -> str:
        return (await self.client.fork(job_id, at, output=output)).job_id  # by: the key

    async def effects(self, job_id: str | None, in_doubt: bool) -> list[Effect]:
        state = EffectState.IN_DOUBT if in_doubt else None
        return await self.client.effects(state=state, job_id=job_id)

    async def approvals(self, limit: int) -> list[PendingApproval]:
        return await self.client.approvals(limit=limit)

    async def start(
        self, agent: str, data: dict[str, Any], key: str | None, queue: str, priority: int,
        budget: Budget | None,
    ) -> Job:  # fmt: skip
        if self.code is not None:
            self.code.agent_def(agent).validate(data)
        handle = await self.client.start(
            agent, data, idempotency_key=key, queue=queue, priority=priority, budget=budget
        )
        return await handle.job()

    async def serving_warning(self, agent: str, queue: str) -> str | None:
        known = {a.name: a for a in await self.client.agents()}
        if agent not in known:
            return (
                f"no worker has ever served agent {agent!r} on this server's database: its "
                "jobs wait until a worker that defines it starts (`aetheris worker MODULE:APP`)"
            )
        if known[agent].workers == 0:
            return (
                f"no live worker serves agent {agent!r} now: its jobs wait until one starts "
                "(`aetheris worker MODULE:APP`)"
            )
        return None

    async def signal(
        self, job_id: str, name: str, payload: Any, signal_id: str | None, by: str | None
    ) -> Signal:
        return await self.client.signal(job_id, name, payload, signal_id=signal_id)

    async def decide(
        self, job_id: str, approved: bool, position: int | None, by: str | None,
        text: str | None, args_hash: str | None,
    ) -> Signal:  # fmt: skip
        if approved:
            return await self.client.approve(
                job_id, position=position, comment=text, args_hash=args_hash
            )
        return await self.client.reject(job_id, position=position, reason=text, args_hash=args_hash)

    async def control(self, action: str, job_id: str) -> Job:
        job: Job = await getattr(self.client, action)(job_id)
        return job

    async def resolve_effect(self, job_id: str, position: int, **resolution: Any) -> Job:
        resolution.pop("by", None)
        return await self.client.resolve_effect(job_id, position, **resolution)

    async def raise_budget(
        self, job_id: str, tokens: int | None, cost: float | None, by: str | None
    ) -> Signal:
        return await self.client.raise_budget(job_id, tokens=tokens, cost=cost)

    async def verify(self, job_id: str, trusted: TrustedKeys, witness: Witness | None) -> Verdict:
        """The server's verdict (with the keys it trusts); with keys or a witness given here,
        the job's bundle checked here instead, with those."""
        if not trusted and witness is None:
            return await self.client.verify(job_id)
        bundle = parse_bundle(await self.client.export(job_id))
        job, events, effects, blobs = bundle.job, bundle.events, bundle.effects, bundle.blobs
        return audit(job, events, effects, blobs, trusted, witness)

    async def job_ids(self) -> list[str]:
        return [j.id for j in await self.client.list_jobs(limit=10**9)]

    async def gone(
        self, witness: Witness, present: set[str], trusted: TrustedKeys
    ) -> list[Verdict]:
        """Witnessed jobs no longer here; the HTTP API does not serve tombstones yet, so a
        pruned job counts as gone too (verify against the database to tell them apart)."""
        return gone(witness, present, {}, trusted)

    async def export(self, job_id: str) -> dict[str, Any]:
        return await self.client.export(job_id)

    async def create_webhook(self, url: str, events: Sequence[str], tenant: str | None) -> Webhook:
        return await self.client.create_webhook(url, events, tenant=tenant)

    async def webhooks(self, tenant: str | None, disabled: bool) -> list[Webhook]:
        found = await self.client.webhooks(disabled=disabled)
        return [h for h in found if tenant is None or h.tenant == tenant]

    async def delete_webhook(self, webhook_id: str) -> Webhook:
        return await self.client.delete_webhook(webhook_id)

    async def deliveries(
        self, webhook_id: str | None, state: DeliveryState | None, limit: int,
        tenant: str | None,
    ) -> list[WebhookDelivery]:  # fmt: skip
        found = await self.client.deliveries(webhook_id, state=state, limit=limit)
        return [d for d in found if tenant is None or d.tenant == tenant]


def with_backend(*, writes: bool = False) -> Callable[..., Callable[..., None]]:
    """Give a command a :class:`Backend`: a server's when ``--url``/``AETHERIS_URL`` is set,
    else the database's (a command that only reads creates and migrates nothing)."""

    def decorate(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
        @database_option
        @pass_env
        @functools.wraps(fn)
        def command(env: Env, *args: Any, **kwargs: Any) -> None:
            run_with_backend(env, fn, *args, writes=writes, **kwargs)

        return command

    return decorate


def run_with_backend(
    env: Env, fn: Callable[..., Any], *args: Any, writes: bool = False, **kwargs: Any
) -> None:
    """Run ``fn(backend, *args, **kwargs)`` on the server or the database ``env`` names (what
    :func:`with_backend` does, for a command that only sometimes needs a backend)."""
    if env.remote:
        _remote(env, fn, args, kwargs)
    else:
        _direct(env, writes, fn, args, kwargs)


def _remote(env: Env, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any]) -> None:
    spec = kwargs.pop("app_spec", None)
    code = load_app(spec) if spec else None

    async def main() -> None:
        async with Client(env.server_url, env.api_key or "") as client:
            if kwargs.get("job_id"):
                kwargs["job_id"] = await resolve_job_id(client, kwargs["job_id"])
            await fn(Remote(client, code), *args, **kwargs)

    run(main(), server=env.server_url)


def _direct(
    env: Env, writes: bool, fn: Callable[..., Any], args: Any, kwargs: dict[str, Any]
) -> None:
    app = env.app(kwargs.pop("app_spec", None))

    async def main() -> None:
        try:
            store = await (app.open_store() if writes else open_for_reading(app))
            if kwargs.get("job_id"):
                kwargs["job_id"] = await resolve_job_id(store, kwargs["job_id"])
            await fn(Direct(app), *args, **kwargs)
        finally:
            await app.close()

    run(main(), app.database_url)


__all__ = ["Backend", "Direct", "Remote", "run_with_backend", "with_backend"]
