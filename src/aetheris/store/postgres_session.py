"""The PostgreSQL store's helpers: its URL options, the group commit of a process's writes,
the listening session that holds a worker's liveness lock, and workers' rows."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import tuple_row

from aetheris.bell import Bell
from aetheris.errors import SchemaMismatch, StoreError, StoreUnavailable
from aetheris.store import safe_url as safe_url
from aetheris.store import sql
from aetheris.store.port import WORKER_FORGET_AFTER, SchemaState, WorkerInfo
from aetheris.store.sql.rows import POSTGRESQL, worker_params

log = logging.getLogger("aetheris.postgres")
Q = sql.queries("postgresql")


def split_options(url: str) -> tuple[str, dict[str, str]]:
    """Take ``aetheris_*`` query parameters (ours) out of a libpq URL (the rest is libpq's)."""
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.startswith("aetheris_"):
            ours[key.removeprefix("aetheris_")] = value
        else:
            theirs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(theirs))), ours


async def probe(url: str, connect_timeout: float) -> None:
    """Connect once before a pool does: a server that is restarting is waited for (up to
    ``connect_timeout``) without a warning per attempt, and one that stays down or refuses us
    is reported in the driver's words, not as a pool timeout."""
    deadline = time.monotonic() + connect_timeout
    delay = 0.1
    while True:
        left = deadline - time.monotonic()
        try:
            conn = await psycopg.AsyncConnection.connect(url, connect_timeout=max(1, int(left)))
        except psycopg.OperationalError as exc:
            if time.monotonic() + delay >= deadline or "authentication" in str(exc):
                raise StoreUnavailable(
                    f"cannot connect to PostgreSQL at {safe_url(url)}: {exc}"
                ) from exc
            if delay == 0.1:
                log.warning(
                    "waiting up to %g s (?aetheris_connect_timeout=) for PostgreSQL at %s: %s",
                    connect_timeout,
                    safe_url(url),
                    first_line(exc),
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {safe_url(url)}: {exc}"
            ) from exc
        else:
            await conn.close()
            return


