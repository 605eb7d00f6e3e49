-- Named queries of the PostgreSQL store. Each block starts with "-- name: <name>".
-- Times come from the database clock: aetheris_now() is now() in Unix seconds (a :now
-- parameter, the SQLite store's clock, is ignored here).

-- name: schema_table
SELECT to_regclass('aetheris_schema') AS found WHERE to_regclass('aetheris_schema') IS NOT NULL

-- name: create_schema_table
CREATE TABLE IF NOT EXISTS aetheris_schema (version integer)

-- name: insert_schema_version
INSERT INTO aetheris_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM aetheris_schema)

-- name: schema_version
SELECT version FROM aetheris_schema

-- name: set_schema_version
UPDATE aetheris_schema SET version = %(version)s

-- name: migration_lock
-- Migrations are serialized across processes (released when the transaction ends).
SELECT pg_advisory_xact_lock(%(key)s)

-- name: worker_lock
-- Held by a worker's listening session while it runs: the proof of its liveness.
SELECT pg_advisory_lock(%(key)s)

-- name: listen
LISTEN aetheris_work

-- name: backend_pid
-- The server process a statement ran in: behind a pooler, not the one named at connection.
SELECT pg_backend_pid() AS pid

-- name: insert_job
INSERT INTO jobs (id, agent, input, status, idempotency_key, queue, priority, run_at,
                  head_hash, created_at, updated_at, parent_id, deadline, tenant)
VALUES (%(id)s, %(agent)s, %(input)s::jsonb, 'pending', %(idempotency_key)s, %(queue)s,
        %(priority)s, coalesce(%(run_at)s, aetheris_now()), %(head_hash)s, aetheris_now(),
        aetheris_now(), %(parent_id)s, %(deadline)s, %(tenant)s)
ON CONFLICT DO NOTHING
RETURNING id

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s

-- name: lock_job
SELECT * FROM jobs WHERE id = %(id)s FOR UPDATE

-- name: lock_jobs
-- Jobs about to be woken, locked before the job that wakes them (in id order: no deadlock).
SELECT id FROM jobs WHERE id = ANY(%(ids)s) ORDER BY id FOR UPDATE

-- name: job_by_key
SELECT * FROM jobs WHERE tenant = %(tenant)s AND idempotency_key = %(key)s

-- name: list_jobs
-- A later page starts at its cursor: the bound on created_at alone is what the index can seek
-- to in a generic plan too (the OR below it cannot), so a page costs the same at any depth.
SELECT * FROM jobs
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(agent)s::text IS NULL OR agent = %(agent)s)
  AND (%(since)s::float8 IS NULL OR created_at >= %(since)s)
  AND (%(until)s::float8 IS NULL OR created_at < %(until)s)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(park_reason)s::text IS NULL OR park_reason = %(park_reason)s)
  AND created_at <= coalesce(%(after_at)s::float8, 'infinity')
  AND (%(after_at)s::float8 IS NULL OR (created_at, id) < (%(after_at)s, %(after_id)s::text))
  AND (%(idempotency_key)s::text IS NULL OR idempotency_key = %(idempotency_key)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: find_jobs
SELECT id FROM jobs
WHERE starts_with(id, %(prefix)s) AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY id LIMIT %(limit)s

-- name: count_jobs
-- Of every tenant's jobs, or of one (:tenant), as are the two below.
SELECT tenant, status, count(*) AS n FROM jobs
WHERE %(tenant)s::text IS NULL OR tenant = %(tenant)s
GROUP BY tenant, status

-- name: oldest_pending
SELECT min(created_at) AS at FROM jobs
WHERE status = 'pending' AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)

-- name: count_effects
SELECT e.state, count(*) AS n FROM effects e
WHERE %(tenant)s::text IS NULL OR EXISTS (
    SELECT 1 FROM jobs j WHERE j.id = e.job_id AND j.tenant = %(tenant)s)
GROUP BY e.state

