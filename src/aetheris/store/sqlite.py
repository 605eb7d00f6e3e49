"""SQLite store: the embedded default. WAL mode; several processes may share one file.

All database work of one store runs on one dedicated thread with one connection, so the event
loop never blocks on a busy file or an fsync, and writes of one process are serialized (which
SQLite does anyway). Every write transaction starts with ``BEGIN IMMEDIATE``: it takes the
file's write lock up front, so two processes never deadlock upgrading read locks.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from aetheris import crashpoints
from aetheris.errors import (
    ConfigurationError,
    Conflict,
    IdempotencyConflict,
    JobNotFound,
    LeaseLost,
    SchemaMismatch,
    StoreError,
    StoreUnavailable,
)
from aetheris.journal import GENESIS_HASH, Event, EventDraft, canonical, decode, open_event
from aetheris.store import sql
from aetheris.store._shared import (
    check_guard,
    claimed_draft,
    created_draft,
    head_moved,
    same_request,
    seal_all,
)
from aetheris.store.port import (
    Claim,
    ClaimFilter,
    Commit,
    Effect,
    EffectClass,
    EffectState,
    EffectWrite,
    Guard,
    Job,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    SchemaState,
    StatusWrite,
)

T = TypeVar("T")
Q = sql.queries("sqlite")
_SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA"}


def sqlite_path(url: str) -> tuple[Path, dict[str, str]]:
    """``sqlite:///rel.db`` is relative to the working directory, ``sqlite:////abs.db`` absolute."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ConfigurationError(f"not a SQLite URL: {url!r} (use sqlite:///file.db)")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not path:
        raise ConfigurationError(f"SQLite URL has no file path: {url!r}")
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Path(path), options


