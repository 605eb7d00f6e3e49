"""Invariants checked after every simulated run, on what the store holds and the world saw.

Each check reports violations through ``sim.violate(kind, message, job=...)``; ``kind`` names
the invariant (``tests.sim.classify`` maps kinds to known defects). The cheap checks run during
the run, where the simulation sees things happen: a second dispatch (:mod:`tests.sim.world`),
a park or an end while a tool still runs, a child created without its parent's lease, a step
started by a stopping worker (:mod:`tests.sim.sim`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aetheris import App
from aetheris.audit_facts import check_job, check_ledger
from aetheris.journal import Event, EventType, verify_chain
from aetheris.replay import replay_history
from aetheris.store.port import Effect, EffectState, Job, JobStatus, Signal
from tests.sim import catalog

if TYPE_CHECKING:
    from tests.sim.sim import Sim

AGENT_ERRORS = frozenset(
    {
        "ToolFailed",
        "ChildFailed",
        "SignalTimeout",
        "ApprovalRejected",
        "ApprovalTimeout",
        "DeadlineExceeded",
        "PoisonJob",
        "Cancelled",
    }
)
"""Why a job may end without succeeding: its own failures, an operator, a deadline, poison."""

COMPENSABLE = frozenset({"ship", "book"})
_DECIDED_OUTSIDE = frozenset({"PoisonJob", "DeadlineExceeded", "Cancelled"})


@dataclass(frozen=True)
class Record:
    """Everything the store holds about one job."""

    job: Job
    events: list[Event]
    effects: list[Effect]
    signals: list[Signal]

    def ops(self) -> list[Event]:
        """The journal's operation results."""
        return [e for e in self.events if e.type is EventType.OP]

    @property
    def ended(self) -> bool:
        """Whether the job reached a terminal status."""
        return self.job.status.terminal

    @property
    def error_type(self) -> str | None:
        """The type of the error the job ended with, if any."""
        return (self.job.error or {}).get("type")


async def read_records(store: Any) -> list[Record]:
    """Every job of the store with its journal, ledger and inbox (read without faults)."""
    jobs = sorted(await store.list_jobs(limit=100_000), key=lambda j: j.id)
    records = []
    for job in jobs:
        events = await store.events(job.id)
        effects = await store.effects(job_id=job.id)
        signals = await store.signals(job.id, pending=False)
        records.append(Record(job, events, effects, signals))
    return records


def check_journal(sim: Sim, rec: Record) -> None:
    """The chain verifies; the job's row and its ledger agree with its journal; one result
    per position; each signal received once."""
    job_id = rec.job.id
    report = verify_chain(job_id, rec.events)
    if not report.ok:
        sim.violate("journal_broken", f"{report.problem} at seq {report.seq}", job=job_id)
    # What the job shows and its ledger are what its journal makes them (aetheris verify).
    shown = check_job(rec.job, rec.events)
    if shown is not None:
        sim.violate("job_row_disagrees", f"{shown[1]} (seq {shown[0]})", job=job_id)
    ledger = check_ledger(rec.events, rec.effects)
    if ledger is not None:
        sim.violate("ledger_disagrees", f"{ledger[2]} (seq {ledger[1]})", job=job_id)
    positions = Counter(e.position for e in rec.ops())
    for position, count in sorted(positions.items(), key=lambda kv: str(kv[0])):
        if count > 1:
            sim.violate("position_recorded_twice", f"{count} results at {position}", job=job_id)
    seqs = Counter(e.data["signal_seq"] for e in rec.ops() if "signal_seq" in e.data)
    for seq, count in sorted(seqs.items()):
        if count > 1:
            sim.violate("signal_consumed_twice", f"signal #{seq} received {count}x", job=job_id)


def check_approvals(sim: Sim, rec: Record) -> None:
    """An approval the journal records as given was given for that request's arguments."""
    by_seq = {s.seq: s for s in rec.signals}
    for op in rec.ops():
        data = op.data
        result = data.get("result")
        if data.get("kind") != "approval" or not isinstance(result, dict):
            continue
        signal = by_seq.get(data.get("signal_seq", -1))
        payload = signal.payload if signal is not None else None
        bound = payload.get("args_hash") if isinstance(payload, dict) else None
        if result.get("approved") and bound != data["args_hash"]:
            sim.violate(
                "approval_unbound",
                f"approval {data['name']!r} at {op.position} accepted from signal "
                f"{signal.name if signal else '?'!r} (id {signal.signal_id if signal else '?'}) "
                f"bound to {str(bound)[:12]}, not to the request {data['args_hash'][:12]}",
                job=rec.job.id,
            )


def check_children(sim: Sim, rec: Record, jobs: dict[str, Record]) -> None:
    """A child's result reaches its parent once, and as the child ended."""
    for op in rec.ops():
        if op.data.get("kind") != "child":
            continue
        error = op.data.get("error") or {}
        child = jobs.get(op.data.get("child") or error.get("detail", {}).get("child", ""))
        if child is None:
            sim.violate("child_missing", f"child at {op.position} does not exist", job=rec.job.id)
            continue
        succeeded = child.job.status is JobStatus.SUCCEEDED
        if ("error" in op.data) == succeeded or (
            succeeded and op.data.get("result") != child.job.result
        ):
            sim.violate(
                "child_result_differs",
                f"parent recorded {op.data.get('result', op.data.get('error'))!r} for child "
                f"{child.job.id} which is {child.job.status}",
                job=rec.job.id,
            )