-- name: heartbeat
-- The rows are locked in id order first (byte order, as the store sorts a group commit's jobs),
-- then updated: an UPDATE ... FROM locks rows in whatever order its join happens to run, and a
-- heartbeat and a group commit that lock two jobs in opposite orders deadlock. Neither step
-- filters on the status column, so each reaches its rows by primary key, one per lease,
-- whatever the statistics say of the running jobs (filtering on it, a planner that believed
-- few jobs run read them all through the status index, their rows scattered over the
-- history's pages); the status is checked on the locked row.
WITH mine AS (
    SELECT j.id, j.status FROM jobs AS j
    JOIN unnest(%(ids)s::text[], %(epochs)s::bigint[]) AS l(id, epoch)
      ON j.id = l.id AND j.lease_epoch = l.epoch
    ORDER BY j.id COLLATE "C"
    FOR UPDATE OF j
)
UPDATE jobs AS j SET lease_expires_at = aetheris_now() + %(ttl)s
FROM mine WHERE j.id = mine.id AND mine.status = 'running'
RETURNING j.id, j.control

-- name: fence
UPDATE jobs SET updated_at = aetheris_now()
WHERE id = %(id)s AND lease_epoch = %(epoch)s AND status = 'running'
  AND (%(expect)s::bigint IS NULL OR event_count = %(expect)s)
RETURNING event_count, head_hash

-- name: bump_epoch
UPDATE jobs SET lease_epoch = lease_epoch + 1, lease_owner = NULL, updated_at = aetheris_now()
WHERE id = %(id)s
RETURNING event_count, head_hash

-- name: insert_events
INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash, anchor_key, anchor_sig)
SELECT %(job_id)s, u.seq, u.type, u.position, u.body, u.prev_hash, u.hash, u.anchor_key,
       u.anchor_sig
FROM unnest(%(seqs)s::bigint[], %(types)s::text[], %(positions)s::integer[],
            %(bodies)s::bytea[], %(prevs)s::text[], %(hashes)s::text[], %(a_keys)s::text[],
            %(a_sigs)s::text[])
     AS u(seq, type, position, body, prev_hash, hash, anchor_key, anchor_sig)

-- name: insert_blobs
INSERT INTO blobs (job_id, hash, body)
SELECT %(job_id)s, b.hash, b.body FROM unnest(%(b_hashes)s::text[], %(b_bodies)s::bytea[]) AS b(hash, body)
ON CONFLICT DO NOTHING

-- name: blobs
SELECT hash, body FROM blobs
WHERE job_id = %(job_id)s AND (%(hashes)s::text[] IS NULL OR hash = ANY(%(hashes)s::text[]))

-- name: set_head
UPDATE jobs SET event_count = %(count)s, head_hash = %(hash)s WHERE id = %(id)s

-- name: set_code_version
-- The agent version that wrote the entries of a commit (a commit that read the head first).
UPDATE jobs SET code_version = %(code)s WHERE id = %(id)s

-- name: set_status
UPDATE jobs
SET status = %(status)s, park_reason = %(park_reason)s, park_detail = %(park_detail)s::jsonb,
    result = %(result)s::jsonb, error = %(error)s::jsonb, run_at = coalesce(%(run_at)s, aetheris_now()),
    wake_on = %(wake_on)s, wake_at = %(wake_at)s,
    control = CASE WHEN %(status)s IN ('succeeded', 'failed', 'cancelled', 'compensated')
                   THEN NULL ELSE control END,
    control_by = CASE WHEN %(status)s IN ('succeeded', 'failed', 'cancelled', 'compensated')
                       THEN NULL ELSE control_by END,
    lease_owner = CASE WHEN %(status)s = 'running' THEN lease_owner END,
    lease_expires_at = CASE WHEN %(status)s = 'running' THEN lease_expires_at END,
    recoveries = recoveries + %(recovery)s,
    updated_at = aetheris_now()
WHERE id = %(id)s

-- name: walk_the_journal_key
-- Before `events`, in its transaction: the journal is read by walking the primary key (see
-- aetheris.store.postgres_session.read_journal).
SET LOCAL enable_sort = off

-- name: events
SELECT seq, body, prev_hash, hash, anchor_key, anchor_sig FROM events
WHERE job_id = %(job_id)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s

-- name: journal
-- A run's read of the journal at its claim: `events` without the hashes.
SELECT seq, type, position, body FROM events WHERE job_id = %(job_id)s ORDER BY seq

-- name: get_effect
SELECT state FROM effects WHERE job_id = %(job_id)s AND position = %(position)s

-- name: insert_effect
INSERT INTO effects (job_id, position, tool, effect, args_hash, idempotency_key, state,
                     result, error, attempt, created_at, updated_at)
VALUES (%(job_id)s, %(position)s, %(tool)s, %(effect)s, %(args_hash)s, %(idempotency_key)s,
        %(state)s, %(result)s::jsonb, %(error)s::jsonb, %(attempt)s, aetheris_now(), aetheris_now())
ON CONFLICT DO NOTHING
RETURNING 1

-- name: update_effect
UPDATE effects
SET state = %(state)s, result = %(result)s::jsonb, error = %(error)s::jsonb,
    attempt = %(attempt)s, updated_at = aetheris_now()
WHERE job_id = %(job_id)s AND position = %(position)s AND state = %(expect)s
RETURNING 1

-- name: list_effects
SELECT * FROM effects
WHERE (%(job_id)s::text IS NULL OR job_id = %(job_id)s)
  AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s))
  AND (%(tenant)s::text IS NULL OR job_id IN (SELECT id FROM jobs WHERE tenant = %(tenant)s))
ORDER BY job_id, position

-- name: upsert_agents
-- :agents is a JSON object: agent name -> its input's JSON schema (or null).
INSERT INTO agents (name, last_seen, input_schema)
SELECT a.key, aetheris_now(), NULLIF(a.value, 'null'::jsonb)
FROM jsonb_each(%(agents)s::jsonb) AS a
ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen,
                                 input_schema = excluded.input_schema

-- name: agent_input_schema
SELECT input_schema FROM agents WHERE name = %(name)s