class SQLiteStore:
    """Store on a SQLite file (URL ``sqlite:///path.db[?synchronous=normal]``)."""

    def __init__(
        self, url: str, *, clock: Callable[[], float] = time.time, busy_timeout: float = 30.0
    ) -> None:
        self.url = url
        self.path, options = sqlite_path(url)
        mode = options.get("synchronous", "full").lower()
        if mode not in _SYNC_MODES:
            raise ConfigurationError(f"synchronous must be one of {sorted(_SYNC_MODES)}")
        self.synchronous = _SYNC_MODES[mode]
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._presence: dict[str, int] = {}

    # -- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError(f"store {self.url} is not open")
        return await asyncio.wrap_future(self._executor.submit(self._guarded, fn, *args))

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"SQLite {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite {self.path}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"store {self.url} is not open")
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    async def open(self, *, migrate: bool = True) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="aetheris-sqlite")
        try:
            await self._run(self._connect)
            if migrate:
                await self.migrate()
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create {self.path.parent}: {exc}") from exc
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_timeout
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        self._conn = conn

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.wrap_future(executor.submit(conn.close))
        executor.shutdown(wait=True)

    # -- schema -----------------------------------------------------------------------------

    async def schema(self) -> SchemaState:
        return await self._run(self._schema)

    def _schema(self) -> SchemaState:
        latest = len(sql.migrations("sqlite"))
        row = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'aetheris_schema'"
        ).fetchone()
        if row is None:
            return SchemaState(0, latest)
        version = self._db.execute("SELECT version FROM aetheris_schema").fetchone()
        return SchemaState(version[0] if version else 0, latest)

    async def migrate(self) -> SchemaState:
        return await self._run(self._migrate)

    def _migrate(self) -> SchemaState:
        with self._tx() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS aetheris_schema (version INTEGER NOT NULL)")
            if conn.execute("SELECT count(*) FROM aetheris_schema").fetchone()[0] == 0:
                conn.execute("INSERT INTO aetheris_schema (version) VALUES (0)")
            current = conn.execute("SELECT version FROM aetheris_schema").fetchone()[0]
            steps = sql.migrations("sqlite")
            if current > len(steps):
                raise SchemaMismatch(
                    f"{self.url}: schema version {current} is newer than this code "
                    f"({len(steps)}); upgrade aetheris"
                )
            scripts = [sql.schema("sqlite")] if current == 0 else [s.sql for s in steps[current:]]
            for script in scripts:
                for statement in _statements(script):
                    conn.execute(statement)
            conn.execute("UPDATE aetheris_schema SET version = ?", (len(steps),))
        return self._schema()

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        return await self._run(self._create_job, new)

    def _create_job(self, new: NewJob) -> tuple[Job, bool]:
        now = self._clock()
        with self._tx() as conn:
            if new.idempotency_key is not None:
                row = conn.execute(Q["job_by_key"], {"key": new.idempotency_key}).fetchone()
                if row is not None:
                    existing = _job(row)
                    if not same_request(existing, new):
                        raise IdempotencyConflict(
                            f"idempotency key {new.idempotency_key!r} belongs to job "
                            f"{existing.id} with a different agent or input"
                        )
                    return existing, False
            try:
                conn.execute(
                    Q["insert_job"],
                    {
                        "id": new.id,
                        "agent": new.agent,
                        "input": canonical(new.input),
                        "idempotency_key": new.idempotency_key,
                        "queue": new.queue,
                        "priority": new.priority,
                        "run_at": new.run_at if new.run_at is not None else now,
                        "head_hash": GENESIS_HASH,
                        "now": now,
                    },
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"job id {new.id!r} already exists") from exc
            self._append(conn, new.id, 0, GENESIS_HASH, [created_draft(new)], now)
            return self._get(conn, new.id), True

    async def get_job(self, job_id: str) -> Job | None:
        return await self._run(self._get_optional, job_id)

    def _get_optional(self, job_id: str) -> Job | None:
        row = self._db.execute(Q["get_job"], {"id": job_id}).fetchone()
        return _job(row) if row is not None else None

    def _get(self, conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _job(row)

    async def list_jobs(self, *, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        rows = await self._run(self._list_jobs, status, limit)
        return [_job(r) for r in rows]

    def _list_jobs(self, status: JobStatus | None, limit: int) -> list[sqlite3.Row]:
        params = {"status": status.value if status else None, "limit": limit}
        return self._db.execute(Q["list_jobs"], params).fetchall()

    # -- ownership --------------------------------------------------------------------------

    async def claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        return await self._run(self._claim, owner, lease_ttl, where)

    def _claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        params = {
            "now": self._clock(),
            "agents": json.dumps(list(where.agents)),
            "queues": json.dumps(list(where.queues)) if where.queues is not None else None,
        }
        # A read outside any transaction first: idle workers must not take the write lock.
        if self._candidate(self._db, params) is None:
            return None
        with self._tx() as conn:
            now = params["now"] = self._clock()
            candidate = self._candidate(conn, params)
            if candidate is None:
                return None
            job_id, previous_owner = candidate
            row = conn.execute(
                Q["take_lease"],
                {"id": job_id, "owner": owner, "expires": now + lease_ttl, "now": now},
            ).fetchone()
            job = _job(row)
            draft = claimed_draft(owner, job.lease_epoch, job.attempts, previous_owner)
            self._append(conn, job.id, job.event_count, job.head_hash, [draft], now)
            job = self._get(conn, job.id)
        return Claim(job, Lease(job.id, job.lease_epoch, owner), previous_owner)

    def _candidate(
        self, conn: sqlite3.Connection, params: Mapping[str, Any]
    ) -> tuple[str, str | None] | None:
        for query in ("expired_candidate", "pending_candidate"):
            row = conn.execute(Q[query], params).fetchone()
            if row is not None:
                return row["id"], row["lease_owner"]
        return None

    async def heartbeat(self, leases: Sequence[Lease], lease_ttl: float) -> set[str]:
        return await self._run(self._heartbeat, list(leases), lease_ttl)

    def _heartbeat(self, leases: list[Lease], lease_ttl: float) -> set[str]:
        lost: set[str] = set()
        if not leases:
            return lost
        with self._tx() as conn:
            expires = self._clock() + lease_ttl
            for lease in leases:
                params = {"id": lease.job_id, "epoch": lease.epoch, "expires": expires}
                if conn.execute(Q["heartbeat"], params).rowcount == 0:
                    lost.add(lease.job_id)
        return lost

    # -- writes -----------------------------------------------------------------------------

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        return await self._run(self._commit, lease, commit)

    def _commit(self, lease: Lease, commit: Commit) -> list[Event]:
        with self._tx() as conn:
            now = self._clock()
            expect = commit.head.count if commit.head is not None else None
            params = {"id": lease.job_id, "epoch": lease.epoch, "now": now, "expect": expect}
            head = conn.execute(Q["fence"], params).fetchone()
            if head is None:
                job = self._get(conn, lease.job_id)
                if job.lease_epoch != lease.epoch or job.status is not JobStatus.RUNNING:
                    raise LeaseLost(lease.job_id, lease.epoch)
                raise Conflict(head_moved(job.id, expect or 0, job.event_count))
            return self._write(conn, lease.job_id, head, commit, now)

    async def apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        return await self._run(self._apply, job_id, commit, guard)

    def _apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        with self._tx() as conn:
            now = self._clock()
            check_guard(self._get(conn, job_id), guard)
            head = conn.execute(Q["bump_epoch"], {"id": job_id, "now": now}).fetchone()
            self._write(conn, job_id, head, commit, now)
            return self._get(conn, job_id)

    def _write(
        self, conn: sqlite3.Connection, job_id: str, head: sqlite3.Row, commit: Commit, now: float
    ) -> list[Event]:
        for write in commit.effects:
            self._write_effect(conn, job_id, write, now)
        if commit.status is not None:
            conn.execute(Q["set_status"], _status_params(job_id, commit.status, now))
        return self._append(conn, job_id, head[0], head[1], commit.events, now)

    def _write_effect(
        self, conn: sqlite3.Connection, job_id: str, write: EffectWrite, now: float
    ) -> None:
        params = {
            "job_id": job_id,
            "position": write.position,
            "tool": write.tool,
            "effect": write.effect.value,
            "args_hash": write.args_hash,
            "idempotency_key": write.idempotency_key,
            "state": write.state.value,
            "result": canonical(write.result),
            "error": canonical(write.error) if write.error is not None else None,
            "attempt": write.attempt,
            "expect": write.expect.value if write.expect else None,
            "now": now,
        }
        if write.expect is None:
            try:
                conn.execute(Q["insert_effect"], params)
            except sqlite3.IntegrityError as exc:
                raise Conflict(
                    f"effect at position {write.position} of job {job_id} already exists"
                ) from exc
            return
        if conn.execute(Q["update_effect"], params).rowcount == 0:
            found = conn.execute(Q["get_effect"], params).fetchone()
            raise Conflict(
                f"effect at position {write.position} of job {job_id} is "
                f"{found[0] if found else 'missing'}, expected {write.expect}"
            )

    def _append(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        count: int,
        prev_hash: str,
        drafts: Sequence[EventDraft],
        now: float,
    ) -> list[Event]:
        if not drafts:
            return []
        sealed = seal_all(job_id, count, prev_hash, drafts, now)
        conn.executemany(
            Q["insert_event"],
            [
                {
                    "job_id": job_id,
                    "seq": e.seq,
                    "type": e.type.value,
                    "position": e.position,
                    "body": e.body,
                    "prev_hash": e.prev_hash,
                    "hash": e.hash,
                }
                for e in sealed
            ],
        )
        conn.execute(
            Q["set_head"], {"id": job_id, "count": count + len(sealed), "hash": sealed[-1].hash}
        )
        crashpoints.reach("in_append", _op_name(drafts))
        return sealed

    # -- reads ------------------------------------------------------------------------------

    async def events(self, job_id: str) -> list[Event]:
        rows = await self._run(lambda: self._db.execute(Q["events"], {"job_id": job_id}).fetchall())
        return [open_event(job_id, r["seq"], r["body"], r["prev_hash"], r["hash"]) for r in rows]

    async def effects(
        self, *, job_id: str | None = None, states: Sequence[EffectState] | None = None
    ) -> list[Effect]:
        params = {
            "job_id": job_id,
            "states": json.dumps([s.value for s in states]) if states is not None else None,
        }
        rows = await self._run(lambda: self._db.execute(Q["list_effects"], params).fetchall())
        return [_effect(r) for r in rows]

    async def register_agents(self, names: Sequence[str]) -> None:
        await self._run(self._register_agents, list(names))

    def _register_agents(self, names: list[str]) -> None:
        with self._tx() as conn:
            now = self._clock()
            conn.executemany(Q["upsert_agent"], [{"name": n, "now": now} for n in names])

    async def agents(self) -> list[str]:
        rows = await self._run(lambda: self._db.execute(Q["list_agents"]).fetchall())
        return [r[0] for r in rows]

    # -- liveness: one flock'ed file per worker, released by the kernel when it dies ---------

    def _lock_file(self, owner: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", owner)
        return self.path.with_name(self.path.name + ".workers") / f"{safe}.lock"

    async def wait_for_work(self, timeout: float) -> None:
        """No cross-process wake-ups here: workers poll (and wake each other in-process)."""
        await asyncio.sleep(timeout)

    async def register_worker(self, owner: str) -> None:
        path = self._lock_file(owner)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._presence[owner] = fd

    async def unregister_worker(self, owner: str, *, graceful: bool = True) -> None:
        """Drop presence; ``graceful=False`` leaves the file, as a killed process would."""
        fd = self._presence.pop(owner, None)
        if fd is not None:
            if graceful:
                self._lock_file(owner).unlink(missing_ok=True)
            os.close(fd)

    async def reap(self) -> list[str]:
        return await self._run(self._reap)

    def _reap(self) -> list[str]:
        owners = [r[0] for r in self._db.execute(Q["running_owners"]).fetchall()]
        dead = [o for o in owners if o not in self._presence and self._is_dead(o)]
        if dead:
            with self._tx() as conn:
                conn.execute(Q["expire_owners"], {"owners": json.dumps(dead), "now": self._clock()})
        return dead

    def _is_dead(self, owner: str) -> bool:
        """Dead only if its lock file exists and nobody holds the lock: proof, not a guess."""
        path = self._lock_file(owner)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        else:
            path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)


def _statements(script: str) -> Iterator[str]:
    buffer: list[str] = []
    for line in script.splitlines():
        buffer.append(line)
        candidate = "\n".join(buffer)
        if sqlite3.complete_statement(candidate):
            if candidate.strip(" \n;"):
                yield candidate
            buffer = []


def _op_name(drafts: Sequence[EventDraft]) -> str | None:
    for draft in drafts:
        name = draft.data.get("name")
        if isinstance(name, str):
            return name
    return None


def _maybe(blob: bytes | None) -> Any:
    return decode(blob) if blob is not None else None


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        agent=row["agent"],
        input=decode(row["input"]),
        status=JobStatus(row["status"]),
        park_reason=ParkReason(row["park_reason"]) if row["park_reason"] else None,
        park_detail=_maybe(row["park_detail"]),
        result=_maybe(row["result"]),
        error=_maybe(row["error"]),
        idempotency_key=row["idempotency_key"],
        queue=row["queue"],
        priority=row["priority"],
        lease_epoch=row["lease_epoch"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        run_at=row["run_at"],
        attempts=row["attempts"],
        event_count=row["event_count"],
        head_hash=row["head_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _effect(row: sqlite3.Row) -> Effect:
    return Effect(
        job_id=row["job_id"],
        position=row["position"],
        tool=row["tool"],
        effect=EffectClass(row["effect"]),
        args_hash=row["args_hash"],
        idempotency_key=row["idempotency_key"],
        state=EffectState(row["state"]),
        result=_maybe(row["result"]),
        error=_maybe(row["error"]),
        attempt=row["attempt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _status_params(job_id: str, write: StatusWrite, now: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": write.status.value,
        "park_reason": write.park_reason.value if write.park_reason else None,
        "park_detail": canonical(write.park_detail) if write.park_detail is not None else None,
        "result": canonical(write.result),
        "error": canonical(write.error) if write.error is not None else None,
        "run_at": write.run_at if write.run_at is not None else now,
        "now": now,
    }
