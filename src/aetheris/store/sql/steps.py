"""What a write does after its first statement, as a list of steps the SQL stores run in order.

Both SQL stores run the same steps inside the transaction of the write; they differ only in how
a statement reaches their database (the SQLite store's group-commit writer, PostgreSQL's
connection) and in the row locks PostgreSQL takes first. The in-memory store, the reference,
does the same things on its dictionaries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aetheris.errors import Conflict
from aetheris.journal import EventDraft
from aetheris.store import _shared as shared
from aetheris.store.port import (
    Commit,
    EffectWrite,
    Job,
    JobStatus,
    NewJob,
    job_wake,
    keyed_signal,
    signal_wake,
)
from aetheris.store.sql.rows import (
    POSTGRESQL,
    Dialect,
    blob_columns,
    effect_params,
    status_params,
)


@dataclass(frozen=True, slots=True)
class Run:
    """Run the named query. With ``refusal`` set, the query must return a row (its RETURNING
    says it changed one); if it does not, ``explain`` (a query, same parameters) is run and
    ``refusal`` turns its row into the error. Without, its result is not read."""

    query: str
    params: dict[str, Any]
    refusal: Callable[[Any], Exception] | None = None
    explain: str | None = None


@dataclass(frozen=True, slots=True)
class Append:
    """Seal ``drafts`` at ``now`` after the head (``count`` events, last hash ``prev_hash``),
    insert them and move the job's head."""

    job_id: str
    count: int
    prev_hash: str
    drafts: Sequence[EventDraft]
    now: float


@dataclass(frozen=True, slots=True)
class Create:
    """Create a child job unless one with its id exists."""

    new: NewJob


@dataclass(frozen=True, slots=True)
class CancelChildren:
    """Cancel the job's children that have not ended, and theirs (on behalf of ``by``)."""

    job_id: str
    by: str | None = None


Step = Run | Append | Create | CancelChildren


def effect_writes(job_id: str, writes: Sequence[EffectWrite], d: Dialect, now: float) -> list[Run]:
    """Insert or update ledger rows; a row that exists, or is not in the state expected, is a
    :class:`Conflict` naming what was found."""
    steps = []
    for write in writes:
        params = effect_params(job_id, write, d, now)
        if write.expect is None:
            refusal = _effect_exists(job_id, write.position)
            steps.append(Run("insert_effect", params, refusal))
        else:
            refusal = _effect_state(job_id, write)
            steps.append(Run("update_effect", params, refusal, explain="get_effect"))
    return steps


def blob_writes(job_id: str, blobs: Sequence[tuple[str, bytes]], d: Dialect) -> list[Run]:
    """Insert blobs the job does not have yet (PostgreSQL: one statement; SQLite: one a blob)."""
    if not blobs:
        return []
    if d is POSTGRESQL:
        return [Run("insert_blobs", {"job_id": job_id, **blob_columns(blobs)})]
    return [Run("insert_blobs", {"job_id": job_id, "hash": h, "body": b}) for h, b in blobs]


def follows(commit: Commit) -> bool:
    """Whether anything must follow the job's own row (most steps' commits: nothing)."""
    status = commit.status
    parks = status is not None and status.status is JobStatus.PARKED
    follow = commit.consume or commit.wake or commit.create or commit.cancel_children
    return bool(follow or commit.correlate) or parks


def key_steps(job_id: str, correlate: Sequence[tuple[str, str]], now: float) -> list[Step]:
    """The job takes each key (refused if a job that has not ended holds it), and the key's
    signals waiting in the mailbox move to the job's inbox."""
    steps: list[Step] = []
    for name, key in sorted(set(correlate)):
        inbox = keyed_signal(name, key)
        params: dict[str, Any] = {"job_id": job_id, "name": name, "key": key, "inbox": inbox}
        params["now"] = now
        steps.append(
            Run("hold_key", params, _key_taken(job_id, name, key), explain="key_holder_of")
        )
        steps += [Run("collect_mailbox", params), Run("mark_collected", params)]
    return steps


def keyed_params(
    tenant: str, name: str, key: str, signal_id: str, payload: Any, sender: str | None, now: float
) -> dict[str, Any]:
    """The parameters of a keyed delivery's statements (``payload`` in the dialect's form)."""
    where = {"tenant": tenant, "name": name, "key": key, "signal_id": signal_id}
    return {**where, "payload": payload, "sender": sender, "now": now}