-- name: list_agents
SELECT name FROM agents ORDER BY name

-- name: register_worker
INSERT INTO workers (id, agents, queues, host, pid, started_at, last_seen)
VALUES (%(id)s, %(agents)s::jsonb, %(queues)s::jsonb, %(host)s, %(pid)s, aetheris_now(),
        aetheris_now())
ON CONFLICT (id) DO UPDATE SET agents = excluded.agents, queues = excluded.queues,
    host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
    last_seen = excluded.last_seen
RETURNING started_at

-- name: touch_worker
-- A row removed meanwhile (forgotten while its process was stopped) is written again.
INSERT INTO workers (id, agents, queues, host, pid, started_at, last_seen)
VALUES (%(id)s, %(agents)s::jsonb, %(queues)s::jsonb, %(host)s, %(pid)s, %(started_at)s,
        aetheris_now())
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen

-- name: forget_workers
DELETE FROM workers WHERE last_seen < aetheris_now() - %(forget)s

-- name: delete_worker
DELETE FROM workers WHERE id = %(id)s

-- name: list_workers
SELECT *, last_seen >= aetheris_now() - %(window)s AS alive FROM workers
ORDER BY started_at, id

-- name: running_owners
SELECT DISTINCT lease_owner FROM jobs WHERE status = 'running' AND lease_owner IS NOT NULL

-- name: try_lock
SELECT pg_try_advisory_lock(%(key)s) AS free

-- name: unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: expire_owners
UPDATE jobs SET lease_expires_at = aetheris_now()
WHERE status = 'running' AND lease_owner = ANY(%(owners)s)

-- name: commit
-- One statement, one round trip: fence on the lease epoch and the journal head, check the
-- ledger rows' expected states, then write ledger rows, events, head and status together.
-- Nothing is written unless the fence holds; the result says whether it did.
WITH fence AS (
    UPDATE jobs SET
        event_count = %(count)s,
        head_hash = %(hash)s,
        updated_at = aetheris_now(),
        status = coalesce(%(status)s, status),
        park_reason = CASE WHEN %(status)s IS NULL THEN park_reason ELSE %(park_reason)s END,
        park_detail = CASE WHEN %(status)s IS NULL THEN park_detail
                           ELSE %(park_detail)s::jsonb END,
        result = CASE WHEN %(status)s IS NULL THEN result ELSE %(result)s::jsonb END,
        error = CASE WHEN %(status)s IS NULL THEN error ELSE %(error)s::jsonb END,
        run_at = CASE WHEN %(status)s IS NULL THEN run_at
                      ELSE coalesce(%(run_at)s, aetheris_now()) END,
        wake_on = CASE WHEN %(status)s IS NULL THEN wake_on ELSE %(wake_on)s END,
        wake_at = CASE WHEN %(status)s IS NULL THEN wake_at ELSE %(wake_at)s END,
        control = CASE WHEN %(status)s IN ('succeeded', 'failed', 'cancelled', 'compensated')
                       THEN NULL ELSE control END,
        control_by = CASE WHEN %(status)s IN ('succeeded', 'failed', 'cancelled', 'compensated')
                           THEN NULL ELSE control_by END,
        lease_owner = CASE WHEN coalesce(%(status)s, 'running') = 'running' THEN lease_owner END,
        lease_expires_at = CASE WHEN coalesce(%(status)s, 'running') = 'running'
                                THEN lease_expires_at END,
        recoveries = recoveries + %(recovery)s,
        code_version = coalesce(%(code)s, code_version)
    WHERE id = %(id)s AND lease_epoch = %(epoch)s AND status = 'running'
      AND event_count = %(expect)s
      AND NOT EXISTS (
          -- one primary-key lookup per ledger row written (LATERAL ... LIMIT 1): a join or an
          -- EXISTS let a generic plan hash all of the job's rows, slower as the job grew
          SELECT 1
          FROM unnest(%(e_positions)s::integer[], %(e_expects)s::text[]) AS w(position, expect)
          LEFT JOIN LATERAL (
              SELECT e.state FROM effects e
              WHERE e.job_id = %(id)s AND e.position = w.position
              LIMIT 1
          ) AS found ON true
          WHERE (w.expect IS NULL AND found.state IS NOT NULL)
             OR (w.expect IS NOT NULL AND found.state IS DISTINCT FROM w.expect))
    RETURNING id, tenant, agent, status
), written_effects AS (
    INSERT INTO effects (job_id, position, tool, effect, args_hash, idempotency_key, state,
                         result, error, attempt, created_at, updated_at)
    SELECT fence.id, w.position, w.tool, w.effect, w.args_hash, w.idempotency_key, w.state,
           w.result::jsonb, w.error::jsonb, w.attempt, aetheris_now(), aetheris_now()
    FROM fence,
         unnest(%(e_positions)s::integer[], %(e_tools)s::text[], %(e_effects)s::text[],
                %(e_args)s::text[], %(e_keys)s::text[], %(e_states)s::text[],
                %(e_results)s::text[], %(e_errors)s::text[], %(e_attempts)s::integer[])
         AS w(position, tool, effect, args_hash, idempotency_key, state, result, error, attempt)
    ON CONFLICT (job_id, position) DO UPDATE
    SET state = excluded.state, result = excluded.result, error = excluded.error,
        attempt = excluded.attempt, updated_at = excluded.updated_at
), written_events AS (
    INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash, anchor_key,
                        anchor_sig)
    SELECT fence.id, u.seq, u.type, u.position, u.body, u.prev_hash, u.hash, u.anchor_key,
           u.anchor_sig
    FROM fence,
         unnest(%(seqs)s::bigint[], %(types)s::text[], %(positions)s::integer[],
                %(bodies)s::bytea[], %(prevs)s::text[], %(hashes)s::text[],
                %(a_keys)s::text[], %(a_sigs)s::text[])
         AS u(seq, type, position, body, prev_hash, hash, anchor_key, anchor_sig)
), written_blobs AS (
    INSERT INTO blobs (job_id, hash, body)
    SELECT fence.id, b.hash, b.body
    FROM fence, unnest(%(b_hashes)s::text[], %(b_bodies)s::bytea[]) AS b(hash, body)
    ON CONFLICT DO NOTHING
), written_deliveries AS (
    -- the webhook outbox (see store/outbox.py): the fenced row's values are the new ones
    INSERT INTO webhook_deliveries (webhook_id, tenant, job_id, agent, job_status, event_id,
                                    event_type, payload, created_at, next_at)
    SELECT w.id, fence.tenant, fence.id, fence.agent, fence.status, n.event_id, n.type,
           n.payload::jsonb, aetheris_now(), aetheris_now()
    FROM fence
    CROSS JOIN unnest(%(n_ids)s::text[], %(n_types)s::text[], %(n_payloads)s::text[])
         AS n(event_id, type, payload)
    JOIN webhooks w ON w.tenant = fence.tenant AND w.disabled_at IS NULL
                   AND n.type = ANY(w.events)
    ON CONFLICT DO NOTHING
)
SELECT count(*) AS fenced FROM fence

