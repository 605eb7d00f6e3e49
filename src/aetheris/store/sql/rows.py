"""Rows in and out, for both SQL dialects: statement parameters from the port's models, and
models from result rows.

The dialects differ only in how a JSON value is stored: SQLite keeps canonical JSON bytes in a
BLOB, PostgreSQL a ``jsonb`` it is sent as text and returns decoded. :class:`Dialect` carries
that difference; everything else is written once here. Parameters always carry ``now`` (the
SQLite store's clock); PostgreSQL's statements ignore it and read the database clock instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.journal import GENESIS_HASH, Anchor, Event, canonical, decode, open_event
from aetheris.store._shared import summarize
from aetheris.store.outbox import Notice, notices
from aetheris.store.port import (
    ApiKey,
    AttemptOutcome,
    Commit,
    Control,
    DeliveryAttempt,
    DeliveryClaim,
    DeliveryState,
    Effect,
    EffectClass,
    EffectState,
    EffectWrite,
    Job,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    Role,
    Signal,
    StatusWrite,
    Summary,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    WorkerInfo,
)

Row = Any  # sqlite3.Row or a dict: both are read by column name


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database stores a JSON value: ``encode`` a value, ``decode`` a column."""

    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]

    def json(self, value: Any) -> Any:
        """``value`` encoded, or SQL NULL for ``None`` (where NULL means "not set")."""
        return self.encode(value) if value is not None else None


SQLITE = Dialect(
    "sqlite",
    encode=canonical,
    decode=lambda column: decode(column) if column is not None else None,
)
POSTGRESQL = Dialect(
    "postgresql",
    encode=lambda value: canonical(value).decode(),
    decode=lambda column: column,  # psycopg returns jsonb decoded
)


# -- parameters ------------------------------------------------------------------------------


def job_params(new: NewJob, d: Dialect, now: float) -> dict[str, Any]:
    return {
        "id": new.id,
        "agent": new.agent,
        "input": d.encode(new.input),
        "idempotency_key": new.idempotency_key,
        "queue": new.queue,
        "priority": new.priority,
        "run_at": new.run_at,  # NULL: now
        "head_hash": GENESIS_HASH,
        "parent_id": new.parent_id,
        "deadline": new.deadline,
        "tenant": new.tenant,
        "now": now,
    }


def worker_params(info: WorkerInfo, d: Dialect) -> dict[str, Any]:
    """A worker's row as it registers (``started_at`` is ``now`` then, else as registered)."""
    return {
        "id": info.id,
        "agents": d.encode(list(info.agents)),
        "queues": d.json(None if info.queues is None else list(info.queues)),
        "host": info.host,
        "pid": info.pid,
        "started_at": info.started_at,
        "now": info.last_seen,
    }


def status_params(job_id: str, write: StatusWrite | None, d: Dialect, now: float) -> dict[str, Any]:
    """A status change; with ``write=None`` (a commit that leaves the status) all NULL."""
    if write is None:
        unset = ("status", "park_reason", "park_detail", "result", "error", "run_at")
        return {"id": job_id, **dict.fromkeys(unset), "wake_on": None, "wake_at": None,
                "recovery": 0, "now": now}  # fmt: skip
    return {
        "id": job_id,
        "status": write.status.value,
        "park_reason": write.park_reason.value if write.park_reason else None,
        "park_detail": d.json(write.park_detail),
        "result": d.encode(write.result),
        "error": d.json(write.error),
        "run_at": write.run_at,  # NULL: now
        "wake_on": write.wake_on,
        "wake_at": write.wake_at,
        "recovery": int(write.recovery),
        "now": now,
    }


def effect_params(job_id: str, write: EffectWrite, d: Dialect, now: float) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "position": write.position,
        "tool": write.tool,
        "effect": write.effect.value,
        "args_hash": write.args_hash,
        "idempotency_key": write.idempotency_key,
        "state": write.state.value,
        "result": d.encode(write.result),
        "error": d.json(write.error),
        "attempt": write.attempt,
        "expect": write.expect.value if write.expect else None,
        "now": now,
    }


