"""Saved journals: a job's recorded history as a readable JSON file, to replay in tests.

``aetheris export ID --journal -o FILE`` writes format ``aetheris-journal/1``:

* ``job``: the job's row (agent, input, how it ended);
* ``events``: each event as plain JSON (seq, type, position, at, data), readable in a review;
* ``effects``: the effects ledger; ``blobs``: the payloads the events refer to;
* ``head``: the hash of the last event.

Loading one rebuilds each event's exact bytes from its fields (the encoding is canonical) and
recomputes the hash chain, so a file edited by hand, or cut short, is refused with the seq
where it stops matching. It is a record for replay, not evidence: it carries no anchors and no
signature (an evidence bundle does, see :mod:`aetheris.bundle`). Both formats load here.

Teams keep journals of production runs next to their tests and replay them against each
change with :class:`aetheris.testing.Replayer`, as Temporal users keep workflow histories.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aetheris.app import App
from aetheris.bundle import FORMAT as BUNDLE_FORMAT
from aetheris.bundle import FORMAT_1 as BUNDLE_FORMAT_1
from aetheris.bundle import Bundle, parse_bundle, read_bundle
from aetheris.errors import BundleError, ReplayFailed, UnknownAgent
from aetheris.journal import GENESIS_HASH, EventDraft, EventType, seal, sha256_hex
from aetheris.replay import ReplayReport, replay_history
from aetheris.store.encoded import Payloads

FORMAT = "aetheris-journal/1"


def journal_doc(bundle_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The saved-journal form of an evidence bundle (as :func:`export_bundle` makes it)."""
    bundle = parse_bundle(bundle_doc)
    return {
        "format": FORMAT,
        "job": dict(bundle_doc["job"]),
        "events": [
            {"seq": e.seq, "type": e.type.value, "position": e.position, "at": e.at, "data": e.data}
            for e in bundle.events
        ],
        "effects": list(bundle_doc["effects"]),
        "blobs": dict(bundle_doc.get("blobs", {})),
        "head": bundle.events[-1].hash if bundle.events else None,
    }


def read_journal(doc: Mapping[str, Any]) -> Bundle:
    """The job, events, ledger and blobs of a saved journal or a bundle, chain checked."""
    if doc.get("format") in (BUNDLE_FORMAT, BUNDLE_FORMAT_1):
        return read_bundle(dict(doc))
    if doc.get("format") != FORMAT:
        raise BundleError(
            f"not a saved journal ({FORMAT}) or an evidence bundle (format: {doc.get('format')!r})"
        )
    try:
        job_id, entries = str(doc["job"]["id"]), list(doc["events"])
        events, prev = [], GENESIS_HASH
        for entry in entries:
            draft = EventDraft(EventType(entry["type"]), entry["data"], entry["position"])
            events.append(seal(job_id, int(entry["seq"]), prev, draft, entry["at"]))
            prev = events[-1].hash
        as_bundle = {
            "format": BUNDLE_FORMAT_1,
            "job": doc["job"],
            "effects": doc["effects"],
            "blobs": doc.get("blobs", {}),
            "events": [],
        }
        parsed = parse_bundle(as_bundle)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError(f"malformed saved journal: {exc!r}") from exc
    _check(doc, events)
    for digest, body in parsed.blobs.items():
        if sha256_hex(body) != digest:
            raise BundleError(f"blob {digest} does not match its bytes")
    return Bundle(parsed.job, events, parsed.effects, parsed.blobs)


def _check(doc: Mapping[str, Any], events: list[Any]) -> None:
    for index, event in enumerate(events):
        if event.seq != index:
            raise BundleError(f"the events skip from seq {index - 1} to {event.seq}")
    head = events[-1].hash if events else None
    if head != doc.get("head"):
        raise BundleError(
            "the events do not hash to the saved head: the file was edited or cut short "
            f"after it was exported ({len(events)} events)"
        )


def load_journal(path: str | Path) -> Bundle:
    """Read a saved journal (or an evidence bundle) from a file."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise BundleError(f"{path}: not a saved journal (a JSON object)")
    try:
        return read_journal(doc)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc


class Replayer:
    """Replays saved journals against an app's code, executing nothing (Temporal's replayer).

    Journals are files written by ``aetheris export ID --journal`` (or evidence bundles); a
    folder stands for the ``*.json`` files in it. Each report says ``matched``, ``incomplete``
    (the job had not ended when it was saved), ``different_end`` or ``diverged``: the position,
    what the journal holds there and what the code asked for, and the line that asked::

        def test_production_journals_still_replay() -> None:
            Replayer(app).check("tests/journals")
    """

    def __init__(self, app: App) -> None:
        self.app = app

    async def replay(self, journal: str | Path) -> ReplayReport:
        """Replay one saved journal; a file that is not one raises :class:`BundleError`."""
        saved = _revealed(self.app, await asyncio.to_thread(load_journal, journal))
        try:
            report = await replay_history(
                self.app, saved.job, saved.events, saved.effects, saved.blobs
            )
        except UnknownAgent as exc:
            ops = sum(1 for e in saved.events if e.type is EventType.OP)
            report = ReplayReport(saved.job.id, "unknown_agent", ops, diff=str(exc))
        return dataclasses.replace(report, source=str(journal))

    async def replay_all(
        self, *journals: str | Path, raise_on_failure: bool = True
    ) -> list[ReplayReport]:
        """Replay every journal (files or folders of them), one report each, in order; raise
        :class:`ReplayFailed` naming each one that failed, unless told not to."""
        reports = [await self.replay(path) for path in _files(journals)]
        failed = [r for r in reports if not r.ok]
        if failed and raise_on_failure:
            raise ReplayFailed(_failures(failed, len(reports)), reports)
        return reports

    def check(self, *journals: str | Path) -> list[ReplayReport]:
        """:meth:`replay_all` from synchronous code (a plain pytest test)."""
        return asyncio.run(self.replay_all(*journals))


def _revealed(app: App, saved: Bundle) -> Bundle:
    """A saved journal as the worker read it: payloads decoded with ``app``'s codec (a
    journal of an encrypted job holds its ciphertext), secret fields whole."""
    p = Payloads(app.codec, "reveal", app.payloads.secret)
    return Bundle(
        p.job(saved.job),
        [p.event(e) for e in saved.events],
        [
            dataclasses.replace(e, result=p.read(e.result), error=p.read(e.error))
            for e in saved.effects
        ],
        {digest: p.read_blob(body) for digest, body in saved.blobs.items()},
    )


def _files(journals: Iterable[str | Path]) -> list[Path]:
    found: list[Path] = []
    for given in map(Path, journals):
        if given.is_dir():
            found.extend(sorted(given.glob("*.json")))
        else:
            found.append(given)
    if not found:
        raise ReplayFailed("no saved journals were given (or the folders hold none)", [])
    return found


def _failures(failed: list[ReplayReport], total: int) -> str:
    lines = [f"{len(failed)} of {total} saved journals do not replay against this code:"]
    for report in failed:
        where = f" at position {report.position}" if report.position is not None else ""
        lines.append(f"- {report.source} (job {report.job_id}): {report.outcome}{where}")
        if report.diff:
            lines.extend("    " + line for line in report.diff.splitlines())
        if report.outcome == "different_end":
            lines.append(f"    recorded: {report.recorded_end}")
            lines.append(f"    replayed: {report.replayed_end}")
    return "\n".join(lines)


__all__ = ["FORMAT", "Replayer", "journal_doc", "load_journal", "read_journal"]
