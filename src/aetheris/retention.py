"""How long ended jobs are kept: :class:`Retention`, and ages written as ``30d`` or ``12h``.

An App keeps ended jobs forever unless it is given a retention (``App(retention="30d")``,
``aetheris worker --retention 30d``, or ``[retention] older_than`` in ``aetheris.toml``);
an agent may keep its jobs for another time (``@app.agent(retention="7d")``, or
``"forever"``). Workers then delete, now and then, the jobs that ended longer ago than that,
a small batch at a time (see :mod:`aetheris.pruner`, and :mod:`aetheris.store.pruning` for
what a batch deletes). ``aetheris db prune --older-than 30d`` does the same once, by hand.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

from aetheris.errors import ConfigurationError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
FOREVER = math.inf
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")

Age = timedelta | float | int | str


def parse_age(value: Age, what: str = "an age") -> float:
    """Seconds from ``value``: a :class:`~datetime.timedelta`, a number of seconds, or text
    such as ``30d``, ``12h``, ``90m``, ``1d12h`` (units ``s m h d w``) or ``forever``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip().lower(), what)
    else:
        raise ConfigurationError(f"{what} must be a duration such as '30d', got {value!r}")
    if not seconds > 0:
        raise ConfigurationError(f"{what} must be more than 0 seconds, got {value!r}")
    return seconds


def _parse_text(text: str, what: str) -> float:
    if text in ("forever", "never", "inf"):
        return FOREVER
    parts = _AGE.findall(text)
    if not parts or _AGE.sub("", text).strip():
        raise ConfigurationError(
            f"{what}: {text!r} is not a duration; write a number and a unit "
            "(s, m, h, d or w), e.g. 30d, 12h, 90m or 1d12h"
        )
    return sum(float(n) * UNITS[unit] for n, unit in parts)


def show_age(seconds: float) -> str:
    """``30d``, ``12h``, ``1d12h``...: text :func:`parse_age` reads back."""
    if seconds == FOREVER:
        return "forever"
    out, rest = "", seconds
    for unit in ("d", "h", "m"):
        count = int(rest // UNITS[unit])
        if count:
            out, rest = out + f"{count}{unit}", rest - count * UNITS[unit]
    return out + f"{rest:g}s" if rest or not out else out


@dataclass(frozen=True, slots=True)
class Retention:
    """Keep ended jobs ``older_than`` seconds after they end (``FOREVER``: keep them), and
    prune every ``interval`` seconds, ``batch`` jobs per transaction with ``pause`` seconds
    between batches (so that a prune never holds the database for long)."""

    older_than: float = FOREVER
    interval: float = 600.0
    batch: int = 500
    pause: float = 0.2

    def __post_init__(self) -> None:
        if not self.older_than > 0:
            raise ConfigurationError(f"retention must be more than 0 s, got {self.older_than}")
        if not self.interval > 0 or self.pause < 0:
            raise ConfigurationError("retention interval must be > 0 and pause >= 0")
        if self.batch < 1:
            raise ConfigurationError(f"retention batch must be at least 1, got {self.batch}")

    @classmethod
    def of(cls, value: Retention | Age | None) -> Retention | None:
        """A retention from an App's ``retention`` argument (``None``: keep everything)."""
        if value is None or isinstance(value, Retention):
            return value
        return cls(parse_age(value, "retention"))
