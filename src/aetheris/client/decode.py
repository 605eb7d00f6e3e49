"""The API's JSON back into the runtime's own models and errors.

A response body becomes the frozen model :class:`~aetheris.App` returns for the same question
(:class:`~aetheris.Job`, :class:`~aetheris.Signal`, ...), and an error body
(``{"error": {"code", "message", "details"}}``) becomes the exception ``App`` raises for the
same refusal, so code written against one works against the other. Times travel as ISO-8601
strings to the millisecond and come back as Unix seconds.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx

from aetheris.audit import Verdict
from aetheris.errors import (
    AetherisError,
    AuthError,
    Conflict,
    IdempotencyConflict,
    InvalidInput,
    JobNotFound,
    PermissionDenied,
    ServerError,
    StoreUnavailable,
    UnknownAgent,
    WebhookNotFound,
)
from aetheris.journal import Event, EventType
from aetheris.models import (
    DEFAULT_TENANT,
    Control,
    DeliveryAttempt,
    DeliveryState,
    Effect,
    EffectClass,
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


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """An approval request waiting for a person: approve exactly ``args_hash`` of ``name``
    at ``position`` of job ``job_id``. ``request`` is what the job parked with."""

    job_id: str
    agent: str
    name: str | None
    position: int | None
    args_hash: str | None
    request: dict[str, Any]
    since: float | None


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """An agent the server knows: its input schema, and how many live workers serve it."""

    name: str
    input_schema: dict[str, Any] | None
    workers: int


def stamp(text: str | None) -> float | None:
    """An ISO-8601 time as Unix seconds (``None`` stays ``None``)."""
    if text is None:
        return None
    when = dt.datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def _required(text: str | None) -> float:
    return stamp(text) or 0.0


def job(doc: dict[str, Any]) -> Job:
    reason, control = doc.get("park_reason"), doc.get("control")
    return Job(
        id=doc["id"],
        agent=doc["agent"],
        input=doc.get("input") or {},
        status=JobStatus(doc["status"]),
        park_reason=ParkReason(reason) if reason else None,
        park_detail=doc.get("park_detail"),
        result=doc.get("result"),
        error=doc.get("error"),
        idempotency_key=doc.get("idempotency_key"),
        queue=doc.get("queue", "default"),
        priority=doc.get("priority", 0),
        lease_epoch=doc.get("lease_epoch", 0),
        lease_owner=doc.get("lease_owner"),
        lease_expires_at=stamp(doc.get("lease_expires_at")),
        run_at=_required(doc.get("run_at") or doc.get("created_at")),
        attempts=doc.get("attempts", 0),
        event_count=doc.get("events", 0),
        head_hash=doc.get("head_hash", ""),
        created_at=_required(doc.get("created_at")),
        updated_at=_required(doc.get("updated_at")),
        wake_on=doc.get("wake_on"),
        wake_at=stamp(doc.get("wake_at")),
        parent_id=doc.get("parent_id"),
        control=Control(control) if control else None,
        control_by=doc.get("control_by"),
        deadline=stamp(doc.get("deadline")),
        recoveries=doc.get("recoveries", 0),
        tenant=doc.get("tenant", DEFAULT_TENANT),
        code_version=doc.get("code_version"),
    )


def event(job_id: str, doc: dict[str, Any]) -> Event:
    """A journal event as the API shows it. ``body`` (the exact stored bytes) stays on the
    server: ``Client.verify`` checks the chain there, and ``Client.export`` brings the bytes."""
    return Event(
        job_id=job_id,
        seq=doc["seq"],
        type=EventType(doc["type"]),
        position=doc.get("position"),
        at=_required(doc.get("at")),
        data=doc.get("data") or {},
        prev_hash=doc.get("prev_hash", ""),
        hash=doc.get("hash", ""),
        body=b"",
    )


def signal(doc: dict[str, Any]) -> Signal:
    return Signal(
        job_id=doc["job_id"],
        seq=doc["seq"],
        name=doc["name"],
        signal_id=doc["signal_id"],
        payload=doc.get("payload"),
        sender=doc.get("sender"),
        created_at=_required(doc.get("created_at")),
        consumed_position=doc.get("consumed_position"),
    )


def effect(doc: dict[str, Any]) -> Effect:
    return Effect(
        job_id=doc["job_id"],
        position=doc["position"],
        tool=doc["tool"],
        effect=EffectClass(doc["effect"]),
        args_hash=doc["args_hash"],
        idempotency_key=doc["idempotency_key"],
        state=EffectState(doc["state"]),
        result=doc.get("result"),
        error=doc.get("error"),
        attempt=doc.get("attempt", 1),
        created_at=_required(doc.get("created_at")),
        updated_at=_required(doc.get("updated_at")),
    )


def approval(doc: dict[str, Any]) -> PendingApproval:
    return PendingApproval(
        job_id=doc["job_id"],
        agent=doc["agent"],
        name=doc.get("name"),
        position=doc.get("position"),
        args_hash=doc.get("args_hash"),
        request=doc.get("request") or {},
        since=stamp(doc.get("since")),
    )


def agent(doc: dict[str, Any]) -> AgentInfo:
    return AgentInfo(doc["name"], doc.get("input_schema"), int(doc.get("workers", 0)))


def webhook(doc: dict[str, Any]) -> Webhook:
    """A subscription; its ``secret`` is ``""`` unless this is the answer that made it."""
    return Webhook(
        id=doc["id"],
        tenant=doc["tenant"],
        url=doc["url"],
        secret=doc.get("secret") or "",
        events=tuple(WebhookEvent(e) for e in doc["events"]),
        created_at=_required(doc.get("created_at")),
        disabled_at=stamp(doc.get("disabled_at")),
    )


def delivery(doc: dict[str, Any]) -> WebhookDelivery:
    return WebhookDelivery(
        id=doc["id"],
        webhook_id=doc["webhook_id"],
        tenant=doc["tenant"],
        job_id=doc["job_id"],
        agent=doc["agent"],
        job_status=JobStatus(doc["job_status"]),
        event_id=doc["event_id"],
        event_type=WebhookEvent(doc["event_type"]),
        payload=doc.get("payload") or {},
        created_at=_required(doc.get("created_at")),
        state=DeliveryState(doc["state"]),
        attempts=doc.get("attempts", 0),
        next_at=_required(doc.get("next_at")),
        last_status=doc.get("last_status"),
        last_error=doc.get("last_error"),
        delivered_at=stamp(doc.get("delivered_at")),
        log=tuple(
            DeliveryAttempt(
                _required(a.get("at")),
                a.get("status"),
                a.get("error"),
                a.get("duration", 0.0),
                a.get("retry_in"),
            )
            for a in doc.get("log") or ()
        ),
    )


def verdict(doc: dict[str, Any]) -> Verdict:
    """A verification's verdict, as the server gives it (fields it does not send: none)."""
    return Verdict(
        job_id=doc["job_id"],
        ok=doc["ok"],
        events=doc["events"],
        head=doc["head"],
        anchored=doc.get("anchored", False),
        key_id=doc.get("key_id"),
        problem=doc.get("problem"),
        seq=doc.get("seq"),
        position=doc.get("position"),
        check=doc.get("check"),
        note=doc.get("note"),
    )


