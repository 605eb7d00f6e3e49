"""Where the runtime reads time and randomness: one object, so that tests can replace it.

Every wall-clock reading (deadlines, timers, the time a value was recorded), every monotonic
reading (local lease deadlines, outage budgets) and every random draw (``ctx.uuid()``,
``ctx.random()``, retry jitter, ids) goes through the :class:`Clock` of the
:class:`~aetheris.App`. The default reads the system. A test, or the deterministic simulator in
``tests/sim``, passes its own: virtual time driven by its event loop and a seeded generator, so
that one seed replays one run exactly.

Designs considered and rejected: patching ``time``/``random`` for the duration of a test
(freezegun, time-machine) also freezes what the event loop and the test runner read, and cannot
give two simulated processes of one test different views; a module-level clock would be global
state, and two Apps in one process must not share one.
"""

from __future__ import annotations

import random as random_module
import time as time_module
import uuid as uuid_module


class Clock:
    """The system's clocks and randomness (subclass and override to control them)."""

    def time(self) -> float:
        """Wall-clock time, Unix seconds."""
        return time_module.time()

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for local deadlines)."""
        return time_module.monotonic()

    def random(self) -> float:
        """A random float in [0, 1)."""
        return random_module.random()

    def uuid4(self) -> uuid_module.UUID:
        """A random UUID."""
        return uuid_module.uuid4()

    def getrandbits(self, bits: int) -> int:
        """A random non-negative integer of ``bits`` bits."""
        return random_module.getrandbits(bits)


SYSTEM_CLOCK = Clock()