-- name: commit_step
-- The commit of one pure step or model call (see rows.commit_form): the fence of commit, then
-- its one event and its blobs; no status, ledger row, webhook delivery or anchor to write.
WITH fence AS (
    UPDATE jobs SET
        event_count = %(count)s,
        head_hash = %(hash)s,
        updated_at = aetheris_now(),
        recoveries = recoveries + %(recovery)s,
        code_version = coalesce(%(code)s, code_version)
    WHERE id = %(id)s AND lease_epoch = %(epoch)s AND status = 'running'
      AND event_count = %(expect)s
    RETURNING id
), written AS (
    INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash)
    SELECT fence.id, %(seq)s::bigint, %(type)s::text, %(position)s::integer, %(body)s::bytea,
           %(prev)s::text, %(hash)s::text
    FROM fence
), written_blobs AS (
    INSERT INTO blobs (job_id, hash, body)
    SELECT fence.id, b.hash, b.body
    FROM fence, unnest(%(b_hashes)s::text[], %(b_bodies)s::bytea[]) AS b(hash, body)
    ON CONFLICT DO NOTHING
)
SELECT count(*) AS fenced FROM fence

-- name: claim
-- Expired leases first (their jobs were already running), then parked jobs that are due,
-- then pending jobs; SKIP LOCKED so claimers never wait on each other. A later branch is
-- skipped outright when an earlier one found a job, so it locks nothing. With %(versions)s
-- (agent -> version), a job another version of its agent wrote is passed over; %(skip)s lists
-- job ids this worker passes over. Plain columns of the row only.
WITH expired AS (
    SELECT id, lease_owner FROM jobs
    WHERE status = 'running' AND lease_expires_at < aetheris_now()
      AND agent = ANY(%(agents)s)
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
      AND (%(versions)s::jsonb IS NULL OR code_version IS NULL
           OR code_version = %(versions)s::jsonb ->> agent)
      AND (%(skip)s::text[] IS NULL OR id <> ALL(%(skip)s))
    ORDER BY lease_expires_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id, NULL::text AS lease_owner FROM jobs
    WHERE status = 'parked' AND wake_at <= aetheris_now()
      AND agent = ANY(%(agents)s)
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
      AND (%(versions)s::jsonb IS NULL OR code_version IS NULL
           OR code_version = %(versions)s::jsonb ->> agent)
      AND (%(skip)s::text[] IS NULL OR id <> ALL(%(skip)s))
      AND NOT EXISTS (SELECT 1 FROM expired)
    ORDER BY wake_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), pending AS (
    SELECT id, NULL::text AS lease_owner FROM jobs
    WHERE status = 'pending' AND run_at <= aetheris_now()
      AND agent = ANY(%(agents)s)
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s))
      AND (%(versions)s::jsonb IS NULL OR code_version IS NULL
           OR code_version = %(versions)s::jsonb ->> agent)
      AND (%(skip)s::text[] IS NULL OR id <> ALL(%(skip)s))
      AND NOT EXISTS (SELECT 1 FROM expired) AND NOT EXISTS (SELECT 1 FROM due)
    ORDER BY priority DESC, run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), candidate AS (
    SELECT * FROM expired UNION ALL SELECT * FROM due UNION ALL SELECT * FROM pending
)
UPDATE jobs
SET status = 'running', lease_epoch = jobs.lease_epoch + 1, lease_owner = %(owner)s,
    lease_expires_at = aetheris_now() + %(ttl)s, attempts = jobs.attempts + 1,
    -- its own expired lease taken back is no death of a worker: not counted
    recoveries = jobs.recoveries
        + (candidate.lease_owner IS NOT NULL AND candidate.lease_owner <> %(owner)s)::integer,
    park_reason = NULL, park_detail = NULL, wake_on = NULL, wake_at = NULL,
    updated_at = aetheris_now()
