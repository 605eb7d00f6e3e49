"""SQLite store: the embedded default. WAL mode; several processes may share one file.

Reads run inline on the calling thread's own connection (WAL readers never wait). Writes are
operations queued to the thread's group-commit writer (:mod:`aetheris.store.sqlite_writer`),
which runs everything queued in one turn of the event loop as one ``BEGIN IMMEDIATE``
transaction, one savepoint per operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aetheris import crashpoints
from aetheris.anchor import SigningKey
from aetheris.errors import (
    ConfigurationError,
    Conflict,
    JobNotFound,
    LeaseLost,
    StoreError,
    StoreUnavailable,
)
from aetheris.journal import GENESIS_HASH, Event, EventDraft, Recorded, canonical
from aetheris.store import sql
from aetheris.store._shared import (
    LocalRateLimits,
    check_commit,
    check_guard,
    claim_versions,
    claimed_draft,
    created_draft,
    existing_job,
    op_name,
    plan_control,
    refusal,
    seal_all,
    signal_refusal,
    with_created_budget,
    worker_info,
)
from aetheris.store.outbox import notices
from aetheris.store.port import (
    WORKER_ALIVE_WINDOW,
    WORKER_FORGET_AFTER,
    Claim,
    ClaimFilter,
    Commit,
    Control,
    Effect,
    EffectState,
    ForkedJob,
    Guard,
    Heartbeat,
    Job,
    Lease,
    NewJob,
    SchemaState,
    Signal,
    WorkerInfo,
    signal_wake,
)
from aetheris.store.sql import steps
from aetheris.store.sql.rows import (
    SQLITE,
    effect_from,
    event_from,
    event_row,
    job_from,
    job_params,
    notice_params,
    signal_from,
    status_params,
    worker_from,
    worker_params,
)
from aetheris.store.sqlite_keyed import SQLiteKeyed
from aetheris.store.sqlite_kv import SQLiteKeyValue
from aetheris.store.sqlite_pruning import SQLitePruning
from aetheris.store.sqlite_tenancy import SQLiteTenancy
from aetheris.store.sqlite_webhooks import SQLiteWebhooks
from aetheris.store.sqlite_writer import (
    SYNC_MODES,
    PerThread,
    Writer,
    connect,
    split_statements,
    translate,
)
from aetheris.store.sqlite_writer import sqlite_path as sqlite_path

T = TypeVar("T")
Q = sql.queries("sqlite")


class SQLiteStore(
    SQLiteKeyValue, SQLiteTenancy, SQLiteKeyed, SQLiteWebhooks, SQLitePruning, LocalRateLimits
):
    """Store on a SQLite file (URL ``sqlite:///path.db[?synchronous=normal]``)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
        signer: SigningKey | None = None,
    ) -> None:
        self.url = url
        self.signer = signer  # anchors every write's last event (see aetheris.anchor)
        self.path, options = sqlite_path(url)
        mode = options.get("synchronous", "full").lower()
        if mode not in SYNC_MODES:
            raise ConfigurationError(f"synchronous must be one of {sorted(SYNC_MODES)}")
        self.synchronous = SYNC_MODES[mode]
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._local = PerThread()
        self._connections: list[sqlite3.Connection | Writer] = []
        self._guard = threading.Lock()
        self._is_open = False
        self._idle = True
        self._presence: dict[str, int] = {}
        self._registered: dict[str, WorkerInfo] = {}  # by this store: what a touch writes back

    # -- plumbing: reads inline on this thread's connection, writes through group commit -----

    def _check_open(self) -> None:
        if not self._is_open:
            raise StoreError(f"store {self.url} is not open")

    def _remember(self, connection: sqlite3.Connection | Writer) -> None:
        with self._guard:
            self._connections.append(connection)

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        try:
            conn = self._local.reader
            if conn is None:
                conn = self._local.reader = connect(self.path, self.synchronous, self._busy_timeout)
                self._remember(conn)
            return fn(conn)
        except sqlite3.Error as exc:
            raise translate(self.path, exc) from exc

    async def _write(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``operation`` in the next group-committed transaction of this thread."""
        self._check_open()
        writer = self._local.writer
        if writer is None:
            try:
                writer = self._local.writer = Writer(
                    self.path, self.synchronous, self._busy_timeout, self._lock_path
                )
            except sqlite3.Error as exc:
                raise translate(self.path, exc) from exc
            self._remember(writer)
        return await writer.submit(operation)

    @property
    def _lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @property
    def writer_stats(self) -> tuple[int, int]:
        """(transactions, operations) committed by this thread's writer: the batching ratio."""
        writer = self._local.writer
        return (writer.batches, writer.operations) if writer else (0, 0)

    async def open(self, *, migrate: bool = True) -> None:
        if self._is_open:
            return
        if migrate and not self.path.parent.exists():
            # The folder of the file, not a tree: a mistyped path is an error, not new folders.
            try:
                self.path.parent.mkdir()
            except OSError as exc:
                raise StoreUnavailable(
                    f"cannot create the folder of {self.url}: {self.path.parent} ({exc})"
                ) from exc
        self._is_open = True
        try:
            self._read(lambda conn: None)
            if migrate:
                await self.migrate()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._is_open = False
        with self._guard:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = PerThread()

    # -- schema -----------------------------------------------------------------------------

    async def schema(self) -> SchemaState:
        return self._read(_schema)

    async def migrate(self) -> SchemaState:
        return await self._write(self._migrate)

    def _migrate(self, conn: sqlite3.Connection) -> SchemaState:
        conn.execute(Q["create_schema_table"])
        conn.execute(Q["insert_schema_version"])
        current = conn.execute(Q["schema_version"]).fetchone()[0]
        for script in sql.pending_scripts("sqlite", current, self.url):
            for statement in split_statements(script):
                conn.execute(statement)
        conn.execute(Q["set_schema_version"], {"version": len(sql.migrations("sqlite"))})
        return _schema(conn)

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        return await self._write(lambda conn: self._create_job(conn, new))

    def _create_job(self, conn: sqlite3.Connection, new: NewJob) -> tuple[Job, bool]:
        now = self._clock()
        if conn.execute(Q["insert_job"], job_params(new, SQLITE, now)).fetchone() is None:
            found = None
            if new.idempotency_key is not None:
                known = {"tenant": new.tenant, "key": new.idempotency_key}
                found = conn.execute(Q["job_by_key"], known).fetchone()
            return existing_job(new, job_from(found, SQLITE) if found else None), False
        created = self._append(conn, new.id, 0, GENESIS_HASH, [created_draft(new)], now)
        if isinstance(new, ForkedJob):  # a fork: its journal follows, in this transaction
            check_commit(new.id, new.journal)
            head = created[0].hash
            self._run(conn, steps.write_commit(new.id, 1, head, new.journal, SQLITE, now))
        return _get(conn, new.id), True

    async def get_job(self, job_id: str) -> Job | None:
        row = self._read(lambda conn: conn.execute(Q["get_job"], {"id": job_id}).fetchone())
        return job_from(row, SQLITE) if row is not None else None

    async def find_jobs(
        self, prefix: str, *, limit: int = 10, tenant: str | None = None
    ) -> list[str]:
        params = {"prefix": prefix, "limit": limit, "tenant": tenant}
        rows = self._read(lambda conn: conn.execute(Q["find_jobs"], params).fetchall())
        return [r["id"] for r in rows]

    # -- ownership --------------------------------------------------------------------------

    async def claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        params = {
            "now": self._clock(),
            "agents": json.dumps(list(where.agents)),
            "queues": json.dumps(list(where.queues)) if where.queues is not None else None,
            "versions": claim_versions(where),
            "skip": json.dumps(list(where.skip)) if where.skip else None,
        }
        # When the last claim found nothing, look outside any transaction first: idle workers
        # must not take the write lock on every poll. A busy worker skips the extra read.
        if self._idle and self._read(lambda conn: _candidate(conn, params)) is None:
            return None
        claim = await self._write(
            lambda conn: self._claim(conn, owner, lease_ttl, params, where.versions)
        )
        self._idle = claim is None
        return claim

    def _claim(
        self,
        conn: sqlite3.Connection,
        owner: str,
        lease_ttl: float,
        params: dict[str, Any],
        versions: Mapping[str, str],
    ) -> Claim | None:
        now = params["now"] = self._clock()
        found = _candidate(conn, params)
        if found is None:
            return None
        epoch, attempts = found["lease_epoch"] + 1, found["attempts"] + 1
        previous = found["lease_owner"]
        draft = claimed_draft(owner, epoch, attempts, previous, versions.get(found["agent"]))
        head = (found["event_count"], found["head_hash"])
        sealed = seal_all(found["id"], *head, [draft], now, self.signer)
        row = conn.execute(
            Q["claim"],
            {
                "id": found["id"],
                "owner": owner,
                "epoch": epoch,
                "attempts": attempts,
                "expires": now + lease_ttl,
                "count": found["event_count"] + 1,
                "hash": sealed[0].hash,
                # Its own expired lease taken back is no death of a worker: not counted.
                "recovered": int(previous is not None and previous != owner),
                "now": now,
            },
        ).fetchone()
        _insert_events(conn, sealed)
        job = job_from(row, SQLITE)
        claim = Claim(job, Lease(job.id, job.lease_epoch, owner), found["lease_owner"])
        created = job.first_run and conn.execute(Q["created_event"], {"id": job.id}).fetchone()
        return with_created_budget(claim, created[0] if created else None)

    async def heartbeat(self, leases: Sequence[Lease], lease_ttl: float) -> Heartbeat:
        if not leases:
            return Heartbeat(set(), {})
        return await self._write(lambda conn: self._heartbeat(conn, list(leases), lease_ttl))

    def _heartbeat(self, conn: sqlite3.Connection, leases: list[Lease], ttl: float) -> Heartbeat:
        beat = Heartbeat(set(), {})
        expires = self._clock() + ttl
        for lease in leases:
            params = {"id": lease.job_id, "epoch": lease.epoch, "expires": expires}
            row = conn.execute(Q["heartbeat"], params).fetchone()
            if row is None:
                beat.lost.add(lease.job_id)
            elif row[0] is not None:
                beat.control[lease.job_id] = Control(row[0])
        return beat

    # -- writes -----------------------------------------------------------------------------

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        return await self._write(lambda conn: self._commit(conn, lease, commit))

    def _commit(self, conn: sqlite3.Connection, lease: Lease, commit: Commit) -> list[Event]:
        check_commit(lease.job_id, commit)
        now = self._clock()
        if commit.head is None:
            params = {"id": lease.job_id, "epoch": lease.epoch, "now": now, "expect": None}
            head = conn.execute(Q["fence"], params).fetchone()
            if head is None:
                raise LeaseLost(lease.job_id, lease.epoch)
            return self._run(
                conn, steps.write_commit(lease.job_id, head[0], head[1], commit, SQLITE, now)
            )
        # The lease holder knows the head: seal first, then one UPDATE fences and moves it.
        head = (commit.head.count, commit.head.hash)
        sealed = seal_all(lease.job_id, *head, commit.events, now, self.signer)
        params = {
            "id": lease.job_id,
            "epoch": lease.epoch,
            "expect": commit.head.count,
            "count": commit.head.count + len(sealed),
            "hash": sealed[-1].hash if sealed else commit.head.hash,
            "now": now,
            "code": commit.code_version,
        }
        if conn.execute(Q["commit"], params).rowcount == 0:
            # Ledger rows are checked by their own statements below: not the reason here.
            raise refusal(lease, commit, _get(conn, lease.job_id), {})
        if commit.status is not None:
            conn.execute(Q["set_status"], status_params(lease.job_id, commit.status, SQLITE, now))
        if commit.effects:
            self._run(conn, steps.effect_writes(lease.job_id, commit.effects, SQLITE, now))
        if commit.blobs:
            self._run(conn, steps.blob_writes(lease.job_id, commit.blobs, SQLITE))
        if steps.follows(commit):
            self._run(conn, steps.follow_up(lease.job_id, commit, now))
        _insert_events(conn, sealed)
        if crashpoints.armed():
            crashpoints.reach("in_append", op_name(commit.events))
        return sealed

    async def apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        return await self._write(lambda conn: self._apply(conn, job_id, commit, guard))

    def _apply(self, conn: sqlite3.Connection, job_id: str, commit: Commit, guard: Guard) -> Job:
        check_commit(job_id, commit)
        now = self._clock()
        check_guard(_get(conn, job_id), guard)
        head = conn.execute(Q["bump_epoch"], {"id": job_id, "now": now}).fetchone()
        self._run(conn, steps.write_commit(job_id, head[0], head[1], commit, SQLITE, now))
        return _get(conn, job_id)

    def _run(self, conn: sqlite3.Connection, plan: Sequence[steps.Step]) -> list[Event]:
        """Run a write's steps in order (one writer at a time: SQLite needs no lock order).
        Returns the events appended."""
        appended: list[Event] = []
        for step in plan:
            if isinstance(step, steps.Run):
                cur = conn.execute(Q[step.query], step.params)
                if step.refusal is None:
                    continue
                row = cur.fetchone()
                if row is None:
                    if step.explain is not None:
                        row = conn.execute(Q[step.explain], step.params).fetchone()
                    raise step.refusal(row)
            elif isinstance(step, steps.Append):
                appended += self._append(
                    conn, step.job_id, step.count, step.prev_hash, step.drafts, step.now
                )
            elif isinstance(step, steps.Create):
                self._create_job(conn, step.new)
            else:
                self._cancel_children(conn, step.job_id, step.by)
        return appended

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
        sealed = seal_all(job_id, count, prev_hash, drafts, now, self.signer)
        _insert_events(conn, sealed)
        params = {"id": job_id, "count": count + len(sealed), "hash": sealed[-1].hash}
        conn.execute(Q["set_head"], params)
        if crashpoints.armed():
            crashpoints.reach("in_append", op_name(drafts))
        return sealed

    # -- reads ------------------------------------------------------------------------------

    async def events(
        self, job_id: str, *, after: int = -1, limit: int | None = None
    ) -> list[Event]:
        params = {"job_id": job_id, "after": after, "limit": -1 if limit is None else limit}
        rows = self._read(lambda conn: conn.execute(Q["events"], params).fetchall())
        return [event_from(job_id, r) for r in rows]

    async def journal(self, job_id: str) -> list[Recorded]:
        rows = self._read(lambda conn: conn.execute(Q["journal"], {"job_id": job_id}).fetchall())
        return [Recorded.stored(s, k, p, bytes(b)) for s, k, p, b in rows]

    async def blobs(self, job_id: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]:
        params = {"job_id": job_id, "hashes": None if hashes is None else json.dumps(list(hashes))}
        rows = self._read(lambda conn: conn.execute(Q["blobs"], params).fetchall())
        return {r[0]: bytes(r[1]) for r in rows}

    async def effects(
        self,
        *,
        job_id: str | None = None,
        states: Sequence[EffectState] | None = None,
        tenant: str | None = None,
    ) -> list[Effect]:
        params = {
            "job_id": job_id,
            "states": json.dumps([s.value for s in states]) if states is not None else None,
            "tenant": tenant,
        }
        rows = self._read(lambda conn: conn.execute(Q["list_effects"], params).fetchall())
        return [effect_from(r, SQLITE) for r in rows]

    async def register_agents(self, agents: Mapping[str, Mapping[str, Any] | None]) -> None:
        now = self._clock()
        rows = [
            {"name": n, "now": now, "input_schema": None if s is None else json.dumps(s)}
            for n, s in agents.items()
        ]
        await self._write(lambda conn: conn.executemany(Q["upsert_agents"], rows))

    async def agent_input_schema(self, name: str) -> dict[str, Any] | None:
        query = Q["agent_input_schema"]
        row = self._read(lambda conn: conn.execute(query, {"name": name}).fetchone())
        return json.loads(row[0]) if row is not None and row[0] is not None else None

    async def agents(self) -> list[str]:
        rows = self._read(lambda conn: conn.execute(Q["list_agents"]).fetchall())
        return [r[0] for r in rows]

    # -- signals, control, timers -----------------------------------------------------------

    async def send_signal(
        self, job_id: str, name: str, payload: Any, signal_id: str, sender: str | None
    ) -> tuple[Signal, bool]:
        body = canonical(payload)
        return await self._write(
            lambda conn: self._send_signal(conn, job_id, name, body, signal_id, sender)
        )

    def _send_signal(
        self,
        conn: sqlite3.Connection,
        job_id: str,
        name: str,
        payload: bytes,
        signal_id: str,
        sender: str | None,
    ) -> tuple[Signal, bool]:
        job = _get(conn, job_id)
        known = {"job_id": job_id, "signal_id": signal_id}
        existing = conn.execute(Q["signal_by_id"], known).fetchone()
        if existing is not None:
            return signal_from(existing, SQLITE), False
        if job.status.terminal:
            raise signal_refusal(job)
        now = self._clock()
        row = conn.execute(
            Q["insert_signal"],
            {**known, "name": name, "payload": payload, "sender": sender, "now": now},
        ).fetchone()
        conn.execute(Q["wake"], {"id": job_id, "wake_on": signal_wake(name), "now": now})
        return signal_from(row, SQLITE), True

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        params = {"job_id": job_id, "pending": int(pending)}
        rows = self._read(lambda conn: conn.execute(Q["signals"], params).fetchall())
        return [signal_from(r, SQLITE) for r in rows]

    async def control(self, job_id: str, action: Control, by: str | None = None) -> Job:
        return await self._write(lambda conn: self._control(conn, job_id, action, by))

    def _control(
        self, conn: sqlite3.Connection, job_id: str, action: Control, by: str | None = None
    ) -> Job:
        job = _get(conn, job_id)
        plan = plan_control(job, action, by)
        self._run(conn, steps.apply_control(job, plan, SQLITE, self._clock()))
        return _get(conn, job_id)

    def _cancel_children(
        self, conn: sqlite3.Connection, job_id: str, by: str | None = None
    ) -> None:
        for child in conn.execute(Q["children"], {"id": job_id}).fetchall():
            with contextlib.suppress(Conflict):
                self._control(conn, child[0], Control.CANCEL, by)

    async def next_wake(self) -> float | None:
        row = self._read(lambda conn: conn.execute(Q["next_wake"]).fetchone())
        return row[0] if row is not None else None

    # -- liveness: one flock'ed file per worker, released by the kernel when it dies ---------

    def _lock_file(self, owner: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", owner)
        return self.path.with_name(self.path.name + ".workers") / f"{safe}.lock"

    async def wait_for_work(self, timeout: float) -> None:
        """No cross-process wake-ups here: workers poll (and wake each other in-process)."""
        await asyncio.sleep(timeout)

    async def register_worker(
        self, owner: str, *, agents: Sequence[str] = (), queues: Sequence[str] | None = None
    ) -> None:
        path = self._lock_file(owner)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._presence[owner] = fd
        info = self._registered[owner] = worker_info(owner, agents, queues, self._clock())
        params = worker_params(info, SQLITE)
        forget = {"now": info.started_at, "forget": WORKER_FORGET_AFTER}

        def register(conn: sqlite3.Connection) -> None:
            conn.execute(Q["forget_workers"], forget)
            conn.execute(Q["register_worker"], params).fetchall()

        await self._write(register)

    async def touch_worker(self, owner: str) -> None:
        info = self._registered.get(owner)
        if info is not None:
            params = {**worker_params(info, SQLITE), "now": self._clock()}
            await self._write(lambda conn: conn.execute(Q["touch_worker"], params))

    async def unregister_worker(self, owner: str, *, graceful: bool = True) -> None:
        """Drop presence; ``graceful=False`` leaves the file and the row, as a killed process
        would."""
        fd = self._presence.pop(owner, None)
        if fd is not None:
            if graceful:
                self._lock_file(owner).unlink(missing_ok=True)
            os.close(fd)
        if self._registered.pop(owner, None) is not None and graceful:
            await self._write(lambda conn: conn.execute(Q["delete_worker"], {"id": owner}))

    async def workers(self) -> list[WorkerInfo]:
        params = {"now": self._clock(), "window": WORKER_ALIVE_WINDOW}
        rows = self._read(lambda conn: conn.execute(Q["list_workers"], params).fetchall())
        return [worker_from(r, SQLITE) for r in rows]

    async def reap(self) -> list[str]:
        owners = [r[0] for r in self._read(lambda c: c.execute(Q["running_owners"]).fetchall())]
        dead = [o for o in owners if o not in self._presence and self._is_dead(o)]
        if dead:
            params = {"owners": json.dumps(dead), "now": self._clock()}
            await self._write(lambda conn: conn.execute(Q["expire_owners"], params))
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


def _schema(conn: sqlite3.Connection) -> SchemaState:
    latest = len(sql.migrations("sqlite"))
    if conn.execute(Q["schema_table"]).fetchone() is None:
        return SchemaState(0, latest)
    version = conn.execute(Q["schema_version"]).fetchone()
    return SchemaState(version[0] if version else 0, latest)


def _get(conn: sqlite3.Connection, job_id: str) -> Job:
    row = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return job_from(row, SQLITE)


def _candidate(conn: sqlite3.Connection, params: Mapping[str, Any]) -> sqlite3.Row | None:
    for query in ("expired_candidate", "due_candidate", "pending_candidate"):
        row: sqlite3.Row | None = conn.execute(Q[query], params).fetchone()
        if row is not None:
            return row
    return None


def _insert_events(conn: sqlite3.Connection, sealed: Sequence[Event]) -> None:
    """Insert events, and the webhook deliveries of those that subscriptions are told of
    (the outbox, in the same transaction: see :mod:`aetheris.store.outbox`). Every event
    this store writes goes through here, after its job's row."""
    if len(sealed) == 1:
        conn.execute(Q["insert_events"], event_row(sealed[0]))
    else:
        conn.executemany(Q["insert_events"], [event_row(e) for e in sealed])
    for notice in notices(sealed):
        conn.execute(Q["insert_deliveries"], notice_params(notice, SQLITE))
