"""``aetheris.Client``: the verbs of :class:`~aetheris.App` that do not run agents, over HTTP.

It speaks the ``/v1`` API of ``aetheris server`` with an API key, and answers with the models
and errors ``App`` answers with: a script written against ``App`` for starting, watching and
deciding jobs works against a remote server by swapping the object. What it can do is what the
key's role allows, on the key's tenant's jobs (another tenant's job is :class:`JobNotFound`).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import httpx

from aetheris.audit import Verdict
from aetheris.client import decode
from aetheris.client.decode import AgentInfo, PendingApproval
from aetheris.errors import ConfigurationError, InvalidInput, JobFailed, ServerError
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
from aetheris.polling import until_ended
from aetheris.store.port import Summary

PAGE = 500  # the API's largest page of jobs
RECONNECTS = 5  # stream reconnections in a row without a new event before giving up


class RemoteJobHandle:
    """A job started through a :class:`Client`: wait for its result or read its state (as
    :class:`~aetheris.JobHandle`)."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.job_id = job_id

    def __repr__(self) -> str:
        return f"<RemoteJobHandle {self.job_id}>"

    async def job(self) -> Job:
        return await self.client.get_job(self.job_id)

    async def status(self) -> JobStatus:
        return (await self.job()).status

    async def result(self, timeout: float | None = None) -> Any:
        """Wait until the job ends; return its result (as JSON: the server does not know
        the agent's return type) or raise :class:`JobFailed`."""
        most = self.client.poll_interval
        job = await until_ended(self.job, timeout, time.monotonic, first=0.05, most=most)
        if job.status is JobStatus.SUCCEEDED:
            return job.result
        raise JobFailed(job.id, job.status, job.error)


