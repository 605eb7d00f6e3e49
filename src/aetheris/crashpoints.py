"""Crash injection at the write boundaries of a step, for tests that kill real processes.

Set ``AETHERIS_CRASH_AT`` in a worker's environment to ``POINT[:NAME][@N]``: the process kills
itself with SIGKILL the N-th time (default: first) it reaches ``POINT`` for an operation named
``NAME`` (default: any). Points, in the order a side-effecting step reaches them:

``before_intent``   the step is about to write its effect intent
``after_intent``    the intent is committed; the tool has not been dispatched
``after_dispatch``  the tool returned; its outcome is not recorded yet
``after_outcome``   the outcome is committed; the next step has not started
``in_append``       inside the transaction that appends the step's events, before COMMIT

Pure steps pass ``after_dispatch``, ``in_append`` and ``after_outcome`` too. When the variable
is unset, :func:`reach` is one global lookup and a return.

``AETHERIS_CRASH_ACTION=stop`` makes the process stop itself (SIGSTOP) there instead, so that a
test can look at the database while the process is frozen at that point (inside the open
transaction, for ``in_append``), then kill it.

In-process tests (``aetheris.testing.simulate_crash``) arm the same points with
``action="raise"``: :class:`SimulatedCrash` then unwinds the worker as if its process had died,
writing nothing on the way out.
"""

from __future__ import annotations

import os
import signal
import threading

from aetheris.errors import ConfigurationError, SimulatedCrash

POINTS = ("before_intent", "after_intent", "after_dispatch", "after_outcome", "in_append")


class _Plan:
    def __init__(self, spec: str, action: str = "kill") -> None:
        rest, _, count = spec.partition("@")
        point, _, name = rest.partition(":")
        if point not in POINTS:
            raise ConfigurationError(
                f"AETHERIS_CRASH_AT: unknown point {point!r}; use one of {POINTS}"
            )
        self.point = point
        self.name = name or None
        self.remaining = int(count) if count else 1
        self.action = action
        self.lock = threading.Lock()

    def hit(self, point: str, name: str | None) -> bool:
        if point != self.point or (self.name is not None and name != self.name):
            return False
        with self.lock:
            self.remaining -= 1
            return self.remaining == 0


_plan: _Plan | None = None


def configure(spec: str | None, action: str = "kill") -> None:
    """Arm (or with ``None`` disarm) crash injection: ``action`` is ``kill`` or ``raise``."""
    global _plan
    if action not in ("kill", "stop", "raise"):
        raise ConfigurationError(f"crash action must be 'kill', 'stop' or 'raise', not {action!r}")
    _plan = _Plan(spec, action) if spec else None


def armed() -> bool:
    """Whether any crash is planned (so callers can skip preparing :func:`reach`'s arguments)."""
    return _plan is not None


def reach(point: str, name: str | None = None) -> None:
    """Die here (SIGKILL, or :class:`SimulatedCrash` in-process) if the armed plan says so."""
    if _plan is not None and _plan.hit(point, name):
        if _plan.action == "raise":
            raise SimulatedCrash(f"simulated crash at {point}" + (f":{name}" if name else ""))
        os.kill(os.getpid(), signal.SIGSTOP if _plan.action == "stop" else signal.SIGKILL)


configure(os.environ.get("AETHERIS_CRASH_AT"), os.environ.get("AETHERIS_CRASH_ACTION", "kill"))
