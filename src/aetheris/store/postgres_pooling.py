"""How the PostgreSQL store connects: its pool sizes, its ``application_name`` and what a
connection pooler (PgBouncer) in front of the server allows.

The connection budget of one process (one store) is

* the pool: ``pool_min`` connections always open, growing to ``pool_max`` under load (idle ones
  above ``pool_min`` close after 10 minutes);
* a worker adds one dedicated session (``LISTEN`` for work, and its liveness advisory lock) --
  none behind transaction pooling;
* ``open()`` connects once more, briefly, to wait for a server that is restarting (and, with
  ``aetheris_pgbouncer=auto``, a second short-lived connection to tell the pooling mode).

Behind PgBouncer:

* **session pooling** keeps a server session per client session: everything works as direct.
* **transaction pooling** hands each transaction to any server session. So there are no server
  side prepared statements (psycopg's ``prepare_threshold=None``), no ``LISTEN`` (idle workers
  poll) and no session advisory lock (a killed worker's jobs are taken over when their lease
  expires, not within ``reap_grace``). A warning says so once, when the store opens.
* **statement pooling** cannot run a transaction of several statements: refused.

``auto`` tells them apart with facts a client can see. Behind PgBouncer the key the server sent
at connection time (``BackendKeyData``, PgBouncer's own cancel key) is not the backend process
id that ``pg_backend_pid()`` reports; direct, they are equal. Statement pooling refuses a
``BEGIN`` block. Two client sessions that get the same backend (pool reuses its last idle
server first, PgBouncer's default) prove transaction pooling; if they never do, the mode is
taken to be session. Rejected: ``SHOW pool_mode`` (only on PgBouncer's admin console, which
needs an admin user) and comparing session settings (``server_reset_query`` may clear them).
Name the mode explicitly where the pooler is configured otherwise (``server_round_robin``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.abc import ACT

from aetheris.errors import ConfigurationError, StoreUnavailable
from aetheris.store import safe_url, sql

log = logging.getLogger("aetheris.postgres")
Q = sql.queries("postgresql")

Mode = Literal["none", "session", "transaction"]
MODES = ("auto", "none", "session", "transaction", "statement")
DEFAULT_APPLICATION_NAME = "aetheris"
POOL_MIN_ENV = "AETHERIS_PG_POOL_MIN"
POOL_MAX_ENV = "AETHERIS_PG_POOL_MAX"
_ROUNDS = 3  # pairs of queries that look for a shared backend


@dataclasses.dataclass(frozen=True)
class Pooling:
    """What the URL, the environment and the defaults say about connections."""

    min_size: int
    max_size: int
    pgbouncer: str  # one of MODES; "auto" until the store opens

    def settled(self, mode: Mode) -> Pooling:
        return dataclasses.replace(self, pgbouncer=mode)

    @property
    def transaction_pooled(self) -> bool:
        return self.pgbouncer == "transaction"

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of every connection the store makes, besides the URL's."""
        if self.transaction_pooled:  # a prepared statement lives in one server session
            return {"prepare_threshold": None}
        return {}


def pooling_from(
    options: dict[str, str],
    min_default: int,
    max_default: int,
    environ: Mapping[str, str] = os.environ,
) -> Pooling:
    """Take the pool options out of ``options`` (the URL's ``aetheris_*`` parameters).

    The URL wins over ``AETHERIS_PG_POOL_MIN`` / ``AETHERIS_PG_POOL_MAX``, which win over the
    defaults. ``aetheris_min_connections`` / ``aetheris_max_connections`` are older names."""
    low = _size(options, ("pool_min", "min_connections"), POOL_MIN_ENV, min_default, environ)
    high = _size(options, ("pool_max", "max_connections"), POOL_MAX_ENV, max_default, environ)
    if low < 0 or high < 1 or low > high:
        raise ConfigurationError(
            f"PostgreSQL pool sizes must satisfy 0 <= pool_min <= pool_max and pool_max >= 1, "
            f"got pool_min={low}, pool_max={high}"
        )
    mode = options.pop("pgbouncer", "auto").strip().lower()
    if mode not in MODES:
        raise ConfigurationError(
            f"?aetheris_pgbouncer={mode!r}: expected one of auto, none, session, transaction"
        )
    if mode == "statement":
        raise statement_refused("?aetheris_pgbouncer=statement")
    return Pooling(low, high, mode)


def _size(
    options: dict[str, str],
    names: tuple[str, ...],
    env: str,
    default: int,
    environ: Mapping[str, str],
) -> int:
    found = [(f"?aetheris_{n}=", options.pop(n)) for n in names if n in options]
    source, text = found[0] if found else (f"{env}=", environ.get(env, ""))
    if not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{source}{text!r} is not a whole number") from None