# -- errors ------------------------------------------------------------------------------------

_SIMPLE: dict[str, type[AetherisError]] = {
    "idempotency_conflict": IdempotencyConflict,
    "conflict": Conflict,
    "invalid_input": InvalidInput,
    "bad_request": InvalidInput,
    "payload_too_large": InvalidInput,
    "unavailable": StoreUnavailable,
}


def _body(response: httpx.Response) -> tuple[str, str, dict[str, Any]] | None:
    try:
        doc = response.json()["error"]
        return str(doc["code"]), str(doc["message"]), dict(doc.get("details") or {})
    except (ValueError, KeyError, TypeError):
        return None


def _explained(message: str, details: dict[str, Any]) -> str:
    problems = details.get("errors")
    if not isinstance(problems, list) or not problems:
        return message
    said = "; ".join(f"{p.get('at')}: {p.get('problem')}" for p in problems if isinstance(p, dict))
    return f"{message}: {said}" if said else message


def error(
    response: httpx.Response,
    *,
    job_id: str | None = None,
    agent: str | None = None,
    webhook_id: str | None = None,
) -> AetherisError:
    """The exception for an error response (``job_id``, ``agent``, ``webhook_id``: what the
    request named)."""
    where = str(response.request.url.copy_with(query=None))
    parsed = _body(response)
    if parsed is None:
        return ServerError(
            f"{response.status_code} from {where}, not an Aetheris API answer: is the URL "
            "that of an Aetheris server?",
            status=response.status_code,
        )
    code, message, details = parsed
    found: AetherisError
    if code == "unauthorized":
        found = AuthError(f"{message} (server {response.request.url.host})")
    elif code == "forbidden":
        found = PermissionDenied(message, role=details.get("role"), action=details.get("action"))
    elif code == "not_found" and job_id is not None:
        found = JobNotFound(str(details.get("job_id") or job_id))
    elif code == "not_found" and webhook_id is not None:
        found = WebhookNotFound(webhook_id)
    elif code == "unknown_agent" and agent is not None:
        found = UnknownAgent(agent)
    elif code in _SIMPLE:
        found = _SIMPLE[code](_explained(message, details))
    else:
        found = ServerError(
            f"{response.status_code} {code}: {message}", status=response.status_code
        )
    if isinstance(found, JobNotFound | UnknownAgent):
        found.args = (message,)  # the server's words (they list the known agents)
    return found


def summary(doc: dict[str, Any]) -> Summary:
    jobs = {JobStatus(status): n for status, n in doc["jobs"].items() if n}
    return Summary(jobs, stamp(doc.get("oldest_pending_at")), int(doc["in_doubt"]))
