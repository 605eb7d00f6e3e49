"""The durable operations agent code calls: :class:`Context`.

Determinism lives here and in :mod:`aetheris.run`. Agent code is re-executed from the top on
every resume; each durable operation takes the next position in the journal, and a recorded
position returns its recorded result instead of executing. So agent code must reach the same
operations in the same order, and anything not deterministic (clocks, randomness, ids) must come
from the context, which journals it.

Designs considered and rejected:

* A sandbox that re-imports modules and proxies ``datetime``/``random`` (Temporal's Python SDK):
  it catches more mistakes, but its import and pickling friction is the most reported pain of
  that SDK, and agent frameworks import half of PyPI. We detect divergence instead: every entry
  records kind, name and an args hash, and a mismatch parks the job with a readable diff.
* Keying operations by name only (Inngest, Absurd): tolerant of inserted steps, but a replay that
  no longer lines up silently returns wrong cached values. We key by position and record
  ``name#ordinal`` so that a lenient policy can be added without a journal format change.
* Making ``now()``/``uuid()``/``random()`` coroutines that write before returning: correct but
  slow and awkward. Their values are buffered and written in the same transaction as the next
  write, which always precedes anything the value can influence outside the process (a tool
  dispatch is preceded by its intent write; a result by the job's final write).
"""

from __future__ import annotations

import datetime as dt
import uuid as uuid_module
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, overload

from aetheris import ledger, waits
from aetheris.errors import InvalidInput
from aetheris.run import JobRun

T = TypeVar("T")


class Context:
    """Handed to every agent as its first argument; the gateway to durable operations."""

    __slots__ = ("_run",)

    def __init__(self, run: JobRun) -> None:
        self._run = run

    @property
    def job_id(self) -> str:
        return self._run.job.id

    @property
    def input(self) -> dict[str, Any]:
        return self._run.job.input

    def now(self) -> dt.datetime:
        """Current UTC time, recorded on first execution and replayed after."""
        return dt.datetime.fromtimestamp(
            self._run.record_value("now", self._run.clock.time), dt.UTC
        )

    def uuid(self) -> uuid_module.UUID:
        """A random UUID, recorded on first execution and replayed after."""
        return uuid_module.UUID(self._run.record_value("uuid", self._new_uuid))

    def random(self) -> float:
        """A random float in [0, 1), recorded on first execution and replayed after."""
        value: float = self._run.record_value("random", self._run.clock.random)
        return value

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new branch of a change made for jobs already running.

        ``if ctx.patched("fee-check"): <new code> else: <old code>``. Past the journal's
        recorded prefix (a new job, or a running one beyond where it was), it returns True and
        records a ``patch`` marker at its position. Replaying, it returns True if the journal
        holds that marker there, and False, taking no position, if it holds anything else: a
        job recorded by the old code replays on the old branch. The marker is compared with
        the code like any other entry.
        """
        run = self._run
        if not isinstance(patch_id, str) or not patch_id or "\x00" in patch_id:
            raise InvalidInput(f"a patch id must be a non-empty string, got {patch_id!r}")
        held = run.held(run.next_position)
        if held is not None and held != ("patch", patch_id):
            return False  # the journal was written by code without this patch
        run.record_value("patch", _true, patch_id)
        return True

    def deprecate_patch(self, patch_id: str) -> None:
        """The old branch of ``patch_id`` is gone: no job that took it runs any more.

        Replace ``if ctx.patched(id): new else: old`` by ``ctx.deprecate_patch(id)`` and
        ``new``: journals recorded with the marker replay (it is taken), new jobs record it
        (so code still calling ``patched(id)`` replays them), and a journal without it goes on
        to be compared with ``new``. Remove the call once no job recorded before it runs.
        """
        self.patched(patch_id)

    def _new_uuid(self) -> str:
        return str(self._run.clock.uuid4())

    @overload
    def step(
        self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, T]: ...
    @overload
    def step(
        self, name: str, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, T]: ...

    def step(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        *args: Any,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn(*args, **kwargs)`` as a journaled step named ``name``; await it.

        A step is pure: if the worker dies before its result is recorded, it runs again. Use a
        tool with ``effect="at_most_once"`` for anything that must not happen twice. (The
        step's own coroutine, not one around it: a resume replays every step.)
        """
        return ledger.step(self._run, name, fn, args, kwargs)

    async def sleep(self, seconds: float) -> None:
        """Sleep durably: the job parks (holding no worker) and wakes when due, anywhere."""
        await self._run.guarded(waits.sleep(self._run, seconds))

    async def wait_for_signal(
        self, name: str, *, key: str | None = None, timeout: float | None = None
    ) -> Any:
        """The payload of the next signal ``name`` sent to this job (each received once).

        Signals sent before the wait are kept in the job's inbox. Raises
        :class:`~aetheris.SignalTimeout` (catchable) if ``timeout`` seconds pass first.

        With a ``key``, the signal is not sent to this job but correlated by the key: an
        incoming webhook (``app.hook(name, key=...)``, ``POST /v1/hooks/{name}``) whose body
        holds ``key`` wakes the job waiting on it, in its tenant; one that came before the
        wait is kept until a job waits on its key. The first job to wait on a key holds it
        until it ends: a second one's wait raises :class:`~aetheris.SignalKeyTaken`.
        """
        if key is not None:
            keyed = waits.wait_for_keyed(self._run, name, key, timeout)
            return await self._run.guarded(keyed)
        return await self._run.guarded(waits.wait_for_signal(self._run, name, timeout))

    async def approval(
        self,
        name: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        escalate_to: str | None = None,
    ) -> Any:
        """Ask a human to approve ``payload``; park until ``aetheris approve``/``reject``.

        Returns an :class:`~aetheris.Approval` (who, when); a rejection raises
        :class:`~aetheris.ApprovalRejected`. After ``timeout`` seconds the request escalates
        to ``escalate_to`` (once, for another ``timeout``) or fails with
        :class:`~aetheris.ApprovalTimeout`.
        """
        return await self._run.guarded(
            waits.approval(self._run, name, payload, timeout, escalate_to)
        )

    async def run_agent(
        self, agent: str, input: dict[str, Any] | None = None, *, job_id: str | None = None
    ) -> Any:
        """Run ``agent`` as a child job (its own journal) and return its result.

        The parent parks while the child runs; cancelling the parent cancels the child. A child
        that does not succeed raises :class:`~aetheris.ChildFailed`.
        """
        return await self._run.guarded(waits.run_agent(self._run, agent, input or {}, job_id))


def _true() -> bool:
    return True
