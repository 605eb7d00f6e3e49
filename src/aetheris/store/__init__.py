"""Stores behind one port: ``memory://``, ``sqlite:///file.db``, ``postgresql://...``."""

from __future__ import annotations

import os

from aetheris.anchor import SigningKey
from aetheris.clock import SYSTEM_CLOCK, Clock
from aetheris.errors import ConfigurationError
from aetheris.store.port import Store

DEFAULT_URL = "sqlite:///.aetheris/aetheris.db"


def default_url() -> str:
    """``AETHERIS_DATABASE_URL``, else a SQLite file under ``.aetheris/`` in the working dir."""
    return os.environ.get("AETHERIS_DATABASE_URL") or DEFAULT_URL


def create_store(
    url: str, *, clock: Clock = SYSTEM_CLOCK, signer: SigningKey | None = None
) -> Store:
    """A store for ``url``, not yet opened; with ``signer``, every write it makes stores an
    anchor (see :mod:`aetheris.anchor`)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from aetheris.store.memory import MemoryStore

        return MemoryStore(url, clock=clock.time, signer=signer)
    if scheme == "sqlite":
        from aetheris.store.sqlite import SQLiteStore

        return SQLiteStore(url, clock=clock.time, signer=signer)
    if scheme in ("postgres", "postgresql"):
        from aetheris.store.postgres import PostgresStore

        return PostgresStore(url, signer=signer)
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use memory://, sqlite:///file.db or postgresql://"
    )


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
