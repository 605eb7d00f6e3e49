"""The SQL both stores share: named queries and ordered migrations per dialect in ``.sql``
files (here), statement parameters and row mapping (:mod:`.rows`), and the steps of a write
(:mod:`.steps`). The adapters (``sqlite.py``, ``postgres.py``) only do the I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from aetheris.errors import SchemaMismatch, StoreError

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def queries(dialect: str) -> dict[str, str]:
    """The named queries of one dialect, parsed from ``<dialect>/queries.sql``.

    Comment lines and indentation are dropped (no statement has a string literal spanning
    lines): psycopg caches the conversion of a statement to the server's placeholders only up
    to 4,096 bytes (``MAX_CACHED_STATEMENT_LENGTH``), and converting the commit statement again
    on every step cost as much client CPU as the rest of the store's work for it.
    """
    text = resources.files(__package__).joinpath(dialect, "queries.sql").read_text("utf-8")
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [ln.strip() for ln in body.strip().splitlines()]
        named[name] = "\n".join(ln for ln in lines if ln and not ln.startswith("--"))
    return named


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """Ordered migrations of one dialect, from files named ``NNNN_description.sql``."""
    folder = resources.files(__package__).joinpath(dialect, "migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    expected = list(range(1, len(found) + 1))
    if [m.version for m in found] != expected:
        raise StoreError(f"{dialect} migrations are not numbered 1..n: {found}")
    return tuple(found)


@cache
def schema(dialect: str) -> str:
    """The fresh schema at the latest version (``<dialect>/schema.sql``)."""
    return resources.files(__package__).joinpath(dialect, "schema.sql").read_text("utf-8")


def pending_scripts(dialect: str, current: int, url: str) -> list[str]:
    """What brings a database at schema version ``current`` to the latest: the whole schema
    for a new database, else the migrations after ``current``."""
    steps = migrations(dialect)
    if current > len(steps):
        raise SchemaMismatch(
            f"{url}: schema version {current} is newer than this code ({len(steps)}); "
            "upgrade aetheris"
        )
    return [schema(dialect)] if current == 0 else [step.sql for step in steps[current:]]
