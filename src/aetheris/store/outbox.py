"""The outbox of outgoing webhooks: which journal events others are told of, and what they say.

A subscription is told of a job's end, of a job parked for a person's approval, and of an
effect in doubt. Each of those is an event in the job's journal, so the outbox is written
where events are: every store calls :func:`notices` on the events it is about to insert and
puts one delivery row per matching subscription in the same transaction (the memory store in
``_append``, SQLite in ``_insert_events``, PostgreSQL in its commit statement and
``_append``). A write that is refused therefore sends nothing, and an event that is written is
never left unsent. Rejected: a separate pass that scans journals for new events (a cursor per
subscription to keep, and a crash between the scan and its cursor sends twice or never) and
triggers in the database (the payload would be written three times, once per dialect).

The event id, ``<job id>:<seq>``, is stable: the same on every retry and for every
subscription, so a receiver deduplicates on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.journal import Event, EventType
from aetheris.models import WebhookEvent

MESSAGE_LIMIT = 500  # characters of an error message repeated in a notice

_ENDS = {
    EventType.JOB_SUCCEEDED: WebhookEvent.JOB_COMPLETED,
    EventType.JOB_FAILED: WebhookEvent.JOB_FAILED,
    EventType.JOB_CANCELLED: WebhookEvent.JOB_CANCELLED,
    EventType.JOB_COMPENSATED: WebhookEvent.JOB_COMPENSATED,
}
_NOTABLE = frozenset({*_ENDS, EventType.JOB_PARKED, EventType.EFFECT_IN_DOUBT})


@dataclass(frozen=True, slots=True)
class Notice:
    """A notable event, as subscriptions are told of it (the job's agent, tenant and status
    are added from the job's row by the statement that writes the deliveries)."""

    job_id: str
    event_id: str
    type: WebhookEvent
    payload: dict[str, Any]
    at: float


def event_id(job_id: str, seq: int) -> str:
    return f"{job_id}:{seq}"


def notices(events: Sequence[Event]) -> list[Notice]:
    """The events among ``events`` that subscriptions are told of (most writes: none)."""
    found: list[Notice] = []
    for event in events:
        if event.type not in _NOTABLE:
            continue
        kind = _kind(event)
        if kind is not None:
            known = event_id(event.job_id, event.seq)
            found.append(Notice(event.job_id, known, kind, _payload(kind, event), event.at))
    return found


def _kind(event: Event) -> WebhookEvent | None:
    if event.type is EventType.JOB_PARKED:
        approval = event.data.get("reason") == "approval"
        return WebhookEvent.APPROVAL_REQUESTED if approval else None
    if event.type is EventType.EFFECT_IN_DOUBT:
        return WebhookEvent.EFFECT_IN_DOUBT
    return _ENDS.get(event.type)


def _payload(kind: WebhookEvent, event: Event) -> dict[str, Any]:
    """The event's facts, and a one-line summary that names no command and no link."""
    data = event.data
    if kind is WebhookEvent.APPROVAL_REQUESTED:
        return _approval(event.job_id, data.get("detail") or {})
    if kind is WebhookEvent.EFFECT_IN_DOUBT:
        tool = str(data.get("name"))
        return {
            "position": event.position,
            "tool": tool,
            "idempotency_key": data.get("idempotency_key"),
            "attempt": data.get("attempt"),
            "reason": data.get("reason"),
            "summary": f"job {event.job_id}: {tool} at position {event.position} may or may "
            "not have happened; an operator must resolve it",
        }
    if kind is WebhookEvent.JOB_COMPLETED:
        return {"summary": f"job {event.job_id} succeeded"}
    error = _error(data.get("error"))
    what = f": {error['type']}: {error['message']}" if error else ""
    return {"error": error, "summary": f"job {event.job_id} {_ENDED[kind]}{what}"}


_ENDED = {
    WebhookEvent.JOB_FAILED: "failed",
    WebhookEvent.JOB_CANCELLED: "was cancelled",
    WebhookEvent.JOB_COMPENSATED: "failed and its effects were compensated",
}


def _approval(job_id: str, detail: Mapping[str, Any]) -> dict[str, Any]:
    name = detail.get("name")
    return {
        "position": detail.get("position"),
        "approval": {
            "name": name,
            "request_id": detail.get("request_id"),
            "args_hash": detail.get("args_hash"),
            "payload": detail.get("payload"),
            "deadline": detail.get("deadline"),
            "escalated_to": detail.get("escalated_to"),
        },
        "summary": f"job {job_id} waits for an approval of {name!r}",
    }


def _error(error: Any) -> dict[str, Any] | None:
    """An error's type and message (cut short), never its traceback."""
    if not isinstance(error, Mapping):
        return None
    message = str(error.get("message", ""))
    if len(message) > MESSAGE_LIMIT:
        message = message[: MESSAGE_LIMIT - 1] + "…"
    return {"type": str(error.get("type", "Error")), "message": message}