FROM candidate
WHERE jobs.id = candidate.id
RETURNING jobs.*, candidate.lease_owner AS previous_owner

-- name: created_event
-- A job's first event (job_created), read with its first claim for the budget it names.
SELECT body FROM events WHERE job_id = %(id)s AND seq = 0

-- name: claim_event
-- The claim's own event, in a second statement pipelined with the claim: fenced on the epoch
-- the claim set and the head it read.
WITH fence AS (
    UPDATE jobs SET event_count = %(count)s, head_hash = %(hash)s
    WHERE id = %(id)s AND lease_epoch = %(epoch)s AND event_count = %(expect)s
    RETURNING id
)
INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash, anchor_key, anchor_sig)
SELECT fence.id, u.seq, u.type, u.position, u.body, u.prev_hash, u.hash, u.anchor_key,
       u.anchor_sig
FROM fence,
     unnest(%(seqs)s::bigint[], %(types)s::text[], %(positions)s::integer[],
            %(bodies)s::bytea[], %(prevs)s::text[], %(hashes)s::text[], %(a_keys)s::text[],
            %(a_sigs)s::text[])
     AS u(seq, type, position, body, prev_hash, hash, anchor_key, anchor_sig)

-- name: wake
UPDATE jobs SET status = 'pending', run_at = aetheris_now(), wake_on = NULL, wake_at = NULL,
    updated_at = aetheris_now()
WHERE id = %(id)s AND status = 'parked' AND wake_on = %(wake_on)s

-- name: wake_if_ready
-- Right after a job parks: if what it waits for is already there, or a cancel was requested
-- while it ran, it must not sleep on it. A separate statement after the parking one: it sees
-- what committed before it started (those who wake a job lock it first, so nothing is missed).
-- What it waits for is looked up by key (the signal's name, the child's id, cut out of
-- wake_on), never by an expression of every row's columns: index probes, however many jobs
-- and signals the tables hold.
UPDATE jobs SET status = 'pending', run_at = aetheris_now(), wake_on = NULL, wake_at = NULL
WHERE id = %(id)s AND status = 'parked' AND (
    control = 'cancel'
    OR EXISTS (SELECT 1 FROM signals s WHERE s.job_id = jobs.id AND s.consumed_position IS NULL
               AND starts_with(jobs.wake_on, 'signal:') AND s.name = substr(jobs.wake_on, 8))
    OR EXISTS (SELECT 1 FROM jobs c WHERE starts_with(jobs.wake_on, 'job:')
               AND c.id = substr(jobs.wake_on, 5)
               AND c.status IN ('succeeded', 'failed', 'cancelled', 'compensated')))

-- name: consume_signal
UPDATE signals SET consumed_position = %(position)s
WHERE job_id = %(job_id)s AND seq = %(seq)s AND consumed_position IS NULL
RETURNING 1

-- name: signal_by_id
SELECT * FROM signals WHERE job_id = %(job_id)s AND signal_id = %(signal_id)s

-- name: insert_signal
INSERT INTO signals (job_id, seq, name, signal_id, payload, sender, created_at)
VALUES (%(job_id)s, (SELECT coalesce(max(seq), 0) + 1 FROM signals WHERE job_id = %(job_id)s),
        %(name)s, %(signal_id)s, %(payload)s::jsonb, %(sender)s, aetheris_now())
RETURNING *

-- name: signals
SELECT * FROM signals
WHERE job_id = %(job_id)s AND (NOT %(pending)s OR consumed_position IS NULL)
ORDER BY seq

-- name: set_control
WITH changed AS (
    UPDATE jobs SET control = %(control)s, control_by = %(by)s, updated_at = aetheris_now()
    WHERE id = %(id)s
    RETURNING queue
)
SELECT pg_notify('aetheris_work', queue) FROM changed

-- name: children
SELECT id FROM jobs WHERE parent_id = %(id)s
  AND status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated')

-- name: next_wake
SELECT min(wake_at) AS at FROM jobs WHERE status = 'parked' AND wake_at IS NOT NULL

