"""What one run reports to its observer: the runtime's side of :mod:`aetheris.observe`.

A :class:`~aetheris.run.JobRun` holds a :class:`Probe` bound to its job and lease; the places
where operations happen call it: the dispatch of a tool, step or compensation
(:func:`aetheris.ledger.dispatch`), a model call (:mod:`aetheris.modelcalls`), the journal
cursor for operations it serves from the journal, and the run's commits for waits that end.
With no observer (``on`` false) it reports nothing and builds nothing to report; it still binds
the operation's position to :data:`aetheris.observe.where`, for log lines.
"""

from __future__ import annotations

from collections.abc import Sequence

from aetheris.clock import Clock
from aetheris.journal import EventDraft, EventLike, EventType, OpRecord
from aetheris.observe import (
    NOOP,
    SILENT,
    Live,
    Observer,
    OperationDone,
    OperationStarted,
)

WAITS = frozenset({"signal", "approval", "sleep", "child"})


class Probe:
    """The observer of one run, bound to its job id and fencing token."""

    __slots__ = ("_began", "_clock", "epoch", "job_id", "observer", "on")

    def __init__(
        self,
        observer: Observer,
        job_id: str,
        epoch: int,
        events: Sequence[EventLike],
        clock: Clock,
    ) -> None:
        self.observer = observer
        self.on = observer is not NOOP
        self.job_id = job_id
        self.epoch = epoch
        self._clock = clock
        # When each wait first parked (its first ``wait`` event: an escalation writes another),
        # to tell how long it waited.
        self._began: dict[int | None, float] = {}
        for event in events if self.on else ():
            if event.type is EventType.WAIT:
                self._began.setdefault(event.position, event.at)

    def start(
        self, position: int, kind: str, name: str, attempt: int = 1, effect: str = "pure"
    ) -> Live:
        """An operation runs live from now until the returned :class:`Live` ends."""
        scope = SILENT
        if self.on:
            op = OperationStarted(self.job_id, position, kind, name, self.epoch, attempt, effect)
            scope = self.observer.operation_started(op)
        return Live(self.job_id, self.epoch, position, scope)

    def replayed(self, position: int, record: OpRecord) -> None:
        """An operation answered from the journal: nothing ran."""
        done = OperationDone(
            self.job_id, position, record.kind, record.name, self.epoch, record.outcome, True
        )
        self.observer.operation_done(done)

    def committed(self, drafts: Sequence[EventDraft]) -> None:
        """The waits among ``drafts`` (written now) ended: how long each waited."""
        now = self._clock.time()
        for draft in drafts:
            data = draft.data
            if draft.type is not EventType.OP or data.get("kind") not in WAITS:
                continue
            waited = max(0.0, now - self._began.get(draft.position, now))
            position = draft.position if draft.position is not None else -1
            outcome = str(data.get("outcome", "pure"))
            kind, name = data["kind"], data["name"]
            done = OperationDone(
                self.job_id, position, kind, name, self.epoch, outcome, False, waited
            )
            self.observer.operation_done(done)
