"""Jobs over HTTP: start, list, read, control, signal, raise a budget, and their journal
(as JSON pages and as a live server-sent-events stream that resumes from ``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from aetheris.agents import new_job_id
from aetheris.api.auth import Action, Principal, identify, require, visible_job
from aetheris.api.errors import ApiError
from aetheris.api.schemas import (
    NAME,
    EventOut,
    EventPage,
    ForkJob,
    JobIds,
    JobOut,
    JobPage,
    RaiseBudget,
    SendSignal,
    SignalOut,
    StartJob,
)
from aetheris.app import App
from aetheris.forking import UNSET
from aetheris.journal import Event
from aetheris.store.port import JobStatus, ParkReason

router = APIRouter(prefix="/v1", tags=["jobs"])
Caller = Annotated[Principal, Depends(identify)]
JobId = Annotated[str, Path(pattern=NAME, description="The job's id.")]
SEQ_MAX = 2**62
KEEP_ALIVE = 15.0  # seconds between comments on a quiet stream, so proxies keep it open


def aetheris(request: Request) -> App:
    app: App = request.app.state.aetheris
    return app


Aetheris = Annotated[App, Depends(aetheris)]


@router.post("/jobs", status_code=201, response_model=JobOut)
async def start_job(
    body: StartJob,
    response: Response,
    app: Aetheris,
    caller: Caller,
    idempotency_key: Annotated[str | None, Header(pattern=NAME)] = None,
) -> JobOut:
    """Start a job (201); with an ``Idempotency-Key`` seen before in this tenant, the job it
    started (200)."""
    require(caller, Action.START)
    job_id = new_job_id(app.clock)
    handle = await app.start(
        body.agent,
        body.input,
        job_id=job_id,
        idempotency_key=idempotency_key,
        queue=body.queue,
        priority=body.priority,
        budget=body.budget.model_dump() if body.budget else None,
        tenant=caller.home_tenant,
    )
    if handle.job_id != job_id:
        response.status_code = 200
    return JobOut.of(await app.get_job(handle.job_id), owner=caller.sees_workers)


def _cursor(text: str | None) -> tuple[float, str] | None:
    if text is None:
        return None
    try:
        at, job_id = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
        return float(at), str(job_id)
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise ApiError(400, "bad_request", "cursor is not one this server gave") from None


def _next_cursor(jobs: list[JobOut], at: list[float], limit: int) -> str | None:
    if len(jobs) < limit:
        return None
    return base64.urlsafe_b64encode(json.dumps([at[-1], jobs[-1].id]).encode()).decode()


@router.get("/jobs", response_model=JobPage)
async def list_jobs(
    app: Aetheris,
    caller: Caller,
    status: JobStatus | None = None,
    agent: Annotated[str | None, Query(pattern=NAME)] = None,
    park_reason: ParkReason | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    idempotency_key: Annotated[str | None, Query(pattern=NAME)] = None,
) -> JobPage:
    """The tenant's jobs, newest first, a page at a time (``next_cursor``); with
    ``idempotency_key``, the job started with that key, if any."""
    require(caller, Action.READ)
    jobs = await app.list_jobs(
        status=status,
        limit=limit,
        agent=agent,
        tenant=caller.tenant,
        park_reason=park_reason,
        since=_stamp(created_after),
        until=_stamp(created_before),
        after=_cursor(cursor),
        idempotency_key=idempotency_key,
    )
    shown = [JobOut.of(j, owner=caller.sees_workers) for j in jobs]
    return JobPage(jobs=shown, next_cursor=_next_cursor(shown, [j.created_at for j in jobs], limit))


def _stamp(when: dt.datetime | None) -> float | None:
    if when is None:
        return None
    try:
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
    except (OverflowError, ValueError, OSError):
        raise ApiError(422, "invalid_input", f"time out of range: {when}") from None


@router.get("/job-ids", response_model=JobIds)
async def find_job_ids(
    app: Aetheris,
    caller: Caller,
    prefix: Annotated[str, Query(pattern=NAME, description="The start of a job's id.")],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> JobIds:
    """Ids of the tenant's jobs that start with ``prefix``, in id order: how a client takes
    the start of an id, as git takes the start of a commit's."""
    require(caller, Action.READ)
    store = await app.open_store()
    return JobIds(ids=await store.find_jobs(prefix, limit=limit, tenant=caller.tenant))


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: JobId, app: Aetheris, caller: Caller) -> JobOut:
    require(caller, Action.READ)
    return JobOut.of(await visible_job(app, caller, job_id), owner=caller.sees_workers)


def _control(action: str, doc: str) -> None:
    async def control(job_id: JobId, app: Aetheris, caller: Caller) -> JobOut:
        require(caller, Action.CONTROL)
        await visible_job(app, caller, job_id)
        job = await getattr(app, action)(job_id, by=caller.actor)
        return JobOut.of(job, owner=caller.sees_workers)

    router.add_api_route(
        f"/jobs/{{job_id}}/{action}",
        control,
        methods=["POST"],
        response_model=JobOut,
        name=f"{action}_job",
        description=doc,
    )


