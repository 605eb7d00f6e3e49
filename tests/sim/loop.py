"""``SimLoop``: an asyncio event loop with virtual time, no threads and deterministic tasks.

Virtual time: when no callback is ready the loop jumps to the exact due time of the next timer
(never adding floats, so a timer set for ``t`` runs at ``t``); when nothing is ready and no
timer is set, every task waits for something that can never happen, which is a
:class:`Deadlock`. Threads are refused (``run_in_executor`` raises): the operating system would
decide their order. Tasks hash by a per-loop creation counter, so sets of tasks (``asyncio.wait``,
``TaskGroup``) iterate in the same order on every run, whatever the memory allocator does.

Each task remembers the simulated process that created it (:data:`current_process`, inherited
through the context), so that a process can be killed by cancelling exactly its task tree.

Designs considered and rejected: patching ``time.monotonic`` under a real loop (looptime,
freezegun) keeps the selector and threads real, so two runs of one seed may interleave
differently; shuffling ready callbacks (trio's scheduler) is a stress mode, not a replayable
order: interleavings come from seeded latencies at the seams instead.

Pinned to CPython 3.11's ``BaseEventLoop`` internals (``_run_once`` calls ``select(timeout)``).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from typing import Any

current_process: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "sim_current_process", default=None
)
"""The simulated process a task belongs to (``None`` for the simulation's own tasks)."""


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is set: every task waits forever."""


class StepBudgetExceeded(RuntimeError):
    """The loop ran more iterations than the simulation allows (a livelock, or a runaway)."""


class _NullSelector:
    """Stands in for the I/O selector: there is no I/O; a wait is a jump in virtual time."""

    def __init__(self, loop: SimLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None) -> list[Any]:
        """Wait for no I/O: let the loop jump in virtual time."""
        self._loop.tick(timeout)
        return []

    def close(self) -> None:
        """Nothing to release."""
        return

    def get_map(self) -> dict[Any, Any]:
        """No file descriptors are registered."""
        return {}


class SimTask(asyncio.Task):  # type: ignore[type-arg]
    """A task with a deterministic hash (its creation number) and its owning process."""

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        *,
        loop: SimLoop,
        context: contextvars.Context | None = None,
        name: str | None = None,
    ) -> None:
        # Assigned before Task.__init__, which registers the task in a WeakSet (hashing it).
        self.sim_id = loop.next_task_id()
        ctx = context if context is not None else contextvars.copy_context()
        self.sim_process = ctx.get(current_process)
        super().__init__(coro, loop=loop, context=ctx, name=name or f"sim-{self.sim_id}")
        loop.register_task(self)

    def __hash__(self) -> int:
        return self.sim_id

    def __eq__(self, other: object) -> bool:
        return self is other


def _task_factory(
    loop: asyncio.AbstractEventLoop, coro: Any, *, context: contextvars.Context | None = None
) -> SimTask:
    assert isinstance(loop, SimLoop)
    return SimTask(coro, loop=loop, context=context)


class SimLoop(asyncio.BaseEventLoop):
    """A deterministic event loop whose clock is virtual (see the module docstring)."""

    def __init__(self, *, max_steps: int | None = None) -> None:
        super().__init__()
        self._now = 0.0
        self._clock_resolution = 1e-9
        self._selector = _NullSelector(self)
        self._task_ids = 0
        self.steps = 0
        self.max_steps = max_steps
        self._tasks_by_process: dict[Any, list[SimTask]] = {}
        self.errors: list[str] = []
        self.set_task_factory(_task_factory)
        self.set_exception_handler(self._on_error)
        self.set_debug(False)

    def time(self) -> float:
        """Virtual seconds since the loop was made."""
        return self._now

    def tick(self, timeout: float | None) -> None:
        """One wait of the loop: count it, and jump to the next timer if there is nothing to do."""
        self.steps += 1
        if self.max_steps is not None and self.steps > self.max_steps:
            raise StepBudgetExceeded(f"more than {self.max_steps} loop iterations")
        if timeout is None:
            raise Deadlock(f"deadlock at t={self._now:.3f}: nothing ready, no timer set")
        if timeout > 0:
            when = self._scheduled[0]._when if self._scheduled else self._now + timeout
            self._now = max(self._now, min(when, self._now + timeout))

    def next_task_id(self) -> int:
        """The next task creation number."""
        self._task_ids += 1
        return self._task_ids

    def register_task(self, task: SimTask) -> None:
        """Remember which process created ``task``."""
        if task.sim_process is not None:
            self._tasks_by_process.setdefault(task.sim_process, []).append(task)

    def tasks_of(self, process: Any) -> list[SimTask]:
        """The live tasks a process created, oldest first."""
        tasks = [t for t in self._tasks_by_process.get(process, []) if not t.done()]
        self._tasks_by_process[process] = tasks
        return tasks

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        what = type(exc).__name__ if exc is not None else ""
        self.errors.append(f"{context.get('message', '')} {what}".strip())

    def _process_events(self, event_list: list[Any]) -> None:
        return None

    def _write_to_self(self) -> None:
        raise RuntimeError("SimLoop has no threads: call_soon_threadsafe is not allowed")

    def run_in_executor(self, executor: Any, func: Callable[..., Any], *args: Any) -> Any:
        """Refused: threads would make runs nondeterministic."""
        raise RuntimeError(f"SimLoop runs no threads (run_in_executor of {func!r})")

    def set_default_executor(self, executor: Any) -> None:
        """Refused: there are no threads."""
        raise RuntimeError("SimLoop runs no threads")


def run_simulated(
    main: Callable[[], Coroutine[Any, Any, Any]], *, max_steps: int | None = None
) -> tuple[Any, SimLoop]:
    """Run ``main()`` on a fresh :class:`SimLoop`; cancel what is left; close the loop."""
    loop = SimLoop(max_steps=max_steps)
    try:
        result = loop.run_until_complete(main())
    finally:
        _cancel_leftovers(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return result, loop


def _cancel_leftovers(loop: SimLoop) -> None:
    loop.max_steps = None
    for _ in range(5):
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not left:
            return
        for task in left:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        except (Deadlock, StepBudgetExceeded):  # a leftover that ignores cancellation: again
            continue
