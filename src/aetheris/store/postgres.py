"""PostgreSQL store: many workers on many machines, one database.

* Claims select with ``FOR UPDATE SKIP LOCKED``: concurrent claimers never wait on, nor share,
  a job. The claim bumps the lease epoch; every write of a running job is an ``UPDATE`` of the
  job row conditional on that epoch in the same transaction, so it also serializes with claims.
* Times are the database's clock (``aetheris_now()``), so machines with skewed clocks agree.
* Idle workers ``LISTEN`` on ``aetheris_work``; a trigger notifies when a job becomes pending.
  Polling remains as the fallback.
* Liveness: a worker holds a session-level advisory lock on a dedicated connection while it
  runs. When its session ends (the process died, the machine is gone), PostgreSQL releases the
  lock; other workers that find it free for ``reap_grace`` seconds (long enough to cover a
  server restart, after which live workers take their locks back) expire its leases.
* Driver errors are translated here: connection problems become
  :class:`~aetheris.errors.StoreUnavailable`, anything else :class:`~aetheris.errors.StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
from aetheris.journal import GENESIS_HASH, Event, EventDraft, canonical, open_event
from aetheris.store import sql
from aetheris.store._shared import (
    check_commit,
    check_guard,
    claimed_draft,
    created_draft,
    head_moved,
    plan_control,
    same_request,
    seal_all,
    signal_refusal,
)
from aetheris.store.port import (
    Claim,
    ClaimFilter,
    Commit,
    Control,
    Effect,
    EffectClass,
    EffectState,
    EffectWrite,
    Guard,
    Heartbeat,
    Job,
    JobStatus,
    Lease,
    NewJob,
    ParkReason,
    SchemaState,
    Signal,
    StatusWrite,
    job_wake,
    signal_wake,
)

log = logging.getLogger("aetheris.postgres")
Q = sql.queries("postgresql")
Row = dict[str, Any]
_MIGRATION_LOCK = 0x4165746865726973  # "Aetheris"
_CHANNEL = "aetheris_work"

# What PostgreSQL says when a table changed under a statement: a prepared statement whose result
# type changed (a column added by a newer migration), a column or table that is not there.
_SCHEMA_CHANGED = (
    psycopg.errors.FeatureNotSupported,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedTable,
)


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


def lock_key(owner: str) -> int:
    """A stable signed 64-bit advisory lock key for a worker id."""
    return int.from_bytes(hashlib.sha256(owner.encode()).digest()[:8], "big", signed=True)


class PostgresStore:
    """Store on PostgreSQL (URL ``postgresql://user@host:port/db``).

    Options may also come as URL parameters: ``?aetheris_max_connections=20&aetheris_reap_grace=2``
    (``min_connections``, ``max_connections``, ``connect_timeout``, ``reap_grace``).
    """

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        reap_grace: float = 3.0,
    ) -> None:
        self.url, options = split_options(url)
        min_connections = int(options.pop("min_connections", min_connections))
        max_connections = int(options.pop("max_connections", max_connections))
        connect_timeout = float(options.pop("connect_timeout", connect_timeout))
        reap_grace = float(options.pop("reap_grace", reap_grace))
        if options:
            raise ConfigurationError(f"unknown aetheris_ options in the URL: {sorted(options)}")
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] | None = None
        self._sizes = (min_connections, max_connections)
        self._connect_timeout = connect_timeout
        self.reap_grace = reap_grace
        self._listener: _Listener | None = None
        self._free_since: dict[str, float] = {}
        self._group = _CommitGroup(self)

    # -- plumbing ---------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        if self._pool is not None:
            return
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            self.url,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            open=False,
            timeout=self._connect_timeout,
            kwargs={"autocommit": True, "row_factory": dict_row},
            name="aetheris",
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout)
        except (PoolTimeout, psycopg.Error) as exc:
            await pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {_safe(self.url)}: {exc}"
            ) from exc
        self._pool = pool
        if migrate:
            try:
                await self.migrate()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        if self._pool is None:
            raise StoreError(f"store {_safe(self.url)} is not open")
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(f"PostgreSQL: no connection available: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL: {exc}") from exc
        except _SCHEMA_CHANGED as exc:
            raise await self._schema_changed(exc) from exc
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL: {exc}") from exc

    async def _schema_changed(self, exc: psycopg.Error) -> StoreError:
        """A statement failed because the tables are not what this code knows: name versions."""
        try:
            assert self._pool is not None
            async with self._pool.connection() as conn:
                state = await _schema_state(conn)
        except psycopg.Error:
            return StoreError(f"PostgreSQL: {exc}")
        if state.current == state.latest:
            return StoreError(f"PostgreSQL: {exc}")
        newer = "newer" if state.current > state.latest else "older"
        return SchemaMismatch(
            f"{_safe(self.url)}: the schema is at version {state.current}, {newer} than this "
            f"code ({state.latest}), and a statement failed on it ({exc}); "
            + (
                "restart this process with the aetheris that migrated the database"
                if newer == "newer"
                else "run `aetheris db migrate`"
            )
        )

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _one(self, query: str, params: Mapping[str, Any] | None = None) -> Row | None:
        async with self._conn() as conn:
            cur = await conn.execute(Q[query], params)
            return await cur.fetchone()

    async def _all(self, query: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        async with self._conn() as conn:
            cur = await conn.execute(Q[query], params)
            return await cur.fetchall()

    # -- schema -----------------------------------------------------------------------------

    async def schema(self) -> SchemaState:
        async with self._conn() as conn:
            return await _schema_state(conn)

    async def migrate(self) -> SchemaState:
        steps = sql.migrations("postgresql")
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            await conn.execute("CREATE TABLE IF NOT EXISTS aetheris_schema (version integer)")
            row = await (await conn.execute("SELECT version FROM aetheris_schema")).fetchone()
            if row is None:
                await conn.execute("INSERT INTO aetheris_schema (version) VALUES (0)")
            current = row["version"] if row else 0
            if current > len(steps):
                raise SchemaMismatch(
                    f"{_safe(self.url)}: schema version {current} is newer than this code "
                    f"({len(steps)}); upgrade aetheris"
                )
            if current == 0:
                await conn.execute(sql.schema("postgresql").encode())
            else:
                for step in steps[current:]:
                    await conn.execute(step.sql.encode())
            await conn.execute("UPDATE aetheris_schema SET version = %s", (len(steps),))
            return await _schema_state(conn)

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        async with self._tx() as conn:
            return await self._create_in(conn, new)

    async def _create_in(self, conn: psycopg.AsyncConnection[Row], new: NewJob) -> tuple[Job, bool]:
        params = {
            "id": new.id,
            "agent": new.agent,
            "input": canonical(new.input).decode(),
            "idempotency_key": new.idempotency_key,
            "queue": new.queue,
            "priority": new.priority,
            "run_at": new.run_at,
            "head_hash": GENESIS_HASH,
            "parent_id": new.parent_id,
            "deadline": new.deadline,
        }
        inserted = await (await conn.execute(Q["insert_job"], params)).fetchone()
        if inserted is None:
            return await self._existing(conn, new), False
        await self._append(conn, new.id, 0, GENESIS_HASH, [created_draft(new)])
        return await self._get(conn, new.id), True

    async def _existing(self, conn: psycopg.AsyncConnection[Row], new: NewJob) -> Job:
        if new.idempotency_key is not None:
            cur = await conn.execute(Q["job_by_key"], {"key": new.idempotency_key})
            row = await cur.fetchone()
            if row is not None:
                existing = _job(row)
                if not same_request(existing, new):
                    raise IdempotencyConflict(
                        f"idempotency key {new.idempotency_key!r} belongs to job "
                        f"{existing.id} with a different agent or input"
                    )
                return existing
        raise Conflict(f"job id {new.id!r} already exists")

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._one("get_job", {"id": job_id})
        return _job(row) if row is not None else None

    async def _get(self, conn: psycopg.AsyncConnection[Row], job_id: str) -> Job:
        row = await (await conn.execute(Q["get_job"], {"id": job_id})).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _job(row)

    async def list_jobs(self, *, status: JobStatus | None = None, limit: int = 100) -> list[Job]:
        rows = await self._all("list_jobs", {"status": status, "limit": limit})
        return [_job(r) for r in rows]

    # -- ownership --------------------------------------------------------------------------

    async def claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        params = {
            "agents": list(where.agents),
            "queues": list(where.queues) if where.queues is not None else None,
            "owner": owner,
            "ttl": lease_ttl,
        }
        # Two round trips: BEGIN + claim, then the claim's event + COMMIT (pipelined).
        async with self._conn() as conn, conn.pipeline(), conn.transaction():
            row = await (await conn.execute(Q["claim"], params)).fetchone()
            if row is None:
                return None
            job = _job(row)
            draft = claimed_draft(owner, job.lease_epoch, job.attempts, row["previous_owner"])
            sealed = seal_all(job.id, job.event_count, job.head_hash, [draft], time.time())
            await conn.execute(
                Q["append"],
                {
                    **_event_params(sealed),
                    "id": job.id,
                    "epoch": job.lease_epoch,
                    "expect": job.event_count,
                    "count": job.event_count + 1,
                    "hash": sealed[-1].hash,
                },
            )
        job = dataclasses.replace(job, event_count=job.event_count + 1, head_hash=sealed[-1].hash)
        return Claim(job, Lease(job.id, job.lease_epoch, owner), row["previous_owner"])

    async def heartbeat(self, leases: Sequence[Lease], lease_ttl: float) -> Heartbeat:
        if not leases:
            return Heartbeat(set(), {})
        ordered = sorted(leases, key=lambda lease: lease.job_id)  # one lock order
        params = {
            "ids": [lease.job_id for lease in ordered],
            "epochs": [lease.epoch for lease in ordered],
            "ttl": lease_ttl,
        }
        rows = await self._all("heartbeat", params)
        kept = {row["id"] for row in rows}
        control = {row["id"]: Control(row["control"]) for row in rows if row["control"]}
        return Heartbeat({lease.job_id for lease in leases} - kept, control)

    # -- writes -----------------------------------------------------------------------------

    async def commit(self, lease: Lease, commit: Commit) -> list[Event]:
        check_commit(lease.job_id, commit)
        if commit.head is None:
            return await self._commit_reading_head(lease, commit)
        # The lease holder knows the head: seal here, then one statement does the rest.
        sealed = seal_all(
            lease.job_id, commit.head.count, commit.head.hash, commit.events, time.time()
        )
        params = _commit_params(lease, commit, sealed)
        if _needs_follow_up(commit) or crashpoints.armed():
            # Crash injection kills inside the transaction, after the statement, before COMMIT.
            fenced = await self._commit_with_follow_up(params, lease.job_id, commit)
        else:
            fenced = await self._group.commit(params)
        if fenced != 1:
            await self._explain_refusal(lease, commit)
        return sealed

    async def _commit_with_follow_up(
        self, params: dict[str, Any], job_id: str, commit: Commit
    ) -> int:
        """The commit statement, then what must follow it in the same transaction.

        Jobs it wakes are locked first (the waiter before the job that wakes it, as everywhere):
        a parent parking at this moment then either waits for this transaction and finds the
        child ended, or has parked already and is woken here.
        """
        async with self._tx() as conn:
            waiters = sorted({other for other, _ in commit.wake})
            if waiters:
                await conn.execute(Q["lock_jobs"], {"ids": waiters})
            row = await (await conn.execute(Q["commit"], params)).fetchone()
            if row is None or row["fenced"] != 1:
                return 0
            await self._follow_up(conn, job_id, commit)
            if crashpoints.armed():
                crashpoints.reach("in_append", _op_name(commit.events))
            return 1

    async def _commit_one(self, params: dict[str, Any]) -> int:
        row = await self._one("commit", params)
        return int(row["fenced"]) if row else 0

    async def _commit_many(self, batch: list[dict[str, Any]]) -> list[int | BaseException]:
        """Several jobs' commits in one transaction: one round trip, one WAL flush."""
        ordered = sorted(range(len(batch)), key=lambda i: batch[i]["id"])  # one lock order
        try:
            async with self._conn() as conn, conn.pipeline(), conn.transaction():
                cursors = [await conn.execute(Q["commit"], batch[i]) for i in ordered]
            fenced: list[int | BaseException] = [0] * len(batch)
            for i, cursor in zip(ordered, cursors, strict=True):
                row = await cursor.fetchone()
                fenced[i] = int(row["fenced"]) if row else 0
            return fenced
        except StoreError as exc:
            if isinstance(exc, StoreUnavailable):
                return [exc] * len(batch)
        # A statement failed and took the batch down with it: commit one by one.
        results: list[int | BaseException] = []
        for params in batch:
            try:
                results.append(await self._commit_one(params))
            except StoreError as exc:
                results.append(exc)
        return results

    async def _explain_refusal(self, lease: Lease, commit: Commit) -> None:
        """The commit statement wrote nothing: say why (these reads are off the hot path)."""
        job = await self.get_job(lease.job_id)
        if job is None or job.lease_epoch != lease.epoch or job.status is not JobStatus.RUNNING:
            raise LeaseLost(lease.job_id, lease.epoch)
        assert commit.head is not None
        if job.event_count != commit.head.count:
            raise Conflict(head_moved(job.id, commit.head.count, job.event_count))
        found = {e.position: e.state for e in await self.effects(job_id=lease.job_id)}
        for write in commit.effects:
            state = found.get(write.position)
            if write.expect is None and state is not None:
                raise Conflict(
                    f"effect at position {write.position} of job {job.id} already exists"
                )
            if write.expect is not None and state is not write.expect:
                raise Conflict(
                    f"effect at position {write.position} of job {job.id} is "
                    f"{state or 'missing'}, expected {write.expect}"
                )
        raise StoreError(f"commit to job {job.id} was refused for no reason found")

    async def _commit_reading_head(self, lease: Lease, commit: Commit) -> list[Event]:
        async with self._tx() as conn:
            params = {"id": lease.job_id, "epoch": lease.epoch, "expect": None}
            head = await (await conn.execute(Q["fence"], params)).fetchone()
            if head is None:
                raise LeaseLost(lease.job_id, lease.epoch)
            return await self._write(conn, lease.job_id, head, commit)

    async def _follow_up(
        self, conn: psycopg.AsyncConnection[Row], job_id: str, commit: Commit
    ) -> None:
        """Signals received, parked jobs woken, children created or cancelled, and no sleeping
        on what is already there."""
        for seq, position in commit.consume:
            params = {"job_id": job_id, "seq": seq, "position": position}
            if await (await conn.execute(Q["consume_signal"], params)).fetchone() is None:
                raise Conflict(f"signal {seq} of job {job_id} was already received")
        for other, wake_on in commit.wake:
            await conn.execute(Q["wake"], {"id": other, "wake_on": wake_on})
        for new in commit.create:
            await self._create_in(conn, new)
        if commit.status is not None and commit.status.status is JobStatus.PARKED:
            await conn.execute(Q["wake_if_ready"], {"id": job_id})
        if commit.cancel_children:
            await self._cancel_children(conn, job_id)

    async def apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        check_commit(job_id, commit)
        async with self._tx() as conn:
            row = await (await conn.execute(Q["lock_job"], {"id": job_id})).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            check_guard(_job(row), guard)
            head = await _fetch(await conn.execute(Q["bump_epoch"], {"id": job_id}))
            await self._write(conn, job_id, head, commit)
            return await self._get(conn, job_id)

    async def _write(
        self, conn: psycopg.AsyncConnection[Row], job_id: str, head: Row, commit: Commit
    ) -> list[Event]:
        for write in commit.effects:
            await _write_effect(conn, job_id, write)
        if commit.status is not None:
            await conn.execute(Q["set_status"], _status_params(job_id, commit.status))
        await self._follow_up(conn, job_id, commit)
        return await self._append(
            conn, job_id, head["event_count"], head["head_hash"], commit.events
        )

    async def _append(
        self,
        conn: psycopg.AsyncConnection[Row],
        job_id: str,
        count: int,
        prev_hash: str,
        drafts: Sequence[EventDraft],
    ) -> list[Event]:
        if not drafts:
            return []
        sealed = seal_all(job_id, count, prev_hash, drafts, time.time())
        await conn.execute(
            Q["insert_events"],
            {
                "job_id": job_id,
                "seqs": [e.seq for e in sealed],
                "types": [e.type.value for e in sealed],
                "positions": [e.position for e in sealed],
                "bodies": [e.body for e in sealed],
                "prevs": [e.prev_hash for e in sealed],
                "hashes": [e.hash for e in sealed],
            },
        )
        await conn.execute(
            Q["set_head"], {"id": job_id, "count": count + len(sealed), "hash": sealed[-1].hash}
        )
        if crashpoints.armed():
            crashpoints.reach("in_append", _op_name(drafts))
        return sealed

    # -- reads ------------------------------------------------------------------------------

    async def events(self, job_id: str) -> list[Event]:
        rows = await self._all("events", {"job_id": job_id})
        return [
            open_event(job_id, r["seq"], bytes(r["body"]), r["prev_hash"], r["hash"]) for r in rows
        ]

    async def effects(
        self, *, job_id: str | None = None, states: Sequence[EffectState] | None = None
    ) -> list[Effect]:
        params = {
            "job_id": job_id,
            "states": [s.value for s in states] if states is not None else None,
        }
        return [_effect(r) for r in await self._all("list_effects", params)]

    async def send_signal(
        self, job_id: str, name: str, payload: Any, signal_id: str, sender: str | None
    ) -> tuple[Signal, bool]:
        known = {"job_id": job_id, "signal_id": signal_id}
        async with self._tx() as conn:
            # Lock the job row first: a worker parking this job waits for us, then sees us.
            row = await (await conn.execute(Q["lock_job"], {"id": job_id})).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            existing = await (await conn.execute(Q["signal_by_id"], known)).fetchone()
            if existing is not None:
                return _signal(existing), False
            job = _job(row)
            if job.status.terminal:
                raise signal_refusal(job)
            params = {**known, "name": name, "payload": _json(payload) or "null", "sender": sender}
            inserted = await _fetch(await conn.execute(Q["insert_signal"], params))
            await conn.execute(Q["wake"], {"id": job_id, "wake_on": signal_wake(name)})
            return _signal(inserted), True

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        rows = await self._all("signals", {"job_id": job_id, "pending": pending})
        return [_signal(r) for r in rows]

    async def control(self, job_id: str, action: Control) -> Job:
        async with self._tx() as conn:
            await self._control(conn, job_id, action)
            return await self._get(conn, job_id)

    async def _control(
        self, conn: psycopg.AsyncConnection[Row], job_id: str, action: Control
    ) -> None:
        seen = await (await conn.execute(Q["get_job"], {"id": job_id})).fetchone()
        if seen is None:
            raise JobNotFound(job_id)
        if seen["parent_id"] is not None:
            # The waiter first: a child that ends here wakes its parent, so lock the parent.
            await conn.execute(Q["lock_jobs"], {"ids": [seen["parent_id"]]})
        row = await _fetch(await conn.execute(Q["lock_job"], {"id": job_id}))
        job = _job(row)
        plan = plan_control(job, action)
        if plan.status is not None:
            await conn.execute(Q["set_status"], _status_params(job_id, plan.status))
        control = plan.control.value if plan.control else None
        await conn.execute(Q["set_control"], {"id": job_id, "control": control})
        if plan.event is not None:
            await self._append(conn, job_id, job.event_count, job.head_hash, [plan.event])
        if plan.status is not None and plan.status.status.terminal and job.parent_id:
            await conn.execute(Q["wake"], {"id": job.parent_id, "wake_on": job_wake(job_id)})
        if plan.cascade:
            await self._cancel_children(conn, job_id)

    async def _cancel_children(self, conn: psycopg.AsyncConnection[Row], job_id: str) -> None:
        children = await (await conn.execute(Q["children"], {"id": job_id})).fetchall()
        for child in children:
            with contextlib.suppress(Conflict):
                await self._control(conn, child["id"], Control.CANCEL)

    async def next_wake(self) -> float | None:
        row = await self._one("next_wake")
        return row["at"] if row is not None else None

    async def register_agents(self, names: Sequence[str]) -> None:
        async with self._conn() as conn:
            await conn.execute(Q["upsert_agents"], {"names": list(names)})

    async def agents(self) -> list[str]:
        return [r["name"] for r in await self._all("list_agents")]

    # -- liveness and wake-ups ----------------------------------------------------------------

    async def register_worker(self, owner: str) -> None:
        if self._listener is None:
            self._listener = _Listener(self.url, self._connect_timeout)
        await self._listener.start(lock_key(owner))

    async def unregister_worker(self, owner: str, *, graceful: bool = True) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None

    async def wait_for_work(self, timeout: float) -> None:
        if self._listener is None:
            await asyncio.sleep(timeout)
        else:
            await self._listener.wait(timeout)

    async def reap(self) -> list[str]:
        """Expire leases of workers whose session has been gone for ``reap_grace`` seconds."""
        mine = self._listener.key if self._listener is not None else None
        now = time.monotonic()
        dead: list[str] = []
        async with self._conn() as conn:
            owners = [r["lease_owner"] for r in await _all(conn, "running_owners")]
            for owner in owners:
                key = lock_key(owner)
                if key == mine or not await _lock_is_free(conn, key):
                    self._free_since.pop(owner, None)
                    continue
                first = self._free_since.setdefault(owner, now)
                if now - first >= self.reap_grace:
                    dead.append(owner)
            if dead:
                await conn.execute(Q["expire_owners"], {"owners": dead})
        for owner in dead:
            self._free_since.pop(owner, None)
        return dead


class _CommitGroup:
    """Group commit: while one commit is in flight, later ones queue and go together next.

    A lone job's commit runs at once (no added latency); under load, commits of many jobs
    share a transaction, a round trip and a WAL flush.
    """

    def __init__(self, store: PostgresStore) -> None:
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


class _Listener:
    """A dedicated session: holds the worker's advisory lock and listens for work."""

    def __init__(self, url: str, connect_timeout: float) -> None:
        self.url = url
        self.key: int | None = None
        self._connect_timeout = connect_timeout
        self._task: asyncio.Task[None] | None = None
        self._waiters: set[asyncio.Future[None]] = set()
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
        self._wake()

    async def wait(self, timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives as the
            # waiter completes (a notification), and the heartbeat task would never stop.
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=int(self._connect_timeout)
                )
                async with conn:
                    await conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
                    await conn.execute(f"LISTEN {_CHANNEL}")
                    self.connected.set()
                    delay = 0.1
                    self._wake()
                    async for _ in conn.notifies():
                        self._wake()
            except psycopg.Error as exc:
                log.warning("listener connection lost (%s); reconnecting in %.1fs", exc, delay)
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


async def _all(conn: psycopg.AsyncConnection[Row], query: str) -> list[Row]:
    return await (await conn.execute(Q[query])).fetchall()


async def _lock_is_free(conn: psycopg.AsyncConnection[Row], key: int) -> bool:
    row = await _fetch(await conn.execute(Q["try_lock"], {"key": key}))
    if row["free"]:
        await conn.execute(Q["unlock"], {"key": key})
    return bool(row["free"])


async def _fetch(cur: psycopg.AsyncCursor[Row]) -> Row:
    row = await cur.fetchone()
    if row is None:
        raise StoreError("PostgreSQL returned no row where one was expected")
    return row


async def _schema_state(conn: psycopg.AsyncConnection[Row]) -> SchemaState:
    latest = len(sql.migrations("postgresql"))
    found = await (await conn.execute("SELECT to_regclass('aetheris_schema') AS t")).fetchone()
    if found is None or found["t"] is None:
        return SchemaState(0, latest)
    row = await (await conn.execute("SELECT version FROM aetheris_schema")).fetchone()
    return SchemaState(row["version"] if row else 0, latest)


async def _write_effect(
    conn: psycopg.AsyncConnection[Row], job_id: str, write: EffectWrite
) -> None:
    params = {
        "job_id": job_id,
        "position": write.position,
        "tool": write.tool,
        "effect": write.effect.value,
        "args_hash": write.args_hash,
        "idempotency_key": write.idempotency_key,
        "state": write.state.value,
        "result": canonical(write.result).decode(),
        "error": canonical(write.error).decode() if write.error is not None else None,
        "attempt": write.attempt,
        "expect": write.expect.value if write.expect else None,
    }
    query = "insert_effect" if write.expect is None else "update_effect"
    if await (await conn.execute(Q[query], params)).fetchone() is not None:
        return
    if write.expect is None:
        raise Conflict(f"effect at position {write.position} of job {job_id} already exists")
    found = await (await conn.execute(Q["get_effect"], params)).fetchone()
    raise Conflict(
        f"effect at position {write.position} of job {job_id} is "
        f"{found['state'] if found else 'missing'}, expected {write.expect}"
    )


def _needs_follow_up(commit: Commit) -> bool:
    status = commit.status
    parks = status is not None and status.status is JobStatus.PARKED
    extra = commit.consume or commit.wake or commit.create or commit.cancel_children
    return bool(extra) or parks


def _commit_params(lease: Lease, commit: Commit, sealed: Sequence[Event]) -> dict[str, Any]:
    assert commit.head is not None
    status = commit.status
    writes = commit.effects
    return {
        "id": lease.job_id,
        "epoch": lease.epoch,
        "expect": commit.head.count,
        "count": commit.head.count + len(sealed),
        "hash": sealed[-1].hash if sealed else commit.head.hash,
        "status": status.status.value if status else None,
        "park_reason": status.park_reason.value if status and status.park_reason else None,
        "park_detail": _json(status.park_detail) if status else None,
        "result": _json(status.result) if status else None,
        "error": _json(status.error) if status else None,
        "run_at": status.run_at if status else None,
        "wake_on": status.wake_on if status else None,
        "wake_at": status.wake_at if status else None,
        "recovery": int(status.recovery) if status else 0,
        "e_positions": [w.position for w in writes],
        "e_expects": [w.expect.value if w.expect else None for w in writes],
        "e_tools": [w.tool for w in writes],
        "e_effects": [w.effect.value for w in writes],
        "e_args": [w.args_hash for w in writes],
        "e_keys": [w.idempotency_key for w in writes],
        "e_states": [w.state.value for w in writes],
        "e_results": [canonical(w.result).decode() for w in writes],
        "e_errors": [_json(w.error) for w in writes],
        "e_attempts": [w.attempt for w in writes],
        **_event_params(sealed),
    }


def _event_params(sealed: Sequence[Event]) -> dict[str, Any]:
    return {
        "seqs": [e.seq for e in sealed],
        "types": [e.type.value for e in sealed],
        "positions": [e.position for e in sealed],
        "bodies": [e.body for e in sealed],
        "prevs": [e.prev_hash for e in sealed],
        "hashes": [e.hash for e in sealed],
    }


def _json(value: Any) -> str | None:
    return canonical(value).decode() if value is not None else None


def _status_params(job_id: str, write: StatusWrite) -> dict[str, Any]:
    return {
        "id": job_id,
        "status": write.status.value,
        "park_reason": write.park_reason.value if write.park_reason else None,
        "park_detail": canonical(write.park_detail).decode()
        if write.park_detail is not None
        else None,
        "result": canonical(write.result).decode(),
        "error": canonical(write.error).decode() if write.error is not None else None,
        "run_at": write.run_at,
        "wake_on": write.wake_on,
        "wake_at": write.wake_at,
        "recovery": int(write.recovery),
    }


def _op_name(drafts: Sequence[EventDraft]) -> str | None:
    for draft in drafts:
        name = draft.data.get("name")
        if isinstance(name, str):
            return name
    return None


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{host}"


def _job(row: Row) -> Job:
    return Job(
        id=row["id"],
        agent=row["agent"],
        input=row["input"],
        status=JobStatus(row["status"]),
        park_reason=ParkReason(row["park_reason"]) if row["park_reason"] else None,
        park_detail=row["park_detail"],
        result=row["result"],
        error=row["error"],
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
        wake_on=row["wake_on"],
        wake_at=row["wake_at"],
        parent_id=row["parent_id"],
        control=Control(row["control"]) if row["control"] else None,
        deadline=row["deadline"],
        recoveries=row["recoveries"],
    )


def _signal(row: Row) -> Signal:
    return Signal(
        job_id=row["job_id"],
        seq=row["seq"],
        name=row["name"],
        signal_id=row["signal_id"],
        payload=row["payload"],
        sender=row["sender"],
        created_at=row["created_at"],
        consumed_position=row["consumed_position"],
    )


def _effect(row: Row) -> Effect:
    return Effect(
        job_id=row["job_id"],
        position=row["position"],
        tool=row["tool"],
        effect=EffectClass(row["effect"]),
        args_hash=row["args_hash"],
        idempotency_key=row["idempotency_key"],
        state=EffectState(row["state"]),
        result=row["result"],
        error=row["error"],
        attempt=row["attempt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
