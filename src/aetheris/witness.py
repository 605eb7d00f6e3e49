"""A witness file: what a verifier has seen of each journal, kept outside the database.

Anchors prove who wrote each event, but not that nothing was removed since: someone who can
write to the database can delete a job's last writes (or the whole job) and put its row back
as it was, and every signature left still holds. A journal only grows, so a verifier that
remembers how far each journal reached, and its hash there, catches any such cut the next
time it looks: ``aetheris verify --all --witness FILE`` checks every job against the file,
then records what it verified. The file is small (a job id, a count and a hash per job) and
must be kept where the database's writers cannot change it.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aetheris.errors import ConfigurationError

FORMAT = "aetheris-witness/1"


@dataclass(frozen=True, slots=True)
class Seen:
    """A journal as a verifier saw it: ``events`` events, the last one's hash ``head``."""

    events: int
    head: str


@dataclass(slots=True)
class Witness:
    """What a verifier saw, by job id; :meth:`load` and :meth:`save` keep it in a file."""

    path: Path | None = None
    jobs: dict[str, Seen] = field(default_factory=dict)

    def seen(self, job_id: str) -> Seen | None:
        return self.jobs.get(job_id)

    def record(self, job_id: str, events: int, head: str) -> None:
        """Remember a journal verified now (never moving a job's record backwards)."""
        known = self.jobs.get(job_id)
        if known is None or events >= known.events:
            self.jobs[job_id] = Seen(events, head)

    def forget(self, job_id: str) -> None:
        """Stop watching a job that is gone for a reason a verifier accepted (a prune)."""
        self.jobs.pop(job_id, None)

    @classmethod
    def load(cls, path: str | Path) -> Witness:
        """The witness in ``path``; a file that does not exist yet is an empty witness."""
        target = Path(path)
        if not target.exists():
            return cls(target)
        try:
            doc = json.loads(target.read_text("utf-8"))
            if doc.get("format") != FORMAT:
                raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
            jobs = {k: Seen(int(v["events"]), str(v["head"])) for k, v in doc["jobs"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"{target} is not a readable witness file: {exc}") from exc
        return cls(target, jobs)

    def save(self) -> None:
        """Write the file anew, atomically (a crash leaves the old one or the new one)."""
        if self.path is None:
            raise ConfigurationError("this witness has no file to be saved to")
        jobs = {k: {"events": v.events, "head": v.head} for k, v in sorted(self.jobs.items())}
        text = json.dumps({"format": FORMAT, "jobs": jobs}, indent=0, sort_keys=True)
        folder = self.path.parent if str(self.path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=".witness-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


__all__ = ["Seen", "Witness"]
