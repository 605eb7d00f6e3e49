"""``aetheris.SyncClient``: :class:`~aetheris.Client` for code without an event loop.

Each method runs the async client's on a private event loop that the SyncClient owns (an
``asyncio.Runner``), so its connections are reused from call to call. It cannot be used from
inside a running event loop: there, use :class:`~aetheris.Client` and ``await``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from aetheris.audit import Verdict
from aetheris.client.decode import AgentInfo, PendingApproval
from aetheris.client.remote import Client, RemoteJobHandle
from aetheris.forking import UNSET
from aetheris.journal import Event
from aetheris.models import (
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
    WebhookEvent,
)
from aetheris.store.port import Summary

T = TypeVar("T")


class SyncJobHandle:
    """A job started through a :class:`SyncClient`."""

    def __init__(self, client: SyncClient, handle: RemoteJobHandle) -> None:
        self._client = client
        self._handle = handle
        self.job_id = handle.job_id

    def __repr__(self) -> str:
        return f"<SyncJobHandle {self.job_id}>"

    def job(self) -> Job:
        return self._client._run(self._handle.job())

    def status(self) -> JobStatus:
        return self.job().status

    def result(self, timeout: float | None = None) -> Any:
        """Wait until the job ends; return its result or raise :class:`JobFailed`."""
        return self._client._run(self._handle.result(timeout))


class SyncClient:
    """An Aetheris server, seen with one API key, without ``await``: the same verbs, arguments
    and answers as :class:`~aetheris.Client` (see there). Use it as a context manager, or call
    :meth:`close`."""

    def __init__(self, url: str | None = None, api_key: str | None = None, **options: Any):
        self._runner = asyncio.Runner()
        self._client: Client = self._runner.run(_make(url, api_key, options))
        self.url = self._client.url

    def __repr__(self) -> str:
        return f"<aetheris.SyncClient {self.url}>"

    def _run(self, step: Awaitable[T]) -> T:
        return self._runner.run(_await(step))

    def close(self) -> None:
        self._run(self._client.close())
        self._runner.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self,
        agent: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        queue: str = "default",
        priority: int = 0,
        budget: Budget | Mapping[str, Any] | None = None,
    ) -> SyncJobHandle:
        handle = self._run(
            self._client.start(
                agent,
                input,
                idempotency_key=idempotency_key,
                queue=queue,
                priority=priority,
                budget=budget,
            )
        )
        return SyncJobHandle(self, handle)

    def handle(self, job_id: str) -> SyncJobHandle:
        return SyncJobHandle(self, self._client.handle(job_id))

    def get_job(self, job_id: str) -> Job:
        return self._run(self._client.get_job(job_id))

    def waiting_for(self, job_id: str) -> str | None:
        """The signal a parked job waits for now, else ``None``."""
        return self._run(self._client.waiting_for(job_id))

    def summary(self) -> Summary:
        """The tenant's jobs by status, its oldest pending job and its effects in doubt."""
        return self._run(self._client.summary())

    def fork(self, job_id: str, at: int, *, output: Any = UNSET) -> str:
        """A new job replaying ``job_id``'s first ``at`` entries, then live: its id."""
        return self._run(self._client.fork(job_id, at, output=output)).job_id

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """Where runs ``a`` and ``b`` differ (see :meth:`Client.diff`)."""
        return self._run(self._client.diff(a, b))

    def find_jobs(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Ids of the tenant's jobs that start with ``prefix``, in id order, at most ``limit``."""
        return self._run(self._client.find_jobs(prefix, limit=limit))

    def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        limit: int = 100,
        agent: str | None = None,
        park_reason: ParkReason | str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Job]:
        return self._run(
            self._client.list_jobs(
                status=status,
                limit=limit,
                agent=agent,
                park_reason=park_reason,
                since=since,
                until=until,
            )
        )

    def events(self, job_id: str, *, after: int = -1) -> list[Event]:
        return self._run(self._client.events(job_id, after=after))

    def stream(self, job_id: str, *, last_event_id: int | None = None) -> Iterator[Event]:
        """The job's events as they come, until it ends (see :meth:`Client.stream`)."""
        events = self._client.stream(job_id, last_event_id=last_event_id)
        try:
            while True:
                try:
                    yield self._run(events.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(events.aclose())

    def cancel(self, job_id: str) -> Job:
        return self._run(self._client.cancel(job_id))

    def pause(self, job_id: str) -> Job:
        return self._run(self._client.pause(job_id))

    def resume(self, job_id: str) -> Job:
        return self._run(self._client.resume(job_id))

    def signal(
        self, job_id: str, name: str, payload: Any = None, *, signal_id: str | None = None
    ) -> Signal:
        return self._run(self._client.signal(job_id, name, payload, signal_id=signal_id))

    def approve(
        self,
        job_id: str,
        *,
        position: int | None = None,
        comment: str | None = None,
        args_hash: str | None = None,
    ) -> Signal:
        decision = self._client.approve(
            job_id, position=position, comment=comment, args_hash=args_hash
        )
        return self._run(decision)

    def reject(
        self,
        job_id: str,
        *,
        position: int | None = None,
        reason: str | None = None,
        args_hash: str | None = None,
    ) -> Signal:
        decision = self._client.reject(
            job_id, position=position, reason=reason, args_hash=args_hash
        )
        return self._run(decision)

    def approvals(self, *, limit: int = 100) -> list[PendingApproval]:
        return self._run(self._client.approvals(limit=limit))

    def raise_budget(
        self, job_id: str, *, tokens: int | None = None, cost: float | None = None
    ) -> Signal:
        return self._run(self._client.raise_budget(job_id, tokens=tokens, cost=cost))

    def effects(
        self, *, state: EffectState | str | None = None, job_id: str | None = None
    ) -> list[Effect]:
        return self._run(self._client.effects(state=state, job_id=job_id))

    def resolve_effect(self, job_id: str, position: int, **resolution: Any) -> Job:
        """``committed=True, result=...``, ``not_executed=True`` or ``fail=True``; ``reason``."""
        return self._run(self._client.resolve_effect(job_id, position, **resolution))

    def verify(self, job_id: str) -> Verdict:
        return self._run(self._client.verify(job_id))

    def export(self, job_id: str) -> dict[str, Any]:
        return self._run(self._client.export(job_id))

    def agents(self) -> list[AgentInfo]:
        return self._run(self._client.agents())

    def create_webhook(
        self, url: str, events: Sequence[str | WebhookEvent], *, tenant: str | None = None
    ) -> Webhook:
        """Subscribe ``url`` to ``events``; the answer's ``secret`` is shown only now."""
        return self._run(self._client.create_webhook(url, events, tenant=tenant))

    def webhooks(self, *, disabled: bool = False) -> list[Webhook]:
        return self._run(self._client.webhooks(disabled=disabled))

    def delete_webhook(self, webhook_id: str) -> Webhook:
        return self._run(self._client.delete_webhook(webhook_id))

    def deliveries(
        self,
        webhook_id: str | None = None,
        *,
        state: DeliveryState | str | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        return self._run(self._client.deliveries(webhook_id, state=state, limit=limit))


async def _await(step: Awaitable[T]) -> T:
    return await step


async def _make(url: str | None, api_key: str | None, options: dict[str, Any]) -> Client:
    return Client(url, api_key, **options)  # made in the runner's loop, where it is used
