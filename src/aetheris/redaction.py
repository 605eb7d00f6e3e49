"""Secret fields: values a tool or an agent declared secret, kept for the worker only.

``@app.tool(secret=("card_number",))`` and ``@app.agent(secret=(...))`` name fields (object
keys, at any depth) of a tool's result and arguments, or of an agent's input and result, whose
values must never be shown. They are stored marked, ``{"$secret": value}``, by the store
wrapper (:mod:`aetheris.store.encoded`), which knows the declarations of its App. A read made
for people (the CLI, the HTTP API, the web UI, the journal export) sees ``"[redacted]"``
there; the worker's reads see the value, so replay returns what the live run did. The mark
needs no registry: a process that reads without the App's code redacts the same fields.

With a payload codec the marked values are encrypted like the rest of their payload. Without
one they are in the database in clear, like every payload: secrecy at rest is the codec's job.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

SECRET = "$secret"
REDACTED = "[redacted]"

View = Literal["reveal", "redact", "keep"]


def mark(value: Any, names: Collection[str]) -> Any:
    """``value`` with the value of every key in ``names`` (at any depth) marked secret."""
    if not names:
        return value
    if isinstance(value, dict):
        if _is_marked(value):
            return value
        return {k: _marked(v) if k in names else mark(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [mark(item, names) for item in value]
    return value


def unmark(value: Any, view: View) -> Any:
    """``value`` for a reader: marked values revealed (``reveal``), redacted (``redact``) or
    left marked (``keep``, for a copy into another journal)."""
    if view == "keep":
        return value
    if isinstance(value, dict):
        if _is_marked(value):
            return value[SECRET] if view == "reveal" else REDACTED
        return {k: unmark(v, view) for k, v in value.items()}
    if isinstance(value, list):
        return [unmark(item, view) for item in value]
    return value


def _marked(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) and _is_marked(value) else {SECRET: value}


def _is_marked(value: dict[str, Any]) -> bool:
    return len(value) == 1 and SECRET in value