-- name: kv_put
INSERT INTO kv (space, key, value)
SELECT %(space)s, k, v FROM unnest(%(keys)s::text[], %(values)s::bytea[]) AS t(k, v)
ON CONFLICT (space, key) DO UPDATE SET value = excluded.value

-- name: kv_put_new
INSERT INTO kv (space, key, value)
SELECT %(space)s, k, v FROM unnest(%(keys)s::text[], %(values)s::bytea[]) AS t(k, v)
ON CONFLICT DO NOTHING

-- name: kv_get
SELECT key, value FROM kv WHERE space = %(space)s AND key = ANY(%(keys)s::text[])

-- name: kv_scan
-- A key range in order; a NULL :limit means no limit.
SELECT key, value FROM kv WHERE space = %(space)s AND key >= %(low)s AND key < %(high)s
ORDER BY key LIMIT %(limit)s

-- name: kv_scan_descending
SELECT key, value FROM kv WHERE space = %(space)s AND key >= %(low)s AND key < %(high)s
ORDER BY key DESC LIMIT %(limit)s

-- name: take_token
-- A token bucket in the kv space 'aetheris:rate': the value is "tokens updated_at" (epoch
-- seconds, the database's clock). Refill, take one, and answer how long the taker waits (its
-- token may be a reservation: the count goes below zero and later takers queue behind it).
WITH clock AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now)
INSERT INTO kv AS b (space, key, value)
SELECT 'aetheris:rate', %(key)s,
       convert_to((%(burst)s::float8 - 1)::text || ' ' || now::text, 'UTF8') FROM clock
ON CONFLICT (space, key) DO UPDATE SET value = (
    SELECT convert_to(
        (least(%(burst)s::float8, split_part(old, ' ', 1)::float8
               + greatest(0, now - split_part(old, ' ', 2)::float8) * %(rate)s::float8) - 1)::text
        || ' ' || greatest(now, split_part(old, ' ', 2)::float8)::text, 'UTF8')
    FROM clock, convert_from(b.value, 'UTF8') AS old
)
RETURNING greatest(0, -split_part(convert_from(value, 'UTF8'), ' ', 1)::float8 / %(rate)s::float8)
    AS wait

-- name: kv_delete
DELETE FROM kv WHERE space = %(space)s AND key = ANY(%(keys)s::text[])

-- name: kv_delete_range
DELETE FROM kv WHERE space = %(space)s AND key >= %(low)s AND key < %(high)s

-- name: insert_api_key
INSERT INTO api_keys (id, tenant, role, secret_hash, name, created_at)
VALUES (%(id)s, %(tenant)s, %(role)s, %(secret_hash)s, %(name)s, %(created_at)s)
ON CONFLICT DO NOTHING
RETURNING id

-- name: get_api_key
SELECT * FROM api_keys WHERE id = %(id)s

-- name: list_api_keys
SELECT * FROM api_keys ORDER BY created_at, id

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, aetheris_now()) WHERE id = %(id)s
RETURNING *

-- Keyed signals (incoming webhooks): see migration 0009.

-- name: lock_keys
-- Before a commit that takes keys locks its job row: lock the keys' rows (made if need be),
-- as a delivery does first too. One lock order, key then job, for both.
INSERT INTO correlations (tenant, name, key, job_id, updated_at)
SELECT j.tenant, c.name, c.key, NULL, aetheris_now()
FROM jobs j, unnest(%(names)s::text[], %(keys)s::text[]) AS c(name, key)
WHERE j.id = %(id)s
ORDER BY c.name, c.key
ON CONFLICT (tenant, name, key) DO UPDATE SET updated_at = correlations.updated_at

