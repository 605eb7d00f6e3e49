"""Threads for the plain-function bodies of tools and steps.

A plain function (``def``, not ``async def``) may block, so the runtime runs it in a thread
and awaits it. ``asyncio.to_thread`` goes through ``concurrent.futures``: a work item, a
future, and a second future chained to it on the event loop. On a 2-core VM that hand-off
cost 80 to 110 µs a call, a sixth of a durable step. Its default pool also holds at most
``min(32, cores + 4)`` threads, so a worker of concurrency 50 on 2 cores ran at most 6
blocking tools at once and queued the rest.

Here each thread takes one call at a time from its own inbox and hands the outcome straight
back to the caller's loop: 45 to 60 µs. A thread is started when no thread is idle, up to
:data:`MAX_THREADS`; past that, calls wait in a backlog that the first thread to finish takes
from. A thread idle for :data:`IDLE_SECONDS` ends. The threads are daemons: a body still
running when the process exits does not hold it (a worker that stops waits for its jobs first,
within its grace). A child forked from the process starts threads of its own.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")

log = logging.getLogger("aetheris.threads")

MAX_THREADS = 256
IDLE_SECONDS = 60.0

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


class BodyThreads:
    """A pool of threads for blocking calls, shared by every event loop of the process."""

    def __init__(self, max_threads: int = MAX_THREADS, idle_seconds: float = IDLE_SECONDS) -> None:
        self._max, self._idle_seconds = max_threads, idle_seconds
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[_Call]] = []  # inboxes of idle threads, warmest last
        self._backlog: collections.deque[_Call] = collections.deque()
        self._threads = 0
        self._names = itertools.count(1)
        self._loops: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()

    def forget(self) -> None:
        """Forget every thread (in a child process after ``fork``: the parent's threads did
        not come along, and a call put in one's inbox would wait forever)."""
        self._lock = threading.Lock()
        self._idle, self._backlog, self._threads = [], collections.deque(), 0
        self._loops = weakref.WeakSet()

    @property
    def threads(self) -> int:
        """Threads alive now (running a call or idle)."""
        return self._threads

    async def run(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` in a thread, in a copy of the caller's context."""
        loop = asyncio.get_running_loop()
        if loop not in self._loops:
            # A loop that takes nothing from other threads (a simulation's) refuses here, to
            # the caller, before any thread starts; once per loop.
            loop.call_soon_threadsafe(_nothing)
            self._loops.add(loop)
        future: asyncio.Future[R] = loop.create_future()
        context = contextvars.copy_context()
        call: _Call = (loop, future, lambda: context.run(fn, *args, **kwargs))
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            backlogged = inbox is None and self._threads >= self._max
            if backlogged:
                self._backlog.append(call)
            elif inbox is None:
                self._threads += 1
        if backlogged:
            return await future
        if inbox is None:
            inbox = queue.SimpleQueue()
            name = f"aetheris-body-{next(self._names)}"
            threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put(call)
        return await future

    def _serve(self, inbox: queue.SimpleQueue[_Call]) -> None:
        while True:
            try:
                call = inbox.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:  # no caller took this thread meanwhile: end it
                        self._idle.remove(inbox)
                        self._threads -= 1
                        return
                continue  # a caller took it and is putting its call
            following: _Call | None = call
            while following is not None:
                loop, future, thunk = following
                outcome = _outcome(future, thunk)
                # Idle (or on to the backlog) before the caller hears back: its next call
                # finds this thread instead of starting another.
                with self._lock:
                    following = self._backlog.popleft() if self._backlog else None
                    if following is None:
                        self._idle.append(inbox)
                if outcome is not None:
                    _hand_back(loop, future, outcome)


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    outcome: tuple[Any, BaseException | None],
) -> None:
    try:
        loop.call_soon_threadsafe(_settle, future, *outcome)
    except RuntimeError:
        if not loop.is_closed():  # nobody waits on a closed loop; otherwise say why
            log.exception("the outcome of a body could not be handed back to its event loop")


def _nothing() -> None:
    pass


def _outcome(
    future: asyncio.Future[Any], thunk: Callable[[], Any]
) -> tuple[Any, BaseException | None] | None:
    """(result, error) of the call; ``None`` if its caller gave up before it began (then it
    does not begin at all)."""
    if future.cancelled():
        return None
    try:
        return thunk(), None
    except BaseException as exc:  # the caller gets whatever the body raised
        return None, exc


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the body ran
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):  # a future cannot hold one (nor a coroutine raise it)
        future.set_exception(RuntimeError(f"the body raised StopIteration: {error!r}"))
    else:
        future.set_exception(error)


BODY_THREADS = BodyThreads()
"""The process's threads for plain-function bodies of tools and steps."""
os.register_at_fork(after_in_child=BODY_THREADS.forget)
