"""The timeline of a journal: steps with their spans and states, and the job's phases, from
saved journals of real runs and from journals cut short (running, waiting, in doubt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aetheris.bundle import load_bundle
from aetheris.journal import GENESIS_HASH, Event, EventDraft, EventType, seal
from aetheris.timeline import Phase, model_spend, timeline

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
T0 = 1_800_000_000.0


def journal(*entries: tuple[float, EventType, int | None, dict[str, Any]]) -> list[Event]:
    """Sealed events at ``T0 + offset`` seconds."""
    events: list[Event] = []
    prev = GENESIS_HASH
    for seq, (offset, kind, position, data) in enumerate(entries):
        event = seal("j", seq, prev, EventDraft(kind, data, position), T0 + offset)
        events.append(event)
        prev = event.hash
    return events


def op(kind: str, name: str, **more: Any) -> dict[str, Any]:
    return {"kind": kind, "name": name, "ordinal": 1, "args_hash": "h", "outcome": "pure", **more}


CREATED = (0.0, EventType.JOB_CREATED, None, {"agent": "a", "input": {}})


def claimed(epoch: int) -> dict[str, Any]:
    return {"owner": "w", "epoch": epoch, "attempt": epoch, "recovered_from": None}


def test_a_worker_killed_mid_call_shows_as_a_recovery_between_two_runs() -> None:
    events = load_bundle(GOLDEN / "refund_order_killed_and_resumed.json").events
    line = timeline(events, now=T0)
    assert line.status == "succeeded"
    assert line.end == pytest.approx(events[-1].at - events[0].at)
    assert line.now == line.end  # an ended job's timeline stops at its end
    assert [(s.position, s.kind, s.name, s.state) for s in line.steps] == [
        (0, "tool", "lookup_order#1", "done"),
        (1, "tool", "refund_card#1", "done"),
        (2, "now", "now#1", "done"),
        (3, "tool", "send_email#1", "done"),
    ]
    email = line.steps[3]
    # From its first intent (before the crash) to the end of the dispatch that answered.
    assert email.dispatches == 2 and email.busy == pytest.approx(1.500947)
    assert email.start == pytest.approx(events[6].at - events[0].at)
    assert email.duration is not None and email.duration > email.busy
    lookup = line.steps[0]
    assert lookup.duration == pytest.approx(0.300634, abs=1e-3)
    assert [(p.kind, p.label) for p in line.phases] == [
        ("pending", ""),
        ("run", "epoch 1"),
        ("recovery", "lease expired"),
        ("run", "epoch 2"),
    ]
    # Back to back, from creation to the end.
    assert line.phases[0].start == 0.0 and line.phases[-1].end == line.end
    for before, after in zip(line.phases, line.phases[1:], strict=False):
        assert before.end == after.start
    recovery = line.phases[2]
    assert recovery.start == pytest.approx(events[6].at - events[0].at)  # its last write
    assert recovery.end == pytest.approx(events[7].at - events[0].at)  # the takeover


def test_an_effect_resolved_by_an_operator_after_a_park() -> None:
    events = load_bundle(GOLDEN / "order_in_doubt_resolved.json").events
    line = timeline(events, now=T0)
    kinds = [p.kind for p in line.phases]
    assert kinds == ["pending", "run", "recovery", "run", "parked", "pending", "run"]
    assert line.phases[4].label == "effect_in_doubt"
    charge = next(s for s in line.steps if s.name == "charge#1")
    assert (charge.state, charge.outcome, charge.effect) == (
        "done",
        "side_effect_committed",
        "at_most_once",
    )


def test_open_steps_run_wait_or_are_in_doubt_until_now() -> None:
    events = journal(
        CREATED,
        (0.1, EventType.JOB_CLAIMED, None, claimed(1)),
        (0.2, EventType.OP, 0, op("step", "plan", started_at=T0 + 0.15, duration_ms=40.0)),
        (0.3, EventType.INTENT, 1, {"kind": "tool", "name": "pay", "ordinal": 1, "attempt": 1}),
    )
    line = timeline(events, now=T0 + 2.0)
    assert (line.end, line.status, line.now) == (None, None, pytest.approx(2.0))
    plan, pay = line.steps
    assert (plan.start, plan.end) == (pytest.approx(0.15), pytest.approx(0.19))
    assert (pay.state, pay.end, pay.duration, pay.dispatches) == ("running", None, None, 1)
    assert line.phases[-1] == Phase("run", "epoch 1", pytest.approx(0.1), None)  # type: ignore[arg-type]

    doubt = journal(
        *[(e.at - T0, e.type, e.position, e.data) for e in events],
        (1.0, EventType.JOB_CLAIMED, None, claimed(2)),
        (1.1, EventType.EFFECT_IN_DOUBT, 1, {"name": "pay", "attempt": 1}),
        (1.2, EventType.JOB_PARKED, None, {"reason": "effect_in_doubt", "detail": {}}),
    )
    line = timeline(doubt, now=T0 + 5.0)
    assert line.steps[1].state == "in_doubt"
    assert [p.kind for p in line.phases] == ["pending", "run", "recovery", "run", "parked"]
    assert line.phases[-1].end is None and line.phases[-1].label == "effect_in_doubt"


def test_a_wait_spans_from_its_start_to_its_answer_and_names_the_decision() -> None:
    approved = {"approved": True, "by": "ann", "comment": None}
    events = journal(
        CREATED,
        (0.1, EventType.JOB_CLAIMED, None, claimed(1)),
        (0.2, EventType.WAIT, 0, {"kind": "approval", "name": "tool:pay", "deadline": None}),
        (0.2, EventType.JOB_PARKED, None, {"reason": "approval", "detail": {}}),
        (5.0, EventType.JOB_CLAIMED, None, claimed(2)),
        (5.0, EventType.OP, 0, op("approval", "tool:pay", result=approved)),
        (5.1, EventType.OP, 1, op("signal", "go", result=1)),  # it was in the inbox already
        (5.2, EventType.JOB_SUCCEEDED, None, {"result": None}),
    )
    waiting = timeline(events[:4], now=T0 + 3.0)
    assert (waiting.steps[0].state, waiting.steps[0].end) == ("waiting", None)
    line = timeline(events, now=T0 + 9.0)
    wait, signal = line.steps
    assert (wait.kind, wait.name, wait.outcome) == ("approval", "tool:pay#1", "approved")
    assert (wait.start, wait.end) == (pytest.approx(0.2), pytest.approx(5.0))
    assert signal.duration == 0.0 and signal.outcome == "received"
    parked = line.phases[2]
    assert (parked.kind, parked.label) == ("parked", "approval")
    assert (parked.start, parked.end) == (pytest.approx(0.2), pytest.approx(5.0))


def test_retries_errors_and_a_job_that_ended_first() -> None:
    retries = [{"attempt": 1, "type": "ConnectionError", "message": "boom"}]
    failed = op("tool", "fetch", error={"type": "ValueError", "message": "bad"}, attempts=2)
    events = journal(
        CREATED,
        (0.1, EventType.JOB_CLAIMED, None, claimed(1)),
        (0.2, EventType.OP, 0, {**op("tool", "fetch", attempts=2), "retries": retries}),
        (0.3, EventType.OP, 1, {**failed, "ordinal": 2}),
        (0.4, EventType.WAIT, 2, {"kind": "signal", "name": "go", "deadline": None}),
        (0.5, EventType.JOB_CANCELLED, None, {"by": "ops"}),
    )
    line = timeline(events, now=T0 + 9.0)
    first, second, wait = line.steps
    assert (first.attempts, first.retries[0]["type"], first.name) == (
        2,
        "ConnectionError",
        "fetch#1",
    )
    assert (second.state, second.outcome, second.error) == (
        "failed",
        "ValueError",
        "ValueError: bad",
    )
    assert second.name == "fetch#2"
    assert (wait.state, wait.outcome, wait.end) == ("interrupted", "waiting", pytest.approx(0.5))
    assert line.status == "cancelled" and line.phases[-1].end == pytest.approx(0.5)


def test_model_calls_carry_tokens_and_cost() -> None:
    usage = {"input_tokens": 12, "output_tokens": 5}
    events = journal(
        CREATED,
        (0.1, EventType.JOB_CLAIMED, None, claimed(1)),
        (0.5, EventType.OP, 0, op("llm", "gpt", usage=usage, cost=0.25, model="gpt-x")),
    )
    call, going_on = timeline(events, now=T0 + 1).steps
    assert going_on.kind == "next"
    assert (call.tokens, call.cost, call.model, call.outcome) == (
        (12, 5),
        0.25,
        "gpt-x",
        "answered",
    )
    assert model_spend(events) == {
        "calls": 1,
        "input_tokens": 12,
        "output_tokens": 5,
        "cost": 0.25,
    }


def test_a_running_job_with_nothing_open_is_in_its_next_operation() -> None:
    events = journal(
        CREATED,
        (0.1, EventType.JOB_CLAIMED, None, claimed(1)),
        (0.4, EventType.OP, 0, op("step", "plan", started_at=T0 + 0.3, duration_ms=100.0)),
    )
    *_, going_on = timeline(events, now=T0 + 3).steps
    assert (going_on.position, going_on.kind, going_on.state) == (1, "next", "running")
    assert (going_on.start, going_on.end, going_on.seq) == (pytest.approx(0.4), None, 2)
    parked = journal(
        *[(e.at - T0, e.type, e.position, e.data) for e in events],
        (0.5, EventType.JOB_PARKED, None, {"reason": "paused", "detail": {}}),
    )
    assert [s.kind for s in timeline(parked, now=T0 + 3).steps] == ["step"]  # nothing runs
    assert [s.kind for s in timeline(events[:2], now=T0 + 3).steps] == ["next"]


def test_an_empty_journal_has_an_empty_timeline() -> None:
    line = timeline([], now=T0)
    assert (line.steps, line.phases, line.end) == ([], [], None)
