"""A bell: tasks wait for the next ring (or a timeout), and a ring wakes every one of them."""

from __future__ import annotations

import asyncio
import contextlib


class Bell:
    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def ring(self) -> None:
        """Wake every task waiting now (a waiter whose event loop has closed is skipped)."""
        for waiter in list(self._waiters):
            if not waiter.done():
                with contextlib.suppress(RuntimeError):
                    waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until the next ring, or ``timeout`` seconds."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as the
            # waiter completes (a ring), and a task cancelled then would never stop.
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)