def first_line(exc: BaseException) -> str:
    """The driver's reason without its hints: "connection refused", not three lines."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.rsplit(": ", 1)[-1] if text.startswith("connection failed") else text


async def schema_state(conn: psycopg.AsyncConnection[Any]) -> SchemaState:
    latest = len(sql.migrations("postgresql"))
    if await (await conn.execute(Q["schema_table"])).fetchone() is None:
        return SchemaState(0, latest)
    row = await (await conn.execute(Q["schema_version"])).fetchone()
    return SchemaState(row["version"] if row else 0, latest)


def schema_mismatch(url: str, state: SchemaState, exc: psycopg.Error) -> StoreError:
    """A statement failed on tables this code does not know: name the versions and the fix."""
    if state.current == state.latest:
        return StoreError(f"PostgreSQL: {exc}")
    newer = state.current > state.latest
    return SchemaMismatch(
        f"{safe_url(url)}: the schema is at version {state.current}, "
        f"{'newer' if newer else 'older'} than this code ({state.latest}), and a statement "
        f"failed on it ({exc}); "
        + (
            "restart this process with the aetheris that migrated the database"
            if newer
            else "run `aetheris db migrate`"
        )
    )


def lock_key(owner: str) -> int:
    """A stable signed 64-bit advisory lock key for a worker id."""
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:8], "big", signed=True)


def prepare_commit(conn: psycopg.AsyncConnection[Any]) -> bool | None:
    """The commit statement is prepared on a connection's first commit, not its sixth
    (psycopg's threshold): until then the server parsed and planned it on every step, and a
    W4 run of 20 turns makes 40 commits over a few parameter types and pooled connections.
    ``None`` where prepared statements are off (``prepare_threshold=None``, as behind a
    transaction-pooling PgBouncer): psycopg's own rule, which then prepares nothing."""
    return True if conn.prepare_threshold is not None else None


async def read_journal(
    conn: psycopg.AsyncConnection[Any], query: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    """A journal's rows (the ``events`` or ``journal`` query), in order, by walking the
    primary key.

    Left to itself the planner reads a long journal with a scan and a sort: a bitmap heap scan
    on a never-analyzed table; a sequential (or parallel) scan of the whole table where the
    statistics say most jobs are short. The sort of a 10,000-event journal (5 MB, past the
    default ``work_mem``) goes to disk; all of it, three times the time of walking the key,
    which returns the rows in order already. A connection's first executions get such a plan
    (psycopg prepares a statement at its sixth), so a fresh worker taking over a crashed one's
    long jobs paid it on every resume. ``enable_sort = off`` for this transaction leaves the
    walk of the key as the only plan without a sort. BEGIN, the setting, the query and COMMIT
    go as one pipeline with one sync: one round trip, as the query alone (about 60 µs more for
    a short journal; psycopg's ``transaction()`` syncs at its own end, about 250 µs more). On a
    failure the transaction is rolled back here, so the pool gets the connection back idle."""
    try:
        async with conn.pipeline():
            await conn.execute("BEGIN")
            await conn.execute(Q["walk_the_journal_key"])
            cur = conn.cursor(row_factory=tuple_row, binary=True)  # bodies as bytes, not hex
            await cur.execute(Q[query], params)
            await conn.execute("COMMIT")
    except BaseException:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                await conn.rollback()
        raise
    return await cur.fetchall()


async def lock_is_free(conn: psycopg.AsyncConnection[Any], key: int) -> bool:
    """Is a worker's liveness lock free? (Taking it to know, then giving it back.)"""
    row = await (await conn.execute(Q["try_lock"], {"key": key})).fetchone()
    if row is None:
        raise StoreError("PostgreSQL returned no row for pg_try_advisory_lock")
    if row["free"]:
        await conn.execute(Q["unlock"], {"key": key})
    return bool(row["free"])


class GroupedStore(Protocol):
    async def _commit_one(self, params: dict[str, Any]) -> int: ...
    async def _commit_many(self, batch: list[dict[str, Any]]) -> list[int | BaseException]: ...


class CommitGroup:
    """Group commit: while one commit is in flight, later ones queue and go together next.

    A lone job's commit runs at once (no added latency); under load, commits of many jobs
    share a transaction, a round trip and a WAL flush.
    """

    def __init__(self, store: GroupedStore) -> None:
        self.store = store
        self.queue: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self.busy = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None

    async def commit(self, params: dict[str, Any]) -> int:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop, self.queue, self.busy = loop, [], False
        if self.busy:
            future: asyncio.Future[int] = loop.create_future()
            self.queue.append((params, future))
            return await future
        self.busy = True
        try:
            return await self.store._commit_one(params)
        finally:
            if self.queue:
                self._drainer = loop.create_task(self._drain())
            else:
                self.busy = False

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                try:
                    results = await self.store._commit_many([params for params, _ in batch])
                except BaseException as exc:
                    results = [StoreUnavailable(f"PostgreSQL commit interrupted: {exc!r}")] * len(
                        batch
                    )
                    if not isinstance(exc, Exception):
                        self._settle(batch, results)
                        raise
                self._settle(batch, results)
        finally:
            self.busy = False

    @staticmethod
    def _settle(
        batch: list[tuple[dict[str, Any], asyncio.Future[int]]],
        results: list[int | BaseException],
    ) -> None:
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class Listener:
    """A dedicated session: holds the worker's advisory lock and listens for work."""

    def __init__(self, url: str, connect_timeout: float) -> None:
        self.url = url
        self.key: int | None = None
        self._connect_timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None
        self._bell = Bell()
        self.connected = asyncio.Event()

    async def start(self, key: int) -> None:
        self.key = key
        self._task = asyncio.create_task(self._run(), name="aetheris-pg-listener")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._connect_timeout):
                await self.connected.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._bell.ring()

    async def wait(self, timeout: float) -> None:
        await self._bell.wait(timeout)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=int(self._connect_timeout)
                )
                async with conn:
                    await conn.execute(Q["worker_lock"], {"key": self.key})
                    await conn.execute(Q["listen"])
                    self.connected.set()
                    delay = 0.1
                    self._bell.ring()
                    async for _ in conn.notifies():
                        self._bell.ring()
            except psycopg.Error as exc:
                log.warning("listener connection lost (%s); reconnecting in %.1fs", exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class Presence:
    """The rows of the workers registered through one store (see ``Store.workers``); times
    are the database's clock."""

    def __init__(self) -> None:
        self.registered: dict[str, WorkerInfo] = {}  # what a touch writes back if it must

    async def register(self, conn: psycopg.AsyncConnection[Any], info: WorkerInfo) -> None:
        async with conn.transaction():
            await conn.execute(Q["forget_workers"], {"forget": WORKER_FORGET_AFTER})
            cur = await conn.execute(Q["register_worker"], worker_params(info, POSTGRESQL))
            row = await cur.fetchone()
        if row is None:
            raise StoreError("PostgreSQL returned no row for a worker it registered")
        self.registered[info.id] = dataclasses.replace(info, started_at=row["started_at"])

    async def touch(self, conn: psycopg.AsyncConnection[Any], owner: str) -> None:
        await conn.execute(Q["touch_worker"], worker_params(self.registered[owner], POSTGRESQL))

    async def withdraw(
        self, conn: psycopg.AsyncConnection[Any], owner: str, graceful: bool
    ) -> None:
        """Forget ``owner``; a graceful stop also removes its row (a killed worker's stays)."""
        self.registered.pop(owner, None)
        if graceful:
            await conn.execute(Q["delete_worker"], {"id": owner})