_control("cancel", "Cancel a job and its children; compensations run.")
_control("pause", "Park a job at its next durable operation.")
_control("resume", "Resume a paused job.")


@router.post("/jobs/{job_id}/signals/{name}", response_model=SignalOut)
async def send_signal(
    job_id: JobId,
    name: Annotated[str, Path(pattern=NAME)],
    app: Aetheris,
    caller: Caller,
    body: SendSignal | None = None,
) -> SignalOut:
    """Put a signal in the job's inbox; the same ``signal_id`` is delivered once."""
    require(caller, Action.SIGNAL)
    await visible_job(app, caller, job_id)
    body = body or SendSignal()
    sent: set[str] = set()
    if body.signal_id is not None:  # sent before? then this is the first one, not a new one
        inbox = await (await app.open_store()).signals(job_id, pending=False)
        sent = {s.signal_id for s in inbox}
    signal = await app.signal(
        job_id, name, body.data, signal_id=body.signal_id, sender=caller.actor
    )
    return SignalOut.of(signal, created=signal.signal_id not in sent)


@router.post("/jobs/{job_id}/fork", status_code=201, response_model=JobOut)
async def fork_job(job_id: JobId, body: ForkJob, app: Aetheris, caller: Caller) -> JobOut:
    """A new job of the tenant that replays this job's first ``at`` entries for free, then runs
    live; with ``output``, entry ``at`` too, its result replaced. The origin must not be
    running (pause it first)."""
    require(caller, Action.START)
    await visible_job(app, caller, job_id)
    output = body.output if "output" in body.model_fields_set else UNSET
    handle = await app.fork(job_id, body.at, output=output, by=caller.actor)
    return JobOut.of(await app.get_job(handle.job_id), owner=caller.sees_workers)


@router.post("/jobs/{job_id}/budget", response_model=SignalOut)
async def raise_budget(
    job_id: JobId, body: RaiseBudget, app: Aetheris, caller: Caller
) -> SignalOut:
    """New budget limits for the job's model calls; a job parked for its budget resumes."""
    require(caller, Action.BUDGET)
    await visible_job(app, caller, job_id)
    signal = await app.raise_budget(job_id, tokens=body.tokens, cost=body.cost, sender=caller.actor)
    return SignalOut.of(signal)


@router.get("/jobs/{job_id}/events", response_model=EventPage)
async def events(
    job_id: JobId,
    app: Aetheris,
    caller: Caller,
    after: Annotated[int, Query(ge=-1, le=SEQ_MAX, description="Events after this seq.")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> EventPage:
    """A page of the job's journal, in order, from the event after ``after``."""
    require(caller, Action.READ)
    await visible_job(app, caller, job_id)
    found = await (await app.open_store()).events(job_id, after=after, limit=limit + 1)
    page = found[:limit]
    more = len(found) > limit
    return EventPage(
        events=[EventOut.of(e) for e in page], next_after=page[-1].seq if more else None
    )


def _last_event_id(header: str | None, after: int) -> int:
    if header is None:
        return after
    try:
        seen = int(header.strip())
    except ValueError:
        raise ApiError(400, "bad_request", "Last-Event-ID is not an event seq") from None
    if not -1 <= seen <= SEQ_MAX:
        raise ApiError(400, "bad_request", "Last-Event-ID is out of range")
    return seen


@router.get(
    "/jobs/{job_id}/events/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_events(
    job_id: JobId,
    request: Request,
    app: Aetheris,
    caller: Caller,
    after: Annotated[int, Query(ge=-1, le=SEQ_MAX)] = -1,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    """Server-sent events: one per journal event (``id`` its seq, ``event`` its type), live,
    until the job ends (then an ``end`` event). Reconnect with ``Last-Event-ID`` to resume."""
    require(caller, Action.READ)
    await visible_job(app, caller, job_id)
    start = _last_event_id(last_event_id, after)
    poll = float(request.app.state.poll_interval)
    return StreamingResponse(
        _sse(app, job_id, start, poll),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _frame(event: Event) -> str:
    data = EventOut.of(event).model_dump_json()
    return f"id: {event.seq}\nevent: {event.type.value}\ndata: {data}\n\n"


async def _sse(app: App, job_id: str, after: int, poll: float) -> AsyncIterator[str]:
    store = await app.open_store()
    quiet = 0.0
    yield "retry: 1000\n\n"
    while True:
        job = await store.get_job(job_id)  # first the status, then the events it implies
        behind = job is not None and job.event_count - 1 > after
        fresh = await store.events(job_id, after=after) if behind else []
        for event in fresh:
            yield _frame(event)
            after = event.seq
        if job is None or job.status.terminal:
            end: dict[str, Any] = {"status": job.status.value if job else None}
            yield f"event: end\ndata: {json.dumps(end)}\n\n"
            return
        quiet = 0.0 if fresh else quiet + poll
        if quiet >= KEEP_ALIVE:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll)
