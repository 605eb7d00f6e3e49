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
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
from aetheris.journal import GENESIS_HASH, Event, EventDraft, Recorded
from aetheris.store import sql
from aetheris.store._shared import (
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
from aetheris.store.port import (
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
    signal_wake,
)
from aetheris.store.postgres_directory import PostgresDirectory
from aetheris.store.postgres_keyed import PostgresKeyed
from aetheris.store.postgres_kv import PostgresKeyValue
from aetheris.store.postgres_pooling import open_pool, pooling_from, settle, with_application_name
from aetheris.store.postgres_pruning import PostgresPruning
from aetheris.store.postgres_session import (
    CommitGroup,
    Listener,
    Presence,
    lock_is_free,
    lock_key,
    prepare_commit,
    probe,
    read_journal,
    safe_url,
    schema_mismatch,
    schema_state,
    split_options,
)
from aetheris.store.postgres_tenancy import PostgresTenancy
from aetheris.store.postgres_webhooks import PostgresWebhooks
from aetheris.store.sql import steps
from aetheris.store.sql.rows import (
    POSTGRESQL,
    claim_event_params,
    commit_form,
    commit_params,
    effect_from,
    event_columns,
    event_from,
    job_from,
    job_params,
    signal_from,
)

Q = sql.queries("postgresql")
Row = dict[str, Any]
_MIGRATION_LOCK = 0x4165746865726973  # "Aetheris"

# What PostgreSQL says when a table changed under a statement: a prepared statement whose result
# type changed (a column added by a newer migration), a column or table that is not there.
_SCHEMA_CHANGED = (
    psycopg.errors.FeatureNotSupported,
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedTable,
)


class PostgresStore(
    PostgresKeyValue,
    PostgresTenancy,
    PostgresDirectory,
    PostgresKeyed,
    PostgresWebhooks,
    PostgresPruning,
):
    """Store on PostgreSQL (URL ``postgresql://user@host:port/db``).

    Options may also come as URL parameters: ``?aetheris_pool_max=20&aetheris_reap_grace=2``
    (``pool_min``, ``pool_max``, ``connect_timeout``, ``reap_grace``, ``pgbouncer``): see
    :mod:`aetheris.store.postgres_pooling` for the connection budget and PgBouncer.
    """

    def __init__(
        self,
        url: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        reap_grace: float = 3.0,
        signer: SigningKey | None = None,
    ) -> None:
        url, options = split_options(url)
        self.url = with_application_name(url)
        self.signer = signer  # anchors every write's last event (see aetheris.anchor)
        self.pooling = pooling_from(options, min_connections, max_connections)
        connect_timeout = float(options.pop("connect_timeout", connect_timeout))
        reap_grace = float(options.pop("reap_grace", reap_grace))
        if options:
            raise ConfigurationError(f"unknown aetheris_ options in the URL: {sorted(options)}")
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] | None = None
        self._connect_timeout = connect_timeout
        self.reap_grace = reap_grace
        self._listener: Listener | None = None
        self._free_since: dict[str, float] = {}
        self._presence = Presence()
        self._group = CommitGroup(self)

    # -- plumbing ---------------------------------------------------------------------------

    async def open(self, *, migrate: bool = True) -> None:
        if self._pool is not None:
            return
        await probe(self.url, self._connect_timeout)
        self.pooling = await settle(self.url, self.pooling, self._connect_timeout)
        self._pool = await open_pool(self.url, self.pooling, self._connect_timeout)
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
            raise StoreError(f"store {safe_url(self.url)} is not open")
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
                state = await schema_state(conn)
        except psycopg.Error:
            return StoreError(f"PostgreSQL: {exc}")
        return schema_mismatch(self.url, state, exc)

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

    async def _execute(self, query: str, params: Mapping[str, Any] | None = None) -> None:
        async with self._conn() as conn:
            await conn.execute(Q[query], params)

    # -- schema -----------------------------------------------------------------------------

    async def schema(self) -> SchemaState:
        async with self._conn() as conn:
            return await schema_state(conn)

    async def migrate(self) -> SchemaState:
        async with self._tx() as conn:
            await conn.execute(Q["migration_lock"], {"key": _MIGRATION_LOCK})
            await conn.execute(Q["create_schema_table"])
            await conn.execute(Q["insert_schema_version"])
            row = await _fetch(await conn.execute(Q["schema_version"]))
            for script in sql.pending_scripts("postgresql", row["version"], safe_url(self.url)):
                await conn.execute(script.encode())
            latest = len(sql.migrations("postgresql"))
            await conn.execute(Q["set_schema_version"], {"version": latest})
            return await schema_state(conn)

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(self, new: NewJob) -> tuple[Job, bool]:
        async with self._tx() as conn:
            return await self._create_in(conn, new)

    async def _create_in(self, conn: psycopg.AsyncConnection[Row], new: NewJob) -> tuple[Job, bool]:
        params = job_params(new, POSTGRESQL, time.time())
        if await (await conn.execute(Q["insert_job"], params)).fetchone() is None:
            found = None
            if new.idempotency_key is not None:
                known = {"tenant": new.tenant, "key": new.idempotency_key}
                cur = await conn.execute(Q["job_by_key"], known)
                found = await cur.fetchone()
            return existing_job(new, job_from(found, POSTGRESQL) if found else None), False
        created = await self._append(conn, new.id, 0, GENESIS_HASH, [created_draft(new)])
        if isinstance(new, ForkedJob):  # a fork: its journal follows, in this transaction
            check_commit(new.id, new.journal)
            head = {"event_count": 1, "head_hash": created[0].hash}
            await self._run(conn, _write_commit(new.id, head, new.journal))
        return await self._get(conn, new.id), True

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._one("get_job", {"id": job_id})
        return job_from(row, POSTGRESQL) if row is not None else None

    async def _get(self, conn: psycopg.AsyncConnection[Row], job_id: str) -> Job:
        row = await (await conn.execute(Q["get_job"], {"id": job_id})).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return job_from(row, POSTGRESQL)

    async def find_jobs(
        self, prefix: str, *, limit: int = 10, tenant: str | None = None
    ) -> list[str]:
        params = {"prefix": prefix, "limit": limit, "tenant": tenant}
        rows = await self._all("find_jobs", params)
        return [r["id"] for r in rows]

    # -- ownership --------------------------------------------------------------------------

    async def claim(self, owner: str, lease_ttl: float, where: ClaimFilter) -> Claim | None:
        params = {
            "agents": list(where.agents),
            "queues": list(where.queues) if where.queues is not None else None,
            "versions": claim_versions(where),
            "skip": list(where.skip) if where.skip else None,
            "owner": owner,
            "ttl": lease_ttl,
        }
        # Two round trips: BEGIN + claim, then the claim's event + COMMIT (pipelined); on a
        # first run, its job_created event too (the budget: its first model call reads none).
        async with self._conn() as conn:
            async with conn.pipeline(), conn.transaction():
                row = await (await conn.execute(Q["claim"], params)).fetchone()
                if row is None:
                    return None
                job, previous = job_from(row, POSTGRESQL), row["previous_owner"]
                code = where.versions.get(job.agent)
                draft = claimed_draft(owner, job.lease_epoch, job.attempts, previous, code)
                head = (job.event_count, job.head_hash)
                sealed = seal_all(job.id, *head, [draft], time.time(), self.signer)
                await conn.execute(Q["claim_event"], claim_event_params(job, sealed))
                job = dataclasses.replace(
                    job, event_count=job.event_count + 1, head_hash=sealed[-1].hash
                )
                created = job.first_run and await conn.execute(Q["created_event"], {"id": job.id})
            body = await created.fetchone() if created else None  # read at the COMMIT's sync
        claim = Claim(job, Lease(job.id, job.lease_epoch, owner), previous)
        return with_created_budget(claim, body["body"] if body else None)

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
        head = (commit.head.count, commit.head.hash)
        sealed = seal_all(lease.job_id, *head, commit.events, time.time(), self.signer)
        params = commit_params(lease, commit, sealed)
        if steps.follows(commit) or crashpoints.armed():
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
        child ended, or has parked already and is woken here. Keys it takes, before them.
        """
        async with self._tx() as conn:
            await self._lock_first(conn, job_id, commit)
            row = await (await conn.execute(Q["commit"], params)).fetchone()
            if row is None or row["fenced"] != 1:
                return 0
            await self._follow_up(conn, job_id, commit)
            if crashpoints.armed():
                crashpoints.reach("in_append", op_name(commit.events))
            return 1

    async def _commit_one(self, params: dict[str, Any]) -> int:
        name, args = commit_form(params)
        async with self._conn() as conn:
            cur = await conn.execute(Q[name], args, prepare=prepare_commit(conn))
            return int(row["fenced"]) if (row := await cur.fetchone()) else 0

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
        found = {e.position: e.state for e in await self.effects(job_id=lease.job_id)}
        raise refusal(lease, commit, job, found)

    async def _follow_up(
        self, conn: psycopg.AsyncConnection[Row], job_id: str, commit: Commit
    ) -> None:
        await self._run(conn, steps.follow_up(job_id, commit, time.time()))

    async def _commit_reading_head(self, lease: Lease, commit: Commit) -> list[Event]:
        async with self._tx() as conn:
            await self._lock_first(conn, lease.job_id, commit)
            params = {"id": lease.job_id, "epoch": lease.epoch, "expect": None}
            head = await (await conn.execute(Q["fence"], params)).fetchone()
            if head is None:
                raise LeaseLost(lease.job_id, lease.epoch)
            return await self._run(conn, _write_commit(lease.job_id, head, commit))

    async def apply(self, job_id: str, commit: Commit, guard: Guard) -> Job:
        check_commit(job_id, commit)
        async with self._tx() as conn:
            row = await (await conn.execute(Q["lock_job"], {"id": job_id})).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            check_guard(job_from(row, POSTGRESQL), guard)
            head = await _fetch(await conn.execute(Q["bump_epoch"], {"id": job_id}))
            await self._run(conn, _write_commit(job_id, head, commit))
            return await self._get(conn, job_id)

    async def _run(
        self, conn: psycopg.AsyncConnection[Row], plan: Sequence[steps.Step]
    ) -> list[Event]:
        """Run a write's steps in order; returns the events appended."""
        appended: list[Event] = []
        for step in plan:
            if isinstance(step, steps.Run):
                cur = await conn.execute(Q[step.query], step.params)
                if step.refusal is None:
                    continue
                row = await cur.fetchone()
                if row is None:
                    if step.explain is not None:
                        cur = await conn.execute(Q[step.explain], step.params)
                        row = await cur.fetchone()
                    raise step.refusal(row)
            elif isinstance(step, steps.Append):
                appended += await self._append(
                    conn, step.job_id, step.count, step.prev_hash, step.drafts
                )
            elif isinstance(step, steps.Create):
                await self._create_in(conn, step.new)
            else:
                await self._cancel_children(conn, step.job_id, step.by)
        return appended

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
        sealed = seal_all(job_id, count, prev_hash, drafts, time.time(), self.signer)
        await conn.execute(Q["insert_events"], {"job_id": job_id, **event_columns(sealed)})
        await conn.execute(
            Q["set_head"], {"id": job_id, "count": count + len(sealed), "hash": sealed[-1].hash}
        )
        await self._outbox(conn, sealed)  # the commit statement writes its own: see outbox
        if crashpoints.armed():
            crashpoints.reach("in_append", op_name(drafts))
        return sealed

    # -- reads ------------------------------------------------------------------------------

    async def events(
        self, job_id: str, *, after: int = -1, limit: int | None = None
    ) -> list[Event]:
        params = {"job_id": job_id, "after": after, "limit": limit}
        async with self._conn() as conn:
            rows = await read_journal(conn, "events", params)
        return [event_from(job_id, r) for r in rows]

    async def journal(self, job_id: str) -> list[Recorded]:
        async with self._conn() as conn:
            rows = await read_journal(conn, "journal", {"job_id": job_id})
        return [Recorded.stored(*row) for row in rows]

    async def blobs(self, job_id: str, hashes: Sequence[str] | None = None) -> dict[str, bytes]:
        params = {"job_id": job_id, "hashes": None if hashes is None else list(hashes)}
        return {r["hash"]: bytes(r["body"]) for r in await self._all("blobs", params)}

    async def effects(
        self,
        *,
        job_id: str | None = None,
        states: Sequence[EffectState] | None = None,
        tenant: str | None = None,
    ) -> list[Effect]:
        params = {
            "job_id": job_id,
            "states": [s.value for s in states] if states is not None else None,
            "tenant": tenant,
        }
        return [effect_from(r, POSTGRESQL) for r in await self._all("list_effects", params)]

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
                return signal_from(existing, POSTGRESQL), False
            job = job_from(row, POSTGRESQL)
            if job.status.terminal:
                raise signal_refusal(job)
            body = POSTGRESQL.encode(payload)
            params = {**known, "name": name, "payload": body, "sender": sender}
            inserted = await _fetch(await conn.execute(Q["insert_signal"], params))
            await conn.execute(Q["wake"], {"id": job_id, "wake_on": signal_wake(name)})
            return signal_from(inserted, POSTGRESQL), True

    async def signals(self, job_id: str, *, pending: bool = True) -> list[Signal]:
        rows = await self._all("signals", {"job_id": job_id, "pending": pending})
        return [signal_from(r, POSTGRESQL) for r in rows]

    async def control(self, job_id: str, action: Control, by: str | None = None) -> Job:
        async with self._tx() as conn:
            await self._control(conn, job_id, action, by)
            return await self._get(conn, job_id)

    async def _control(
        self,
        conn: psycopg.AsyncConnection[Row],
        job_id: str,
        action: Control,
        by: str | None = None,
    ) -> None:
        seen = await (await conn.execute(Q["get_job"], {"id": job_id})).fetchone()
        if seen is None:
            raise JobNotFound(job_id)
        if seen["parent_id"] is not None:
            # The waiter first: a child that ends here wakes its parent, so lock the parent.
            await conn.execute(Q["lock_jobs"], {"ids": [seen["parent_id"]]})
        row = await _fetch(await conn.execute(Q["lock_job"], {"id": job_id}))
        job = job_from(row, POSTGRESQL)
        plan = steps.apply_control(job, plan_control(job, action, by), POSTGRESQL, time.time())
        await self._run(conn, plan)

    async def _cancel_children(
        self, conn: psycopg.AsyncConnection[Row], job_id: str, by: str | None = None
    ) -> None:
        children = await (await conn.execute(Q["children"], {"id": job_id})).fetchall()
        for child in children:
            with contextlib.suppress(Conflict):
                await self._control(conn, child["id"], Control.CANCEL, by)

    async def next_wake(self) -> float | None:
        row = await self._one("next_wake")
        return row["at"] if row is not None else None

    # -- liveness and wake-ups ----------------------------------------------------------------

    async def register_worker(
        self, owner: str, *, agents: Sequence[str] = (), queues: Sequence[str] | None = None
    ) -> None:
        if not self.pooling.transaction_pooled:  # no LISTEN nor session lock: see settle()
            self._listener = self._listener or Listener(self.url, self._connect_timeout)
            await self._listener.start(lock_key(owner))
        async with self._conn() as conn:
            await self._presence.register(conn, worker_info(owner, agents, queues, 0.0))

    async def touch_worker(self, owner: str) -> None:
        if owner in self._presence.registered:
            async with self._conn() as conn:
                await self._presence.touch(conn, owner)

    async def unregister_worker(self, owner: str, *, graceful: bool = True) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if owner in self._presence.registered:
            async with self._conn() as conn:
                await self._presence.withdraw(conn, owner, graceful)

    async def wait_for_work(self, timeout: float) -> None:
        if self._listener is None:
            await asyncio.sleep(timeout)
        else:
            await self._listener.wait(timeout)

    async def reap(self) -> list[str]:
        """Expire leases of workers whose session has been gone for ``reap_grace`` seconds."""
        if self.pooling.transaction_pooled:  # no liveness locks: leases expire instead
            return []
        mine = self._listener.key if self._listener is not None else None
        now = time.monotonic()
        dead: list[str] = []
        async with self._conn() as conn:
            owners = [r["lease_owner"] for r in await _all(conn, "running_owners")]
            for owner in owners:
                key = lock_key(owner)
                if key == mine or not await lock_is_free(conn, key):
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


async def _all(conn: psycopg.AsyncConnection[Row], query: str) -> list[Row]:
    return await (await conn.execute(Q[query])).fetchall()


async def _fetch(cur: psycopg.AsyncCursor[Row]) -> Row:
    row = await cur.fetchone()
    if row is None:
        raise StoreError("PostgreSQL returned no row where one was expected")
    return row


def _write_commit(job_id: str, head: Row, commit: Commit) -> list[steps.Step]:
    count, prev_hash = head["event_count"], head["head_hash"]
    return steps.write_commit(job_id, count, prev_hash, commit, POSTGRESQL, time.time())
