"""Where in the user's code an operation was asked for: the first frame outside Aetheris.

Used when the code and the journal disagree (:func:`divergence`), so the report points at the
line that asked for the operation the journal does not hold. A frame in an installed package (a
framework calling a tool on the agent's behalf) is kept only if no frame of the user's own code
is found further out; the standard library's frames (asyncio's) never are.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_OURS = str(Path(__file__).resolve().parent) + os.sep


def _prefixes(*keys: str) -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple({str(Path(paths[k]).resolve()) + os.sep for k in keys if paths.get(k)})


_STDLIB = _prefixes("stdlib", "platstdlib")
_PACKAGES = _prefixes("purelib", "platlib")


def user_frame(depth: int = 1) -> str | None:
    """``path:line in function`` of the innermost caller outside this package, or None."""
    frame = sys._getframe(depth)
    fallback = None
    while frame is not None:
        path = frame.f_code.co_filename
        where = f"{_shown(path)}:{frame.f_lineno} in {frame.f_code.co_name}"
        if path.startswith(_PACKAGES):  # before the standard library: it may hold them
            fallback = fallback or where
        elif not path.startswith((_OURS, "<", *_STDLIB)):
            return where
        frame = frame.f_back  # type: ignore[assignment]
    return fallback


def _shown(path: str) -> str:
    """A path relative to the working directory when it is under it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def divergence(
    position: int, expected: Mapping[str, Any], got: Mapping[str, Any], holds: str
) -> tuple[str, str | None]:
    """The readable report of a divergence at ``position``, and the line of code that asked
    for ``got`` (None when the code asked for nothing: it ended short of the journal).
    Called by the run's cursor, itself called from the agent's code."""

    def show(entry: Mapping[str, Any]) -> str:
        if not entry:
            return "(nothing)"
        digest = entry.get("args_hash") or ""
        return f"{entry.get('kind')} {entry.get('name')} (args {digest[:12]})"

    location = user_frame(3) if got else None
    diff = (
        f"nondeterminism at position {position}: the journal and the code disagree\n"
        f"  journal: {show(expected)}{holds}\n"
        f"  code:    {show(got)}" + (f"\n  at:      {location}" if location else "")
    )
    return diff, location