def effect_columns(writes: Sequence[EffectWrite], d: Dialect) -> dict[str, list[Any]]:
    """Ledger rows as one array per column (a statement that writes them all at once)."""
    return {
        "e_positions": [w.position for w in writes],
        "e_expects": [w.expect.value if w.expect else None for w in writes],
        "e_tools": [w.tool for w in writes],
        "e_effects": [w.effect.value for w in writes],
        "e_args": [w.args_hash for w in writes],
        "e_keys": [w.idempotency_key for w in writes],
        "e_states": [w.state.value for w in writes],
        "e_results": [d.encode(w.result) for w in writes],
        "e_errors": [d.json(w.error) for w in writes],
        "e_attempts": [w.attempt for w in writes],
    }


def event_columns(sealed: Sequence[Event]) -> dict[str, list[Any]]:
    """Events as one array per column (a statement that inserts them all at once)."""
    return {
        "seqs": [e.seq for e in sealed],
        "types": [e.type.value for e in sealed],
        "positions": [e.position for e in sealed],
        "bodies": [e.body for e in sealed],
        "prevs": [e.prev_hash for e in sealed],
        "hashes": [e.hash for e in sealed],
        "a_keys": [e.anchor.key_id if e.anchor else None for e in sealed],
        "a_sigs": [e.anchor.signature if e.anchor else None for e in sealed],
    }


def claim_event_params(job: Job, sealed: Sequence[Event]) -> dict[str, Any]:
    """The ``claim_event`` statement's parameters: the claim's event, fenced on the epoch the
    claim set (``job`` as the claim returned it) and the head it read."""
    return {
        **event_columns(sealed),
        "id": job.id,
        "epoch": job.lease_epoch,
        "expect": job.event_count,
        "count": job.event_count + 1,
        "hash": sealed[-1].hash,
    }


def event_row(event: Event) -> dict[str, Any]:
    """One event's parameters (a statement that inserts one row, run once per event)."""
    return {
        "job_id": event.job_id,
        "seq": event.seq,
        "type": event.type.value,
        "position": event.position,
        "body": event.body,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "anchor_key": event.anchor.key_id if event.anchor else None,
        "anchor_sig": event.anchor.signature if event.anchor else None,
    }


def event_from(job_id: str, row: Sequence[Any]) -> Event:
    """An event read back: its stored bytes, hashes and anchor, from a row of the ``events``
    query by position (seq, body, prev_hash, hash, anchor_key, anchor_sig): a resume reads
    every event of the journal, and a tuple row is cheaper to build than a mapping."""
    seq, body, prev_hash, stored_hash, key, sig = row
    return open_event(
        job_id,
        seq,
        body if type(body) is bytes else bytes(body),
        prev_hash,
        stored_hash,
        Anchor(key, sig) if key is not None and sig is not None else None,
    )


def list_params(
    status: JobStatus | None,
    agent: str | None,
    since: float | None,
    limit: int,
    **more: Any,
) -> dict[str, Any]:
    """A listing's filters (``more``: ``tenant``, ``park_reason``, ``until``, ``after``,
    ``idempotency_key``)."""
    reason, after = more.get("park_reason"), more.get("after")
    return {
        "status": status.value if status else None,
        "agent": agent,
        "since": since,
        "limit": limit,
        "tenant": more.get("tenant"),
        "park_reason": reason.value if reason else None,
        "until": more.get("until"),
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "idempotency_key": more.get("idempotency_key"),
    }


def key_params(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "role": key.role.value,
        "secret_hash": key.secret_hash,
        "name": key.name,
        "created_at": key.created_at,
    }


