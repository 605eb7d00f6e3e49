"""What operators and approvers act on across jobs: approvals, in-doubt effects, verification,
export, a summary of the jobs, the agents and tools served, and the health checks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from aetheris.api.auth import Action, require, visible_job
from aetheris.api.jobs import Aetheris, Caller, JobId
from aetheris.api.schemas import (
    NAME,
    AgentOut,
    ApprovalOut,
    Decision,
    EffectOut,
    Health,
    JobOut,
    Resolve,
    SignalOut,
    SummaryOut,
    ToolOut,
    VerifyOut,
    iso,
)
from aetheris.audit import verify_job
from aetheris.bundle import export_bundle
from aetheris.store.port import EffectState, JobStatus, ParkReason

router = APIRouter(prefix="/v1", tags=["operations"])
SEQ_PATH = Path(ge=0, le=2**31 - 1, description="The effect's position in the journal.")
health = APIRouter(tags=["health"])


@router.get("/approvals", response_model=list[ApprovalOut])
async def approvals(
    app: Aetheris, caller: Caller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ApprovalOut]:
    """Approval requests waiting for a person, oldest first, with exactly what to approve."""
    require(caller, Action.READ)
    parked = await app.list_jobs(
        status=JobStatus.PARKED,
        park_reason=ParkReason.APPROVAL,
        tenant=caller.tenant,
        limit=100_000,
    )
    waiting = sorted(parked, key=lambda j: j.updated_at)[:limit]
    return [
        ApprovalOut(
            job_id=j.id,
            agent=j.agent,
            name=(j.park_detail or {}).get("name"),
            position=(j.park_detail or {}).get("position"),
            args_hash=(j.park_detail or {}).get("args_hash"),
            request=j.park_detail or {},
            since=iso(j.updated_at),
        )
        for j in waiting
    ]


def _decision(approved: bool) -> None:
    async def decide(job_id: JobId, app: Aetheris, caller: Caller, body: Decision) -> SignalOut:
        require(caller, Action.DECIDE)
        await visible_job(app, caller, job_id)
        if approved:
            signal = await app.approve(
                job_id,
                position=body.position,
                by=caller.actor,
                comment=body.comment,
                args_hash=body.args_hash,
            )
        else:
            signal = await app.reject(
                job_id,
                position=body.position,
                by=caller.actor,
                reason=body.comment,
                args_hash=body.args_hash,
            )
        return SignalOut.of(signal)

    verb = "approve" if approved else "reject"
    router.add_api_route(
        f"/jobs/{{job_id}}/{verb}",
        decide,
        methods=["POST"],
        response_model=SignalOut,
        name=f"{verb}_job",
        description=f"{verb.capitalize()} the job's pending approval request "
        "(args_hash: what was reviewed; comment: recorded, and a rejection's reason).",
    )


_decision(True)
_decision(False)


@router.get("/effects", response_model=list[EffectOut])
async def effects(
    app: Aetheris,
    caller: Caller,
    state: EffectState | None = None,
    job_id: Annotated[str | None, Query(pattern=NAME)] = None,
) -> list[EffectOut]:
    """Ledger rows of the tenant's jobs (``state=in_doubt``: those an operator must settle)."""
    require(caller, Action.READ)
    store = await app.open_store()
    rows = await store.effects(
        job_id=job_id, states=[state] if state else None, tenant=caller.tenant
    )
    return [EffectOut.of(e) for e in rows]


@router.post("/jobs/{job_id}/effects/{position}/resolve", response_model=JobOut)
async def resolve(
    job_id: JobId,
    position: Annotated[int, SEQ_PATH],
    body: Resolve,
    app: Aetheris,
    caller: Caller,
) -> JobOut:
    """Settle an in-doubt effect: it happened (with ``result``), did not, or failed."""
    require(caller, Action.RESOLVE)
    await visible_job(app, caller, job_id)
    job = await app.resolve_effect(
        job_id,
        position,
        committed=body.outcome == "committed",
        result=body.result,
        not_executed=body.outcome == "not_executed",
        fail=body.outcome == "fail",
        reason=body.reason,
        by=caller.actor,
    )
    return JobOut.of(job, owner=caller.sees_workers)


@router.get("/jobs/{job_id}/verify", response_model=VerifyOut)
async def verify(job_id: JobId, app: Aetheris, caller: Caller) -> VerifyOut:
    """Verify the job: its hash chain, the signatures that anchor it (with the keys the server
    trusts: ``AETHERIS_TRUSTED_KEYS`` and its own signing key's), its blobs, and its status,
    result, error and ledger against its journal. Never repairs anything."""
    require(caller, Action.READ)
    await visible_job(app, caller, job_id)
    verdict = await verify_job(await app.open_store(view="raw"), job_id, app.trusted_keys)
    return VerifyOut.of(verdict)


@router.get("/jobs/{job_id}/export", response_class=JSONResponse)
async def export(job_id: JobId, app: Aetheris, caller: Caller) -> dict[str, Any]:
    """The job's evidence bundle: journal (exact bytes and anchors), ledger, approvals, blobs
    and a manifest with their hashes, signed when the server has a signing key."""
    require(caller, Action.READ)
    await visible_job(app, caller, job_id)
    return await export_bundle(await app.open_store(view="raw"), job_id, signer=app.signing_key)


@router.get("/summary", response_model=SummaryOut)
async def summary(app: Aetheris, caller: Caller) -> SummaryOut:
    """The tenant's jobs by status, its oldest pending job and its effects in doubt."""
    require(caller, Action.READ)
    counts = await (await app.open_store()).summary(tenant=caller.tenant)
    return SummaryOut(
        jobs={s.value: counts.jobs.get(s, 0) for s in JobStatus},
        oldest_pending_at=iso(counts.oldest_pending_at),
        in_doubt=counts.in_doubt,
    )


@router.get("/agents", response_model=list[AgentOut])
async def agents(app: Aetheris, caller: Caller) -> list[AgentOut]:
    """The agents known here (defined by the server's App or registered by workers)."""
    require(caller, Action.READ)
    store = await app.open_store()
    live = [w for w in await store.workers() if w.alive]
    names = sorted({*await store.agents(), *app.agents})
    shown = []
    for name in names:
        schema = await store.agent_input_schema(name)
        if schema is None and name in app.agents:
            schema = app.agents[name].input_schema()
        serving = sum(1 for w in live if w.serves(name))
        shown.append(AgentOut(name=name, input_schema=schema, workers=serving))
    return shown


@router.get("/tools", response_model=list[ToolOut])
async def tools(app: Aetheris, caller: Caller) -> list[ToolOut]:
    """The tools the server's App defines, with their effect class."""
    require(caller, Action.READ)
    return [
        ToolOut(
            name=t.name,
            effect=t.effect.value,
            requires_approval=t.requires_approval,
            reconcile=t.reconcile is not None,
            compensate=t.compensate is not None,
        )
        for t in sorted(app.tools.values(), key=lambda t: t.name)
    ]


@health.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@health.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(app: Aetheris) -> Any:
    """The database answers and its schema is this code's."""
    try:
        state = await (await app.open_store(migrate=False)).schema()
    except Exception as exc:  # any reason at all: not ready, and say why
        return JSONResponse(Health(status="unavailable", detail=str(exc)).model_dump(), 503)
    if not state.up_to_date:
        detail = f"schema version {state.current}, this code needs {state.latest}"
        return JSONResponse(Health(status="unavailable", detail=detail).model_dump(), 503)
    return Health(status="ok")
