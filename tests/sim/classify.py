"""Which known defect a violation is (by the simulator's own reading of it), or a new one.

The runtime's known defects are numbered as in the issue tracker's list; a violation that
matches none is reported as ``NEW`` with its invariant, for a person to diagnose. The reading
is a heuristic over the invariant and its message: it sorts failures, it proves nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol

KNOWN = {
    "1": "cancel/deadline/poison after a crash between intent and outcome leaves `intent`",
    "2": "code change in front of an unfinished effect: dispatched again one position later",
    "3": "child creation is not fenced: a zombie creates a child of a cancelled parent",
    "4": "cancelling a child that has not started leaves its parent parked forever",
    "6": "approvals not bound to the request unless an args hash is present",
    "7": "a store error from a commit reaches agent code as an ordinary exception",
    "8": "ctx.uuid()/now() in a child's input not durable at child creation",
    "9": "an effect reconcile reports Committed is never compensated",
    "10": "a transient store error in a durable operation's own read or child creation",
    "11": "an at_most_once tool beside a wait: the job parks while the tool runs",
    "14": "a stopping worker starts new steps and cancels tools mid-call",
    "N1": "cancel of a job parked on nondeterminism never takes effect (re-diverges, re-parks)",
    "N2": "a cancel requested while a job parks is lost: parked with control=cancel",
    "N3": "an interrupted run compensates where its next operation goes: replay diverges",
    "N4": "a compensation takes over another tool's ledger row at its position",
    "N5": "a deadline or cancel during compensation compensates again: Conflict, livelock",
    "N6": "a deadline or cancel that interrupts a replay compensates only what it replayed",
    "N7": "parallel waits for one signal name both take the same signal: a runtime failure",
}
_READS = ("signals", "create_job")  # a durable operation's own reads and writes


class _Violation(Protocol):
    kind: str
    message: str
    job: str | None


def _store_error_site(message: str) -> str:
    if "IdempotencyConflict" in message or "idempotency key" in message:
        return "8"
    found = re.search(r" at ([a-z_:]+)", message)
    site = found.group(1) if found else ""
    return "10" if site.startswith(_READS) else "7"


def _ended_with_intent(message: str, features: frozenset[str]) -> str:
    match = re.match(r"(\w+) \((\w+)\) with ([\w:]+)", message)
    status, error, tool = match.groups() if match else ("", "", "")
    if error in ("Cancelled", "DeadlineExceeded", "PoisonJob"):
        return "1"
    if tool.startswith("compensate:"):
        return "7"  # a compensation begun by a run that failed for a runtime error
    if error == "IdempotencyConflict":
        return "8"
    if error in ("StoreError", "StoreUnavailable", "LostReply", "Conflict"):
        return "7"
    if tool == "charge" and "code_change" in features:
        return "2"
    return "7" if status == "succeeded" else "NEW"


def _woken(message: str) -> str:
    if "itself stuck" in message:
        return "-"  # waits for a child that is stuck for its own reason
    if "its child" in message and "ended cancelled" in message:
        return "4"
    if "a cancel is requested" in message:
        return "N1" if "nondeterminism" in message else "N2"
    return "NEW"


def _twice(message: str) -> str:
    positions = re.findall(r"position (\d+)", message)
    return "2" if len(positions) == 2 and positions[0] != positions[1] else "NEW"


def _replay(message: str) -> str:
    if message.startswith("incomplete"):
        return "7"  # a gap left by a runtime error the agent swallowed
    return "N3" if "journal: compensation" in message else "NEW"


def _uncompensated(message: str) -> str:
    if "by reconcile" in message:
        return "9"
    return "N6" if re.match(r"\w+ \((DeadlineExceeded|Cancelled)\)", message) else "NEW"


def _internal(message: str) -> str:
    if "is compensated, expected committed" in message:
        return "N5"
    if "was already received" in message:
        return "N7"
    return "7" if "the writer expected" in message else "NEW"  # a stale head after a store error


_RULES: dict[str, Callable[[str], str]] = {
    "runtime_failure_as_agent_failure": _store_error_site,
    "runtime_error_reached_agent": _store_error_site,
    "parked_while_woken": _woken,
    "not_live": _woken,
    "amo_dispatched_twice": _twice,
    "unfenced_child_creation": lambda m: "3",
    "approval_unbound": lambda m: "6",
    "committed_effect_not_compensated": _uncompensated,
    "parked_with_tool_in_flight": lambda m: "11",
    "stopping_worker_started_step": lambda m: "14",
    "stop_cancelled_tool": lambda m: "14",
    "replay_mismatch": _replay,
    "ledger_result_differs": lambda m: "N4" if "'undone'" in m else "NEW",
    "internal_error": _internal,
}


def classify(
    violation: _Violation,
    features: frozenset[str] = frozenset(),
    others: Sequence[_Violation] = (),
) -> str:
    """The known defect's number (``N*``: found by this simulator), ``-`` or ``NEW``.

    ``-`` marks a consequence of another violation of the same run (``others``): a parent
    waiting for a child stuck for its own reason, a job that never ends because every run of
    it aborts on an internal error.
    """
    if violation.kind == "ended_with_intent":
        return _ended_with_intent(violation.message, features)
    if violation.kind == "not_live" and any(
        o.kind == "internal_error" and o.job == violation.job for o in others
    ):
        return "-"
    rule = _RULES.get(violation.kind)
    return rule(violation.message) if rule else "NEW"


def defects(violations: Sequence[_Violation], features: frozenset[str] = frozenset()) -> list[str]:
    """The distinct defects behind ``violations`` (consequences left out), sorted."""
    found = {classify(v, features, violations) for v in violations} - {"-"}
    return sorted(found, key=lambda d: (d[0] == "N", len(d), d))