class RecentFirstPool(AsyncConnectionPool[ACT]):
    """psycopg's pool, handing out the connection given back last instead of the one idle
    longest. A worker's steps commit one at a time, so they now go through one warm connection
    (its server process's caches hot, the commit statement prepared on it) rather than through
    each pooled connection in turn, which cost a few percent per step and stretched the warm-up
    of a fresh worker over every connection; the connections a burst opened stay idle and are
    the ones the pool closes after ``max_idle``. (Overrides psycopg_pool's
    ``_get_ready_connection``, which runs under the pool's lock; a test fails if it stops being
    called.)"""

    async def _get_ready_connection(self, timeout: float | None) -> ACT | None:
        self._pool.rotate(1)  # the pool takes from the left: the last one given back goes first
        return await super()._get_ready_connection(timeout)


async def open_pool(
    url: str, pooling: Pooling, timeout: float
) -> AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]]:
    """The store's pool, open with its ``min_size`` connections (autocommit, rows as dicts)."""
    pool: AsyncConnectionPool[psycopg.AsyncConnection[dict[str, Any]]] = RecentFirstPool(
        url,
        min_size=pooling.min_size,
        max_size=pooling.max_size,
        open=False,
        timeout=timeout,
        kwargs={"autocommit": True, "row_factory": dict_row, **pooling.connect_kwargs()},
        name="aetheris",
    )
    try:
        await pool.open(wait=True, timeout=timeout)
    except (PoolTimeout, psycopg.Error) as exc:
        await pool.close()
        raise StoreUnavailable(f"cannot connect to PostgreSQL at {safe_url(url)}: {exc}") from exc
    return pool


def statement_refused(why: str) -> ConfigurationError:
    return ConfigurationError(
        f"PgBouncer in statement pooling mode ({why}) cannot run Aetheris: a durable step is a "
        "transaction of several statements. Use pool_mode = session or transaction for this "
        "database in pgbouncer.ini"
    )


def with_application_name(url: str, name: str = DEFAULT_APPLICATION_NAME) -> str:
    """``url`` with ``application_name=name`` unless it (or ``PGAPPNAME``) names one already,
    so ``pg_stat_activity`` tells Aetheris' sessions apart."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "application_name" for key, _ in query) or os.environ.get("PGAPPNAME"):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("application_name", name)])))


def for_process(url: str, application_name: str, pool_max: int | None = None) -> str:
    """A PostgreSQL URL for a long-running process (``aetheris worker``, ``aetheris server``):
    its ``application_name``, and ``aetheris_pool_max`` when given. Other URLs as they are."""
    if url.split(":", 1)[0].lower() not in ("postgres", "postgresql"):
        return url
    url = with_application_name(url, application_name)
    if pool_max is None:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = [(k, v) for k, v in query if k not in ("aetheris_pool_max", "aetheris_max_connections")]
    query.append(("aetheris_pool_max", str(pool_max)))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def settle(url: str, pooling: Pooling, connect_timeout: float) -> Pooling:
    """The pooling mode the store runs in: ``auto`` is detected, the others are taken as said
    (and transaction pooling announced)."""
    mode = pooling.pgbouncer
    if mode == "auto":
        mode = await detect(url, connect_timeout)
    settled = pooling.settled(mode)  # type: ignore[arg-type]
    if settled.transaction_pooled:
        log.warning(
            "PgBouncer transaction pooling at %s: no LISTEN, idle workers poll for work; no "
            "session advisory lock, a killed worker's jobs are taken over when their lease "
            "expires; no server-side prepared statements",
            safe_url(url),
        )
    return settled


async def detect(url: str, connect_timeout: float) -> Mode:
    """Direct, or which PgBouncer pooling mode (see the module's docstring)."""
    first = await _connect(url, connect_timeout)
    try:
        if await _pid(first) == first.info.backend_pid:
            return "none"
        try:
            async with first.transaction():
                await first.execute(Q["backend_pid"])
        except psycopg.Error as exc:
            if "statement pooling" in str(exc):
                raise statement_refused(f"detected at {safe_url(url)}") from exc
            raise StoreUnavailable(f"PostgreSQL at {safe_url(url)}: {exc}") from exc
        second = await _connect(url, connect_timeout)
        try:
            return "transaction" if await _share_backends(first, second) else "session"
        finally:
            await second.close()
    finally:
        await first.close()


async def _share_backends(
    first: psycopg.AsyncConnection[Any], second: psycopg.AsyncConnection[Any]
) -> bool:
    """Do two client sessions ever run on one backend, or one on several? Only a pooler that
    lends a backend per transaction does that."""
    seen_first = {await _pid(first)}
    for _ in range(_ROUNDS):
        if await _pid(second) in seen_first:
            return True
        seen_first.add(await _pid(first))
        if len(seen_first) > 1:
            return True
    return False


async def _connect(url: str, connect_timeout: float) -> psycopg.AsyncConnection[Any]:
    try:
        return await psycopg.AsyncConnection.connect(
            url, autocommit=True, prepare_threshold=None, connect_timeout=int(connect_timeout)
        )
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot connect to PostgreSQL at {safe_url(url)}: {exc}") from exc


async def _pid(conn: psycopg.AsyncConnection[Any]) -> int:
    row = await (await conn.execute(Q["backend_pid"])).fetchone()
    assert row is not None
    return int(row[0])