def check_ending(sim: Sim, rec: Record) -> None:
    """An ended job has a settled ledger, failed for its own reasons, and compensated."""
    if not rec.ended:
        return
    job_id = rec.job.id
    for row in rec.effects:
        if row.state is EffectState.INTENT:
            sim.violate(
                "ended_with_intent",
                f"{rec.job.status} ({rec.error_type}) with {row.tool} at {row.position} still "
                "`intent`: neither recorded nor listed in doubt",
                job=job_id,
            )
    if rec.job.status is not JobStatus.SUCCEEDED and rec.error_type not in AGENT_ERRORS:
        message = (rec.job.error or {}).get("message", "")
        sim.violate(
            "runtime_failure_as_agent_failure",
            f"{rec.job.status} with {rec.error_type}: {message[:160]}",
            job=job_id,
        )
    _check_compensated(sim, rec)


def _check_compensated(sim: Sim, rec: Record) -> None:
    error = rec.job.error or {}
    if rec.job.status is JobStatus.SUCCEEDED or rec.error_type == "PoisonJob":
        return
    if "compensation_error" in error or _diverged(rec):
        return  # a diverged job's code cannot be replayed to learn what to compensate
    settled = {
        e.position: e.data.get("by")
        for e in rec.events
        if e.type is EventType.EFFECT_RESOLVED and e.data.get("resolution") == "committed"
    }
    declared = set(error.get("not_compensated") or ())  # said so, with the reason, on its end
    for row in rec.effects:
        if row.tool in COMPENSABLE and row.state is EffectState.COMMITTED:
            if row.tool in declared:
                continue
            by = settled.get(row.position)
            how = f" (settled as committed by {by})" if row.position in settled else ""
            sim.violate(
                "committed_effect_not_compensated",
                f"{rec.job.status} ({rec.error_type}): {row.tool} at {row.position} "
                f"committed{how}, never compensated",
                job=rec.job.id,
            )


def _diverged(rec: Record) -> bool:
    return any(
        e.type is EventType.JOB_PARKED and e.data.get("reason") == "nondeterminism"
        for e in rec.events
    )


def check_world(sim: Sim, jobs: dict[str, Record]) -> None:
    """What happened in the world and what the ledger says agree."""
    rows = {(r.job_id, r.position): r for rec in jobs.values() for r in rec.effects}
    for entry in sim.world.dispatches:
        row = rows.get((entry.job_id, entry.position))
        if row is None:
            sim.violate(
                "effect_without_ledger_row",
                f"{entry.tool} ran at {entry.position}",
                job=entry.job_id,
            )
        elif row.state in (EffectState.NOT_EXECUTED, EffectState.FAILED):
            sim.violate(
                "ledger_denies_effect",
                f"{entry.tool} at {entry.position} happened but the ledger says {row.state}",
                job=entry.job_id,
            )
        elif row.state is EffectState.COMMITTED and row.result != entry.result:
            sim.violate(
                "ledger_result_differs",
                f"{entry.tool} at {entry.position}: {row.result!r} != {entry.result!r}",
                job=entry.job_id,
            )
    for (job_id, position), row in sorted(rows.items()):
        _check_row_happened(sim, job_id, position, row)


def _check_row_happened(sim: Sim, job_id: str, position: int, row: Effect) -> None:
    if row.state not in (EffectState.COMMITTED, EffectState.COMPENSATED):
        return
    if row.tool.startswith("compensate:"):
        original = row.idempotency_key.removesuffix(":compensate")
        happened = sim.world.compensated.get(original, 0) > 0
    else:
        happened = sim.world.happened(row.idempotency_key) is not None
    if not happened:
        sim.violate(
            "ledger_invents_effect",
            f"{row.tool} at {position} is {row.state} but never reached the world",
            job=job_id,
        )


async def check_replays(sim: Sim, jobs: dict[str, Record]) -> None:
    """Replaying every ended job executes nothing and matches its journal."""
    apps = {v: catalog.install(App("memory://", clock=sim.clock), v) for v in (1, 2)}
    before = sim.world.version
    for job_id, rec in jobs.items():
        if not rec.ended:
            continue
        app = apps[sim.job_version.get(job_id, 1)]
        report = await replay_history(app, rec.job, rec.events, rec.effects)
        if sim.world.version != before:
            sim.violate(
                "replay_executed", f"replay changed the world ({report.outcome})", job=job_id
            )
            before = sim.world.version
        expected = (
            ("matched",) if rec.job.status is JobStatus.SUCCEEDED else ("matched", "incomplete")
        )
        if report.outcome in expected:
            continue
        if report.outcome == "different_end" and rec.error_type in _DECIDED_OUTSIDE:
            continue  # poison, a deadline or a cancel ends a job whatever its code does next
        sim.violate(
            "replay_mismatch",
            f"{report.outcome} at {report.position}: {report.diff or report.replayed_end}",
            job=job_id,
        )


async def check_all(sim: Sim, store: Any) -> list[Record]:
    """Every end-of-run invariant; returns the records read."""
    records = await read_records(store)
    jobs = {r.job.id: r for r in records}
    for rec in records:
        check_journal(sim, rec)
        check_approvals(sim, rec)
        check_children(sim, rec, jobs)
        check_ending(sim, rec)
    check_world(sim, jobs)
    await check_replays(sim, jobs)
    return records