-- name: hold_key
-- The job takes (name, key) in its tenant, unless a job that has not ended holds it.
INSERT INTO correlations (tenant, name, key, job_id, updated_at)
SELECT tenant, %(name)s, %(key)s, id, aetheris_now() FROM jobs WHERE id = %(job_id)s
ON CONFLICT (tenant, name, key) DO UPDATE
SET job_id = excluded.job_id, updated_at = excluded.updated_at
WHERE correlations.job_id IS NULL OR correlations.job_id = excluded.job_id
   OR NOT EXISTS (SELECT 1 FROM jobs h WHERE h.id = correlations.job_id
                  AND h.status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated'))
RETURNING job_id

-- name: key_holder_of
-- Who holds the key a job could not take (hold_key's parameters).
SELECT job_id FROM correlations
WHERE tenant = (SELECT tenant FROM jobs WHERE id = %(job_id)s) AND name = %(name)s
  AND key = %(key)s

-- name: collect_mailbox
-- The key's signals in the mailbox go to the job's inbox, in arrival order.
INSERT INTO signals (job_id, seq, name, signal_id, payload, sender, created_at)
SELECT %(job_id)s,
       (SELECT coalesce(max(seq), 0) FROM signals WHERE job_id = %(job_id)s)
           + row_number() OVER (ORDER BY k.seq),
       %(inbox)s, %(inbox)s || ':' || k.signal_id, k.payload, k.sender, k.created_at
FROM keyed_signals k
WHERE k.tenant = (SELECT tenant FROM jobs WHERE id = %(job_id)s) AND k.name = %(name)s
  AND k.key = %(key)s AND k.job_id IS NULL

-- name: mark_collected
UPDATE keyed_signals SET job_id = %(job_id)s
WHERE tenant = (SELECT tenant FROM jobs WHERE id = %(job_id)s) AND name = %(name)s
  AND key = %(key)s AND job_id IS NULL

-- name: key_holder
SELECT c.job_id FROM correlations c JOIN jobs j ON j.id = c.job_id
WHERE c.tenant = %(tenant)s AND c.name = %(name)s AND c.key = %(key)s
  AND j.status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated')

-- name: lock_key
-- A delivery's first statement: the key's row (made if need be), locked, and who holds it.
INSERT INTO correlations (tenant, name, key, job_id, updated_at)
VALUES (%(tenant)s, %(name)s, %(key)s, NULL, aetheris_now())
ON CONFLICT (tenant, name, key) DO UPDATE SET updated_at = correlations.updated_at
RETURNING job_id

-- name: keyed_signal_by_id
SELECT job_id FROM keyed_signals
WHERE tenant = %(tenant)s AND name = %(name)s AND key = %(key)s AND signal_id = %(signal_id)s

-- name: insert_keyed_signal
INSERT INTO keyed_signals (tenant, name, key, signal_id, seq, payload, sender, created_at,
                           job_id)
VALUES (%(tenant)s, %(name)s, %(key)s, %(signal_id)s,
        (SELECT coalesce(max(seq), 0) + 1 FROM keyed_signals
         WHERE tenant = %(tenant)s AND name = %(name)s AND key = %(key)s),
        %(payload)s::jsonb, %(sender)s, aetheris_now(), %(job_id)s)

-- name: insert_webhook
INSERT INTO webhooks (id, tenant, url, secret, events, created_at)
VALUES (%(id)s, %(tenant)s, %(url)s, %(secret)s, %(events)s::text[], %(created_at)s)
ON CONFLICT DO NOTHING
RETURNING id

-- name: get_webhook
SELECT * FROM webhooks WHERE id = %(id)s

-- name: list_webhooks
SELECT * FROM webhooks
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(disabled)s OR disabled_at IS NULL)
ORDER BY created_at, id

-- name: disable_webhook
UPDATE webhooks SET disabled_at = coalesce(disabled_at, aetheris_now()) WHERE id = %(id)s
RETURNING *

-- name: drop_deliveries
-- A deleted subscription's deliveries that were still to be sent.
UPDATE webhook_deliveries SET state = 'dead', last_error = %(error)s, claim = NULL
WHERE webhook_id = %(id)s AND state = 'pending'

-- name: insert_deliveries
-- The outbox for events appended outside the commit statement (which writes its own): one
-- delivery per active subscription of the job's tenant to each event's type.
INSERT INTO webhook_deliveries (webhook_id, tenant, job_id, agent, job_status, event_id,
                                event_type, payload, created_at, next_at)
SELECT w.id, j.tenant, j.id, j.agent, j.status, n.event_id, n.type, n.payload::jsonb,
       aetheris_now(), aetheris_now()
FROM jobs j
CROSS JOIN unnest(%(n_ids)s::text[], %(n_types)s::text[], %(n_payloads)s::text[])
     AS n(event_id, type, payload)
JOIN webhooks w ON w.tenant = j.tenant AND w.disabled_at IS NULL AND n.type = ANY(w.events)
WHERE j.id = %(job_id)s
ON CONFLICT DO NOTHING

-- name: claim_deliveries
-- SKIP LOCKED: concurrent deliverers never wait on, nor share, a delivery.
WITH due AS (
    SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.state = 'pending' AND d.next_at <= aetheris_now() AND w.disabled_at IS NULL
    ORDER BY d.next_at, d.id
    LIMIT %(limit)s
    FOR UPDATE OF d SKIP LOCKED
), claimed AS (
    UPDATE webhook_deliveries d SET next_at = aetheris_now() + %(lease)s, claim = %(token)s
    FROM due WHERE d.id = due.id
    RETURNING d.*
)
SELECT claimed.*, w.url, w.secret FROM claimed JOIN webhooks w ON w.id = claimed.webhook_id
ORDER BY claimed.id

-- name: record_attempt
UPDATE webhook_deliveries
SET state = %(state)s,
    attempts = attempts + 1,
    next_at = CASE WHEN %(retry_in)s::float8 IS NULL THEN next_at
                   ELSE aetheris_now() + %(retry_in)s::float8 END,
    claim = NULL,
    last_status = %(status)s,
    last_error = %(error)s,
    delivered_at = CASE WHEN %(state)s = 'delivered' THEN aetheris_now() END,
    log = log || jsonb_build_array(jsonb_build_object(
        'at', aetheris_now(), 'status', %(status)s::integer, 'error', %(error)s::text,
        'duration', %(duration)s::float8, 'retry_in', %(retry_in)s::float8))
WHERE id = %(id)s AND claim = %(token)s AND state = 'pending'
RETURNING *

-- name: list_deliveries
SELECT * FROM webhook_deliveries
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(webhook_id)s::text IS NULL OR webhook_id = %(webhook_id)s)
  AND (%(state)s::text IS NULL OR state = %(state)s)