def key_from(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        tenant=row["tenant"],
        role=Role(row["role"]),
        secret_hash=row["secret_hash"],
        name=row["name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def commit_params(lease: Lease, commit: Commit, sealed: Sequence[Event]) -> dict[str, Any]:
    """PostgreSQL's one-statement commit: fence, head, status, ledger rows and events."""
    assert commit.head is not None
    params = status_params(lease.job_id, commit.status, POSTGRESQL, 0.0)
    params["epoch"] = lease.epoch
    params["expect"] = commit.head.count
    params["count"] = commit.head.count + len(sealed)
    params["hash"] = sealed[-1].hash if sealed else commit.head.hash
    params["code"] = commit.code_version
    params.update(effect_columns(commit.effects, POSTGRESQL))
    params.update(event_columns(sealed))
    params.update(blob_columns(commit.blobs))
    params.update(notice_columns(notices(sealed)))
    # An empty or all-NULL array goes as NULL: in the statement's multi-argument unnest() a NULL
    # array is an empty one (no rows, or NULLs beside the longer arrays), and psycopg sends a
    # NULL without walking a list to find its element type (a pure step leaves 16 of its 24
    # arrays empty or NULL: the ledger's, the blobs', the webhooks' and the anchors').
    for name, value in params.items():
        if type(value) is list and value.count(None) == len(value):
            params[name] = None
    return params


# What a commit of one pure step or model call leaves empty: its status, ledger rows, webhook
# notices and anchors (see commit_form).
_STEP_EMPTY = ("status", "e_positions", "n_ids", "a_keys")


def commit_form(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement of a commit and its parameters: ``commit_step`` (14 parameters, the
    event's as scalars) for the most common write, one event and its blobs if any (a pure
    step, a model call), else ``commit`` (39, most of them arrays). Fewer parameters to dump
    and bind: the worker's CPU is most of a PostgreSQL step's time."""
    seqs = params["seqs"]
    if seqs is None or len(seqs) != 1 or any(params[n] is not None for n in _STEP_EMPTY):
        return "commit", params
    return "commit_step", {
        "id": params["id"],
        "epoch": params["epoch"],
        "expect": params["expect"],
        "count": params["count"],
        "hash": params["hash"],
        "code": params["code"],
        "recovery": params["recovery"],
        "seq": params["seqs"][0],
        "type": params["types"][0],
        "position": params["positions"][0],
        "body": params["bodies"][0],
        "prev": params["prevs"][0],
        "b_hashes": params["b_hashes"],
        "b_bodies": params["b_bodies"],
    }


def blob_columns(blobs: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """Blobs as PostgreSQL arrays (``b_hashes``, ``b_bodies``)."""
    return {"b_hashes": [h for h, _ in blobs], "b_bodies": [b for _, b in blobs]}


# -- models from rows --------------------------------------------------------------------------


def job_from(row: Row, d: Dialect) -> Job:
    return Job(
        id=row["id"],
        agent=row["agent"],
        input=d.decode(row["input"]),
        status=JobStatus(row["status"]),
        park_reason=ParkReason(row["park_reason"]) if row["park_reason"] else None,
        park_detail=d.decode(row["park_detail"]),
        result=d.decode(row["result"]),
        error=d.decode(row["error"]),
        idempotency_key=row["idempotency_key"],
        queue=row["queue"],
        priority=row["priority"],
        lease_epoch=row["lease_epoch"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        run_at=row["run_at"],
        attempts=row["attempts"],
        event_count=row["event_count"],
        head_hash=row["head_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        wake_on=row["wake_on"],
        wake_at=row["wake_at"],
        parent_id=row["parent_id"],
        control=Control(row["control"]) if row["control"] else None,
        control_by=row["control_by"],
        deadline=row["deadline"],
        recoveries=row["recoveries"],
        tenant=row["tenant"],
        code_version=row["code_version"],
    )


def signal_from(row: Row, d: Dialect) -> Signal:
    return Signal(
        job_id=row["job_id"],
        seq=row["seq"],
        name=row["name"],
        signal_id=row["signal_id"],
        payload=d.decode(row["payload"]),
        sender=row["sender"],
        created_at=row["created_at"],
        consumed_position=row["consumed_position"],
    )


def effect_from(row: Row, d: Dialect) -> Effect:
    return Effect(
        job_id=row["job_id"],
        position=row["position"],
        tool=row["tool"],
        effect=EffectClass(row["effect"]),
        args_hash=row["args_hash"],
        idempotency_key=row["idempotency_key"],
        state=EffectState(row["state"]),
        result=d.decode(row["result"]),
        error=d.decode(row["error"]),
        attempt=row["attempt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def summary_from(counts: Sequence[Row], oldest: Row | None, effects: Sequence[Row]) -> Summary:
    """The summary of job counts by tenant and status, the oldest pending job's creation and
    effect counts by state."""
    return summarize(
        [(r["tenant"], JobStatus(r["status"]), int(r["n"])) for r in counts],
        oldest["at"] if oldest is not None else None,
        {EffectState(r["state"]): int(r["n"]) for r in effects},
    )


def worker_from(row: Row, d: Dialect) -> WorkerInfo:
    queues = d.decode(row["queues"])
    return WorkerInfo(
        id=row["id"],
        agents=tuple(d.decode(row["agents"])),
        queues=None if queues is None else tuple(queues),
        host=row["host"],
        pid=row["pid"],
        started_at=row["started_at"],
        last_seen=row["last_seen"],
        alive=bool(row["alive"]),
    )


# -- outgoing webhooks -------------------------------------------------------------------------


def webhook_params(hook: Webhook, d: Dialect) -> dict[str, Any]:
    """A subscription's row; its event types are a JSON list (SQLite) or a text[]."""
    events = [e.value for e in hook.events]
    return {
        "id": hook.id,
        "tenant": hook.tenant,
        "url": hook.url,
        "secret": hook.secret,
        "events": events if d is POSTGRESQL else json.dumps(events),
        "created_at": hook.created_at,
    }


def notice_params(notice: Notice, d: Dialect) -> dict[str, Any]:
    """One notable event, for the statement that writes its deliveries (SQLite)."""
    return {
        "job_id": notice.job_id,
        "event_id": notice.event_id,
        "event_type": notice.type.value,
        "payload": d.encode(notice.payload),
        "now": notice.at,
    }


def notice_columns(found: Sequence[Notice]) -> dict[str, list[Any]]:
    """Notable events as one array per column (PostgreSQL: one statement for them all)."""
    return {
        "n_ids": [n.event_id for n in found],
        "n_types": [n.type.value for n in found],
        "n_payloads": [POSTGRESQL.encode(n.payload) for n in found],
    }


def deliveries_params(
    tenant: str | None, webhook_id: str | None, state: DeliveryState | None, limit: int
) -> dict[str, Any]:
    """The filters of a listing of deliveries (``None``: any)."""
    return {
        "tenant": tenant,
        "webhook_id": webhook_id,
        "state": state.value if state is not None else None,
        "limit": limit,
    }


def attempt_params(delivery_id: int, token: str, outcome: AttemptOutcome) -> dict[str, Any]:
    """One try's outcome; ``now`` is the SQLite store's to add."""
    retry_in = None if outcome.delivered else outcome.retry_in
    if outcome.delivered:
        state = DeliveryState.DELIVERED
    else:
        state = DeliveryState.PENDING if retry_in is not None else DeliveryState.DEAD
    return {
        "id": delivery_id,
        "token": token,
        "state": state.value,
        "status": outcome.status,
        "error": outcome.error,
        "duration": outcome.duration,
        "retry_in": retry_in,
    }


def webhook_from(row: Row) -> Webhook:
    events = row["events"]
    if isinstance(events, str):
        events = json.loads(events)
    return Webhook(
        id=row["id"],
        tenant=row["tenant"],
        url=row["url"],
        secret=row["secret"],
        events=tuple(WebhookEvent(e) for e in events),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
    )


def delivery_from(row: Row, d: Dialect) -> WebhookDelivery:
    log = row["log"]
    if isinstance(log, str):
        log = json.loads(log)
    return WebhookDelivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        tenant=row["tenant"],
        job_id=row["job_id"],
        agent=row["agent"],
        job_status=JobStatus(row["job_status"]),
        event_id=row["event_id"],
        event_type=WebhookEvent(row["event_type"]),
        payload=d.decode(row["payload"]),
        created_at=row["created_at"],
        state=DeliveryState(row["state"]),
        attempts=row["attempts"],
        next_at=row["next_at"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        delivered_at=row["delivered_at"],
        log=tuple(
            DeliveryAttempt(e["at"], e["status"], e["error"], e["duration"], e["retry_in"])
            for e in log
        ),
    )


def claim_from(row: Row, d: Dialect) -> DeliveryClaim:
    return DeliveryClaim(delivery_from(row, d), row["url"], row["secret"], row["claim"])