def delivery(params: dict[str, Any], holder: str | None) -> list[Step]:
    """A keyed signal's writes once its key's row is locked and the holder (a job that has
    not ended, locked too) is known: its row, and with a holder, the holder's inbox and
    wake-up."""
    steps: list[Step] = [Run("insert_keyed_signal", {**params, "job_id": holder})]
    if holder is not None:
        inbox, now = keyed_signal(params["name"], params["key"]), params["now"]
        signal = {
            "job_id": holder,
            "name": inbox,
            "signal_id": f"{inbox}:{params['signal_id']}",
            "payload": params["payload"],
            "sender": params["sender"],
            "now": now,
        }
        wake = {"id": holder, "wake_on": signal_wake(inbox), "now": now}
        steps += [Run("insert_signal", signal), Run("wake", wake)]
    return steps


def follow_up(job_id: str, commit: Commit, now: float) -> list[Step]:
    """After the job's row is written: keys taken, signals received, parked jobs woken,
    children created or cancelled, and no sleeping on what is already there."""
    steps: list[Step] = key_steps(job_id, commit.correlate, now)
    for seq, position in commit.consume:
        params = {"job_id": job_id, "seq": seq, "position": position}
        steps.append(Run("consume_signal", params, _signal_taken(job_id, seq)))
    for other, wake_on in commit.wake:
        steps.append(Run("wake", {"id": other, "wake_on": wake_on, "now": now}))
    steps.extend(Create(new) for new in commit.create)
    if commit.status is not None and commit.status.status is JobStatus.PARKED:
        steps.append(Run("wake_if_ready", {"id": job_id, "now": now}))
    if commit.cancel_children:
        steps.append(CancelChildren(job_id))
    return steps


def write_commit(
    job_id: str, count: int, prev_hash: str, commit: Commit, d: Dialect, now: float
) -> list[Step]:
    """All of a commit once its job row is fenced or locked and its head read."""
    steps: list[Step] = [*effect_writes(job_id, commit.effects, d, now)]
    steps.extend(blob_writes(job_id, commit.blobs, d))
    if commit.status is not None:
        steps.append(Run("set_status", status_params(job_id, commit.status, d, now)))
    if commit.code_version is not None:
        steps.append(Run("set_code_version", {"id": job_id, "code": commit.code_version}))
    steps.extend(follow_up(job_id, commit, now))
    if commit.events:
        steps.append(Append(job_id, count, prev_hash, commit.events, now))
    return steps


def apply_control(job: Job, plan: shared.ControlPlan, d: Dialect, now: float) -> list[Step]:
    """Carry out a control plan on a job whose row is locked."""
    steps: list[Step] = []
    if plan.status is not None:
        steps.append(Run("set_status", status_params(job.id, plan.status, d, now)))
    control = plan.control.value if plan.control else None
    by = plan.by if plan.control else None
    steps.append(Run("set_control", {"id": job.id, "control": control, "by": by, "now": now}))
    if plan.event is not None:
        steps.append(Append(job.id, job.event_count, job.head_hash, (plan.event,), now))
    if plan.status is not None and plan.status.status.terminal and job.parent_id:
        wake = {"id": job.parent_id, "wake_on": job_wake(job.id), "now": now}
        steps.append(Run("wake", wake))
    if plan.cascade:
        steps.append(CancelChildren(job.id, plan.by))
    return steps


def _effect_exists(job_id: str, position: int) -> Callable[[Any], Exception]:
    return lambda _row: Conflict(shared.effect_exists(job_id, position))


def _effect_state(job_id: str, write: EffectWrite) -> Callable[[Any], Exception]:
    def refusal(row: Any) -> Exception:
        found = row["state"] if row is not None else None
        return Conflict(shared.effect_not_expected(job_id, write, found))

    return refusal


def _signal_taken(job_id: str, seq: int) -> Callable[[Any], Exception]:
    return lambda _row: Conflict(shared.signal_taken(job_id, seq))


def _key_taken(job_id: str, name: str, key: str) -> Callable[[Any], Exception]:
    def refusal(row: Any) -> Exception:
        holder = row["job_id"] if row is not None else None
        return Conflict(shared.key_taken(job_id, name, key, holder))

    return refusal
