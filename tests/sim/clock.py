"""``SimClock``: the runtime's clock port, read from the simulated loop and a seeded generator."""

from __future__ import annotations

import asyncio
import random
import uuid

from aetheris import Clock

EPOCH = 1_700_000_000.0
"""Wall-clock time at virtual time zero (a fixed date, so journals are byte-identical)."""


class SimClock(Clock):
    """Virtual time (``monotonic`` is the loop's time, ``time`` the epoch plus it), seeded draws.

    One instance serves every simulated process of a run: they share one machine's clocks, as
    processes on one host do, and draw ids and jitter from one seeded stream.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, rng: random.Random) -> None:
        self._loop = loop
        self._rng = rng

    def time(self) -> float:
        """Wall-clock seconds: the fixed epoch plus virtual time."""
        return EPOCH + self._loop.time()

    def monotonic(self) -> float:
        """Virtual seconds since the run began."""
        return self._loop.time()

    def random(self) -> float:
        """A seeded draw in [0, 1)."""
        return self._rng.random()

    def uuid4(self) -> uuid.UUID:
        """A seeded version-4 UUID."""
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def getrandbits(self, bits: int) -> int:
        """Seeded random bits."""
        return self._rng.getrandbits(bits)