class Client:
    """An Aetheris server, seen with one API key.

    ``url`` defaults to ``AETHERIS_URL`` and ``api_key`` to ``AETHERIS_API_KEY``. Use it as an
    async context manager (or call :meth:`close`); :class:`~aetheris.SyncClient` is the same
    for code without an event loop. ``transport`` is httpx's (``httpx.ASGITransport(api)``
    serves an API in-process, for tests).
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        poll_interval: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url = url or os.environ.get("AETHERIS_URL")
        if not url:
            raise ConfigurationError("no server URL: pass url or set AETHERIS_URL")
        self.url = url.rstrip("/")
        self.poll_interval = poll_interval
        key = api_key if api_key is not None else os.environ.get("AETHERIS_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"<aetheris.Client {self.url}>"

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        job_id: str | None = None,
        agent: str | None = None,
        webhook_id: str | None = None,
        **request: Any,
    ) -> Any:
        try:
            response = await self._http.request(method, path, **request)
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach the Aetheris server at {self.url}: {exc}") from None
        if not response.is_success:
            raise decode.error(response, job_id=job_id, agent=agent, webhook_id=webhook_id)
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                f"{self.url}{path} answered with something that is not JSON"
            ) from None

    # -- jobs -----------------------------------------------------------------------------------

    async def start(
        self,
        agent: str,
        input: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        queue: str = "default",
        priority: int = 0,
        budget: Budget | Mapping[str, Any] | None = None,
    ) -> RemoteJobHandle:
        """Start a job of ``agent``; starting twice with one ``idempotency_key`` gives one job.
        The job is the key's tenant's."""
        try:
            limits = Budget.of(budget)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"budget: {exc}") from None
        body: dict[str, Any] = {"agent": agent, "input": dict(input or {}), "queue": queue}
        body["priority"] = priority
        if limits is not None:
            body["budget"] = limits.to_data()
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        doc = await self._call("POST", "/v1/jobs", json=body, headers=headers, agent=agent)
        return RemoteJobHandle(self, doc["id"])

    def handle(self, job_id: str) -> RemoteJobHandle:
        return RemoteJobHandle(self, job_id)

    async def get_job(self, job_id: str) -> Job:
        return decode.job(await self._call("GET", f"/v1/jobs/{job_id}", job_id=job_id))

    async def waiting_for(self, job_id: str) -> str | None:
        """The signal a parked job waits for now (``approval:<position>`` for an approval),
        else ``None``."""
        return (await self.get_job(job_id)).waiting_for

    async def fork(self, job_id: str, at: int, *, output: Any = UNSET) -> RemoteJobHandle:
        """A new job that replays ``job_id``'s first ``at`` entries for free, then runs live;
        with ``output``, entry ``at`` too, its result replaced."""
        body: dict[str, Any] = {"at": at}
        if output is not UNSET:
            body["output"] = output
        doc = await self._call("POST", f"/v1/jobs/{job_id}/fork", json=body, job_id=job_id)
        return RemoteJobHandle(self, doc["id"])

    async def diff(self, a: str, b: str) -> dict[str, Any]:
        """Where runs ``a`` and ``b`` differ: ``first_divergence``, ``rows`` (every position
        that differs) and ``end``, as ``aetheris diff A B --json`` prints it."""
        doc: dict[str, Any] = await self._call("GET", f"/v1/jobs/{a}/diff/{b}", job_id=a)
        return doc

    async def find_jobs(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Ids of the tenant's jobs that start with ``prefix``, in id order, at most ``limit``."""
        params = {"prefix": prefix, "limit": limit}
        doc = await self._call("GET", "/v1/job-ids", params=params)
        return [str(i) for i in doc["ids"]]

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        limit: int = 100,
        agent: str | None = None,
        park_reason: ParkReason | str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Job]:
        """The tenant's jobs, newest first (``since``/``until``: Unix seconds of creation),
        fetched a page at a time up to ``limit``."""
        params: dict[str, Any] = {
            "status": None if status is None else JobStatus(status).value,
            "agent": agent,
            "park_reason": None if park_reason is None else ParkReason(park_reason).value,
            "created_after": decode.iso(since),
            "created_before": decode.iso(until),
        }
        params = {k: v for k, v in params.items() if v is not None}
        found: list[Job] = []
        while len(found) < limit:
            params["limit"] = min(PAGE, limit - len(found))
            page = await self._call("GET", "/v1/jobs", params=params)
            found += [decode.job(doc) for doc in page["jobs"]]
            if page.get("next_cursor") is None:
                break
            params["cursor"] = page["next_cursor"]
        return found

    async def events(self, job_id: str, *, after: int = -1) -> list[Event]:
        """The job's journal from the event after seq ``after``, in order."""
        found: list[Event] = []
        while True:
            params = {"after": after, "limit": 1000}
            page = await self._call(
                "GET", f"/v1/jobs/{job_id}/events", params=params, job_id=job_id
            )
            found += [decode.event(job_id, doc) for doc in page["events"]]
            if page.get("next_after") is None:
                return found
            after = int(page["next_after"])

    async def stream(
        self, job_id: str, *, last_event_id: int | None = None
    ) -> AsyncGenerator[Event]:
        """The job's events as they are journaled, until it ends: from the start, or after
        ``last_event_id`` (a seq). A dropped connection is resumed where it broke."""
        last = -1 if last_event_id is None else last_event_id
        failures = 0
        while True:
            try:
                async for item in self._frames(job_id, last):
                    if item is None:
                        return
                    last, failures = item.seq, 0
                    yield item
                return  # the server closed the stream without an end: nothing more
            except (httpx.TransportError, ServerError) as exc:
                failures += 1
                if failures > RECONNECTS:
                    raise ServerError(
                        f"the event stream of job {job_id} from {self.url} keeps breaking: {exc}"
                    ) from None
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))

    async def _frames(self, job_id: str, last: int) -> AsyncIterator[Event | None]:
        """Events of one connection to the stream; ``None`` for its ``end``."""
        path = f"/v1/jobs/{job_id}/events/stream"
        headers = {"Last-Event-ID": str(last), "Accept": "text/event-stream"}
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        async with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
            if not response.is_success:
                await response.aread()
                raise decode.error(response, job_id=job_id)
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                kind, data = fields.get("event"), fields.get("data")
                fields = {}
                if kind == "end":
                    yield None
                    return
                if kind is not None and data is not None:
                    yield decode.event(job_id, json.loads(data))

    # -- control, signals, decisions ------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job (and its child jobs); the server records the key as who asked."""
        return await self._control(job_id, "cancel")

    async def pause(self, job_id: str) -> Job:
        return await self._control(job_id, "pause")

    async def resume(self, job_id: str) -> Job:
        return await self._control(job_id, "resume")

    async def _control(self, job_id: str, action: str) -> Job:
        doc = await self._call("POST", f"/v1/jobs/{job_id}/{action}", job_id=job_id)
        return decode.job(doc)

    async def signal(
        self, job_id: str, name: str, payload: Any = None, *, signal_id: str | None = None
    ) -> Signal:
        """Send a signal to a job's inbox; the same ``signal_id`` is delivered only once."""
        body = {"data": payload, "signal_id": signal_id}
        path = f"/v1/jobs/{job_id}/signals/{name}"
        return decode.signal(await self._call("POST", path, json=body, job_id=job_id))

    async def approve(
        self,
        job_id: str,
        *,
        position: int | None = None,
        comment: str | None = None,
        args_hash: str | None = None,
    ) -> Signal:
        """Approve the job's pending approval request (``args_hash``: what you reviewed)."""
        return await self._decide(job_id, "approve", position, comment, args_hash)

    async def reject(
        self,
        job_id: str,
        *,
        position: int | None = None,
        reason: str | None = None,
        args_hash: str | None = None,
    ) -> Signal:
        """Reject the job's pending approval request; the agent sees ApprovalRejected."""
        return await self._decide(job_id, "reject", position, reason, args_hash)

    async def _decide(
        self, job_id: str, verb: str, position: int | None, text: str | None, args: str | None
    ) -> Signal:
        body = {"position": position, "comment": text, "args_hash": args}
        doc = await self._call("POST", f"/v1/jobs/{job_id}/{verb}", json=body, job_id=job_id)
        return decode.signal(doc)

    async def approvals(self, *, limit: int = 100) -> list[PendingApproval]:
        """Approval requests waiting for a person, oldest first."""
        docs = await self._call("GET", "/v1/approvals", params={"limit": limit})
        return [decode.approval(doc) for doc in docs]

    async def raise_budget(
        self, job_id: str, *, tokens: int | None = None, cost: float | None = None
    ) -> Signal:
        """Give a job new budget limits; a job parked for its budget resumes."""
        if tokens is None and cost is None:
            raise InvalidInput("raise_budget needs tokens or cost")
        body = {"tokens": tokens, "cost": cost}
        doc = await self._call("POST", f"/v1/jobs/{job_id}/budget", json=body, job_id=job_id)
        return decode.signal(doc)

    # -- the ledger and the journal --------------------------------------------------------------

    async def effects(
        self, *, state: EffectState | str | None = None, job_id: str | None = None
    ) -> list[Effect]:
        """Ledger rows of the tenant's jobs (``state="in_doubt"``: those to settle)."""
        params = {"state": None if state is None else EffectState(state).value, "job_id": job_id}
        found = await self._call(
            "GET", "/v1/effects", params={k: v for k, v in params.items() if v}
        )
        return [decode.effect(doc) for doc in found]

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
    ) -> Job:
        """Resolve an in-doubt effect: it happened (with ``result``), did not, or failed."""
        if sum((committed, not_executed, fail)) != 1:
            raise InvalidInput("give exactly one of committed, not_executed, fail")
        outcome = "committed" if committed else "not_executed" if not_executed else "fail"
        body = {"outcome": outcome, "result": result, "reason": reason}
        path = f"/v1/jobs/{job_id}/effects/{position}/resolve"
        return decode.job(await self._call("POST", path, json=body, job_id=job_id))

    async def verify(self, job_id: str) -> Verdict:
        """The server verifies the job (chain, anchors with the keys it trusts, the job's row
        and ledger against the journal: :func:`aetheris.audit.audit`)."""
        doc = await self._call("GET", f"/v1/jobs/{job_id}/verify", job_id=job_id)
        return decode.verdict(doc)

    async def export(self, job_id: str) -> dict[str, Any]:
        """The job's evidence bundle (journal as stored, ledger, blobs, manifest)."""
        bundle: dict[str, Any] = await self._call("GET", f"/v1/jobs/{job_id}/export", job_id=job_id)
        return bundle

    async def summary(self) -> Summary:
        """The tenant's jobs by status, its oldest pending job and its effects in doubt."""
        return decode.summary(await self._call("GET", "/v1/summary"))

    async def agents(self) -> list[AgentInfo]:
        """The agents the server knows, with their input schemas and live workers."""
        return [decode.agent(doc) for doc in await self._call("GET", "/v1/agents")]

    # -- outgoing webhooks (an admin key's) -------------------------------------------------

    async def create_webhook(
        self,
        url: str,
        events: Sequence[str | WebhookEvent],
        *,
        tenant: str | None = None,
    ) -> Webhook:
        """Subscribe ``url`` to ``events`` of the key's tenant's jobs. The answer's
        ``secret`` signs every delivery and is never shown again."""
        body: dict[str, Any] = {"url": url, "events": [str(e) for e in events]}
        if tenant is not None:
            body["tenant"] = tenant
        return decode.webhook(await self._call("POST", "/v1/webhooks", json=body))

    async def webhooks(self, *, disabled: bool = False) -> list[Webhook]:
        """The tenant's subscriptions (``disabled``: deleted ones too), without secrets."""
        params = {"disabled": "true"} if disabled else {}
        return [decode.webhook(d) for d in await self._call("GET", "/v1/webhooks", params=params)]

    async def delete_webhook(self, webhook_id: str) -> Webhook:
        """Delete a subscription: nothing more is sent to it."""
        path = f"/v1/webhooks/{webhook_id}"
        return decode.webhook(await self._call("DELETE", path, webhook_id=webhook_id))

    async def deliveries(
        self,
        webhook_id: str | None = None,
        *,
        state: DeliveryState | str | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        """Deliveries newest first (of one subscription, or all of the tenant's), each
        with every try."""
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            params["state"] = DeliveryState(state).value
        path = "/v1/webhooks/deliveries"
        if webhook_id is not None:
            path = f"/v1/webhooks/{webhook_id}/deliveries"
        found = await self._call("GET", path, params=params, webhook_id=webhook_id)
        return [decode.delivery(d) for d in found]
