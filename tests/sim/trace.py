"""A run's trace: JSON lines of what happened, in virtual time only, and its hash.

Two runs of one seed must produce byte-identical traces: no wall-clock field, no object ids, no
hostnames, keys sorted. The hash is the run's fingerprint for the determinism self-check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Trace:
    """Append-only lines; ``now`` reads the virtual clock."""

    now: Callable[[], float]
    lines: list[str] = field(default_factory=list)
    keep: bool = True

    def add(self, event: str, **fields: Any) -> None:
        """Record ``event`` at the current virtual time."""
        record = {"t": round(self.now(), 6), "ev": event, **fields}
        line = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
        self._digest.update(line.encode() + b"\n")
        if self.keep:
            self.lines.append(line)

    def __post_init__(self) -> None:
        self._digest = hashlib.sha256()

    @property
    def digest(self) -> str:
        """sha256 of every line so far."""
        return self._digest.hexdigest()

    def events(self) -> list[dict[str, Any]]:
        """The trace, parsed."""
        return [json.loads(line) for line in self.lines]