ORDER BY id DESC
LIMIT %(limit)s

-- name: record_signing_key
INSERT INTO signing_keys (key_id, public_key, first_seen)
VALUES (%(key_id)s, %(public_key)s, aetheris_now())
ON CONFLICT DO NOTHING

-- name: signing_keys
SELECT key_id, public_key, first_seen FROM signing_keys ORDER BY first_seen, key_id

-- name: prune_candidates
-- Ended jobs whose last update is before :before (of :agent when given, of no agent in
-- :skip), oldest created first, except children whose parent has not ended (a scalar
-- subquery: one lookup of the parent by its key per candidate, never a scan of jobs);
-- a NULL :limit: all. Read along jobs_ended, which is by creation time (on updated_at, which
-- every step commit sets, it kept PostgreSQL's updates of running jobs from being
-- heap-only): a job ends after it is created, so created_at < :before bounds the range, and
-- updated_at < :before, checked on the row, keeps the meaning: ended before the cutoff.
SELECT id, tenant, agent, status, event_count AS events, head_hash AS head,
       updated_at AS ended_at
FROM jobs j
WHERE status IN ('succeeded', 'failed', 'cancelled', 'compensated')
  AND created_at < %(before)s AND updated_at < %(before)s
  AND (%(agent)s::text IS NULL OR agent = %(agent)s::text)
  AND agent <> ALL(%(skip)s::text[])
  AND (parent_id IS NULL OR coalesce((
      SELECT p.status IN ('succeeded', 'failed', 'cancelled', 'compensated')
      FROM jobs p WHERE p.id = j.parent_id), true))
ORDER BY created_at, id
LIMIT %(limit)s

-- name: prune_count
-- What deleting jobs :ids would remove from each table (a dry run).
SELECT
    (SELECT count(*) FROM events WHERE job_id = ANY(%(ids)s::text[])) AS events,
    (SELECT count(*) FROM effects WHERE job_id = ANY(%(ids)s::text[])) AS effects,
    (SELECT count(*) FROM signals WHERE job_id = ANY(%(ids)s::text[])) AS signals,
    (SELECT count(*) FROM blobs WHERE job_id = ANY(%(ids)s::text[])) AS blobs,
    (SELECT count(*) FROM keyed_signals WHERE job_id = ANY(%(ids)s::text[])) AS keyed_signals,
    (SELECT count(*) FROM correlations WHERE job_id = ANY(%(ids)s::text[])) AS correlations,
    (SELECT count(*) FROM webhook_deliveries WHERE job_id = ANY(%(ids)s::text[])) AS deliveries

-- name: prune_count_kv
-- Key ranges :lows[i] <= key < :highs[i] of :space: a range scan of the key's index each.
SELECT count(*) AS n
FROM unnest(%(lows)s::text[], %(highs)s::text[]) AS r(lo, hi)
JOIN kv ON kv.space = %(space)s AND kv.key >= r.lo AND kv.key < r.hi

-- name: prune_events
DELETE FROM events WHERE job_id = ANY(%(ids)s::text[])

-- name: prune_effects
DELETE FROM effects WHERE job_id = ANY(%(ids)s::text[])

-- name: prune_signals
DELETE FROM signals WHERE job_id = ANY(%(ids)s::text[])

-- name: prune_blobs
DELETE FROM blobs WHERE job_id = ANY(%(ids)s::text[])

-- name: prune_keyed_signals
DELETE FROM keyed_signals WHERE job_id = ANY(%(ids)s::text[])

-- name: prune_correlations
-- The keys an ended job held are free already; their rows go with it.
DELETE FROM correlations WHERE job_id = ANY(%(ids)s::text[])

-- name: prune_deliveries
DELETE FROM webhook_deliveries WHERE job_id = ANY(%(ids)s::text[])

-- name: prune_kv
DELETE FROM kv USING unnest(%(lows)s::text[], %(highs)s::text[]) AS r(lo, hi)
WHERE kv.space = %(space)s AND kv.key >= r.lo AND kv.key < r.hi

-- name: prune_jobs
DELETE FROM jobs WHERE id = ANY(%(ids)s::text[])

-- name: prune_tombstone
INSERT INTO pruned_jobs (job_id, tenant, agent, status, events, head, ended_at, pruned_at,
                         anchor_key, anchor_sig)
VALUES (%(job_id)s, %(tenant)s, %(agent)s, %(status)s, %(events)s, %(head)s, %(ended_at)s,
        aetheris_now(), %(anchor_key)s, %(anchor_sig)s)
ON CONFLICT (job_id) DO NOTHING

-- name: tombstones
SELECT job_id, tenant, agent, status, events, head, ended_at, pruned_at, anchor_key, anchor_sig
FROM pruned_jobs WHERE job_id = ANY(%(ids)s::text[])
