"""Structured logs: every line says which job, journal position and fencing token it is about.

The runtime does not pass the job to each log call. What the code running now works for is in
a context variable (:data:`aetheris.observe.where`: the worker binds it for a run, the runtime
for each operation it dispatches), and :class:`ContextFilter`, on a handler, copies it onto
every record as ``job_id``, ``position`` and ``fencing_token`` (the lease epoch): the lines of
the worker, of the runtime, of tools and of the libraries they call alike, in threads too
(the threads of plain-function bodies run in a copy of the context).

Two formats (:func:`configure`, ``--log-format`` of ``aetheris worker`` and ``server``, env
``AETHERIS_LOG_FORMAT``):

* ``text``: ``2025-01-01 12:00:00,123 INFO aetheris.worker.jobs job J succeeded: ...`` with
  `` [job_id=J position=3 fencing_token=2]`` at the end of lines that have them;
* ``json``: one object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
  then ``job_id``, ``position``, ``fencing_token`` where there are, and ``exc_info`` (the
  traceback) for a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Any, Literal

from aetheris.errors import ConfigurationError
from aetheris.observe import where

__all__ = [
    "FIELDS",
    "FORMATS",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "format_from_env",
]

LogFormat = Literal["text", "json"]
FORMATS: tuple[LogFormat, ...] = ("text", "json")
FIELDS = ("job_id", "position", "fencing_token")
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class ContextFilter(logging.Filter):
    """Puts ``job_id``, ``position`` and ``fencing_token`` on each record (``None`` where
    the line is about no job; a value given with ``extra=`` is kept). Add it to a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        live = where.get()
        values = (None, None, None) if live is None else (live.job_id, live.position, live.epoch)
        for field, value in zip(FIELDS, values, strict=True):
            if getattr(record, field, None) is None:
                setattr(record, field, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {f: v for f in FIELDS if (v := getattr(record, f, None)) is not None}


class TextFormatter(logging.Formatter):
    """The classic line, with ``[job_id=J position=P fencing_token=E]`` where there are."""

    def __init__(self) -> None:
        super().__init__(TEXT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        found = _fields(record)
        if not found:
            return line
        return f"{line} [{' '.join(f'{k}={v}' for k, v in found.items())}]"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        at = dt.datetime.fromtimestamp(record.created, dt.UTC)
        doc: dict[str, Any] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc_info"] = record.exc_text
        if record.stack_info:
            doc["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def format_from_env(given: str | None = None) -> LogFormat:
    """``given``, else env ``AETHERIS_LOG_FORMAT``, else ``text``; anything else is refused."""
    value = (given or os.environ.get("AETHERIS_LOG_FORMAT") or "text").strip().lower()
    for known in FORMATS:
        if value == known:
            return known
    raise ConfigurationError(
        f"unknown log format {value!r} (AETHERIS_LOG_FORMAT or --log-format): "
        f"expected one of {', '.join(FORMATS)}"
    )


def configure(log_format: str | None = None, level: int = logging.INFO) -> logging.Handler:
    """Log to standard error, in ``log_format`` (see :func:`format_from_env`), with the
    job's fields on every line; replaces the root logger's handlers. Returns the handler."""
    chosen = format_from_env(log_format)
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    return handler
