"""What the web UI shows besides jobs and their journals, each a read of the tenant's own jobs:
counts by status, a job's timeline, its model calls with their messages, a replay check of its
journal against the server's code, and where two runs differ."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter

from aetheris.api.auth import Action, require, visible_job
from aetheris.api.errors import ApiError
from aetheris.api.jobs import Aetheris, Caller, JobId
from aetheris.api.schemas import (
    DiffOut,
    ModelCallOut,
    ModelCallsOut,
    PhaseOut,
    ReplayOut,
    SpendOut,
    StepOut,
    TimelineOut,
    iso,
)
from aetheris.diffing import diff_runs
from aetheris.journal import Event, EventType, decode
from aetheris.modelcalls import BLOB, conversation_of
from aetheris.replay import replay
from aetheris.timeline import model_spend, timeline

router = APIRouter(prefix="/v1", tags=["insight"])
REPLAY_TIMEOUT = 30.0  # seconds: the agent's code runs in the server's process


@router.get("/jobs/{job_id}/timeline", response_model=TimelineOut)
async def job_timeline(job_id: JobId, app: Aetheris, caller: Caller) -> TimelineOut:
    """The job's steps (start, end, state, tries) and phases (pending, run, parked, recovery),
    in seconds from its creation: see :mod:`aetheris.timeline`."""
    require(caller, Action.READ)
    job = await visible_job(app, caller, job_id)
    events = await (await app.open_store()).events(job_id)
    line = timeline(events, now=app.clock.time())
    return TimelineOut(
        job_id=job_id,
        status=job.status.value,
        created_at=iso(job.created_at),
        events=len(events),
        end=line.end,
        now=line.now,
        steps=[StepOut.of(s) for s in line.steps],
        phases=[PhaseOut.of(p) for p in line.phases],
        model_calls=SpendOut(**model_spend(events)),
    )


@router.get("/jobs/{job_id}/model-calls", response_model=ModelCallsOut)
async def model_calls(job_id: JobId, app: Aetheris, caller: Caller) -> ModelCallsOut:
    """The job's model calls with what they sent and got: messages by hash (each once, as
    they are stored), parameters and responses with their blobs read."""
    require(caller, Action.READ)
    await visible_job(app, caller, job_id)
    store = await app.open_store()
    events = [
        e
        for e in await store.events(job_id)
        if e.type is EventType.OP and e.data.get("kind") == "llm"
    ]
    blobs = await store.blobs(job_id) if events else {}
    messages: dict[str, Any] = {}
    calls = [_call(e, blobs, messages) for e in events]
    return ModelCallsOut(calls=calls, messages=messages, total=SpendOut(**model_spend(events)))


def _call(event: Event, blobs: Mapping[str, bytes], messages: dict[str, Any]) -> ModelCallOut:
    d = event.data
    sent, problem = conversation_of(d, blobs)
    for digest in sent:
        if digest not in messages:
            messages[digest] = _read(digest, blobs)
    asked = (d.get("request") or {}).get("params") or {}
    params = {k: _resolved(v, blobs) for k, v in asked.items()}
    usage = d.get("usage") or {}
    return ModelCallOut(
        seq=event.seq,
        position=event.position,
        name=str(d.get("name", "")),
        model=d.get("model"),
        provider=d.get("provider"),
        at=iso(event.at),
        duration_ms=d.get("duration_ms"),
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
        cost=d.get("cost"),
        params=params,
        messages=sent,
        response=_resolved(d.get("result"), blobs),
        error=d.get("error"),
        problem=problem,
    )


def _read(digest: str, blobs: Mapping[str, bytes]) -> Any:
    """A blob's JSON value (``None`` when it is not stored: ``verify`` says so)."""
    return decode(blobs[digest]) if digest in blobs else None


def _resolved(value: Any, blobs: Mapping[str, bytes]) -> Any:
    """A value as it was, with a ``{"$blob": hash}`` reference read from its blob."""
    if isinstance(value, dict) and set(value) == {BLOB} and value[BLOB] in blobs:
        return _read(value[BLOB], blobs)
    return value


@router.post("/jobs/{job_id}/replay", response_model=ReplayOut)
async def replay_job(job_id: JobId, app: Aetheris, caller: Caller) -> ReplayOut:
    """Replay the job's journal against the server's code, executing nothing (no tool, step
    or model call): does the code still make the recorded decisions? 422 ``unknown_agent``
    when the server's App does not define the job's agent."""
    require(caller, Action.READ)
    await visible_job(app, caller, job_id)
    try:
        async with asyncio.timeout(REPLAY_TIMEOUT):
            report = await replay(app, job_id)
    except TimeoutError:
        raise ApiError(
            503, "unavailable", f"the replay took over {REPLAY_TIMEOUT:.0f} s and was stopped"
        ) from None
    return ReplayOut(
        job_id=job_id,
        outcome=report.outcome,
        ok=report.ok,
        operations=report.operations,
        position=report.position,
        diff=report.diff,
        location=report.location,
        recorded_end=report.recorded_end,
        replayed_end=report.replayed_end,
    )


@router.get("/jobs/{job_id}/diff/{other_id}", response_model=DiffOut)
async def diff_jobs(job_id: JobId, other_id: JobId, app: Aetheris, caller: Caller) -> DiffOut:
    """Where run ``job_id`` (a) and run ``other_id`` (b) differ, position by position: the
    first divergence, every changed output, and how each ended (see :mod:`aetheris.diffing`).
    A fork and its origin is the usual pair. Both must be the caller's tenant's (else 404)."""
    require(caller, Action.READ)
    await visible_job(app, caller, job_id)
    await visible_job(app, caller, other_id)
    store = await app.open_store()
    found = diff_runs(job_id, await store.events(job_id), other_id, await store.events(other_id))
    return DiffOut.model_validate(found.to_json())
