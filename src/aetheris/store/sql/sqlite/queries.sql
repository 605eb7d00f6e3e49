-- Named queries of the SQLite store. Each block starts with "-- name: <name>".
-- The PostgreSQL store has a query of the same name for each, but for the claim candidates
-- (tests/store/test_queries.py lists the names only one dialect has, and why).
-- Times are the store's clock, passed as :now.

-- name: schema_table
SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'aetheris_schema'

-- name: create_schema_table
CREATE TABLE IF NOT EXISTS aetheris_schema (version INTEGER NOT NULL)

-- name: insert_schema_version
INSERT INTO aetheris_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM aetheris_schema)

-- name: schema_version
SELECT version FROM aetheris_schema

-- name: set_schema_version
UPDATE aetheris_schema SET version = :version

-- name: insert_job
INSERT INTO jobs (id, agent, input, status, idempotency_key, queue, priority, run_at,
                  head_hash, created_at, updated_at, parent_id, deadline, tenant)
VALUES (:id, :agent, :input, 'pending', :idempotency_key, :queue, :priority,
        coalesce(:run_at, :now), :head_hash, :now, :now, :parent_id, :deadline, :tenant)
ON CONFLICT DO NOTHING
RETURNING id

-- name: get_job
SELECT * FROM jobs WHERE id = :id

-- name: job_by_key
SELECT * FROM jobs WHERE tenant = :tenant AND idempotency_key = :key

-- name: list_jobs
-- A later page starts at its cursor: the bound on created_at alone is what the index can seek
-- to (the OR below it cannot), so a page costs the same however deep it is.
SELECT * FROM jobs
WHERE (:status IS NULL OR status = :status)
  AND (:agent IS NULL OR agent = :agent)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND (:tenant IS NULL OR tenant = :tenant)
  AND (:park_reason IS NULL OR park_reason = :park_reason)
  AND created_at <= coalesce(:after_at, 1e999)
  AND (:after_at IS NULL OR created_at < :after_at
       OR (created_at = :after_at AND id < :after_id))
  AND (:idempotency_key IS NULL OR idempotency_key = :idempotency_key)
ORDER BY created_at DESC, id DESC
LIMIT :limit

-- name: find_jobs
SELECT id FROM jobs
WHERE substr(id, 1, length(:prefix)) = :prefix AND (:tenant IS NULL OR tenant = :tenant)
ORDER BY id LIMIT :limit

-- name: count_jobs
-- Of every tenant's jobs, or of one (:tenant), as are the two below.
SELECT tenant, status, count(*) AS n FROM jobs
WHERE :tenant IS NULL OR tenant = :tenant
GROUP BY tenant, status

-- name: oldest_pending
SELECT min(created_at) AS at FROM jobs
WHERE status = 'pending' AND (:tenant IS NULL OR tenant = :tenant)

-- name: count_effects
SELECT e.state, count(*) AS n FROM effects e
WHERE :tenant IS NULL OR EXISTS (
    SELECT 1 FROM jobs j WHERE j.id = e.job_id AND j.tenant = :tenant)
GROUP BY e.state

-- name: expired_candidate
-- The claim candidates, in the order a claim looks: no SKIP LOCKED here, and none needed (one
-- writer at a time); a claim reads a candidate, then takes it with `claim`. With :versions
-- (agent -> version, JSON), a job another version of its agent wrote is passed over; :skip
-- lists job ids this worker passes over (both NULL: none). Plain columns of the row only.
SELECT id, agent, lease_owner, lease_epoch, attempts, event_count, head_hash FROM jobs
WHERE status = 'running' AND lease_expires_at < :now
  AND agent IN (SELECT value FROM json_each(:agents))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND (:versions IS NULL OR code_version IS NULL
       OR code_version = (SELECT value FROM json_each(:versions) WHERE key = jobs.agent))
  AND (:skip IS NULL OR id NOT IN (SELECT value FROM json_each(:skip)))
ORDER BY lease_expires_at
LIMIT 1

-- name: pending_candidate
-- INDEXED BY: statistics gathered while no job was pending (ANALYZE, PRAGMA optimize) make
-- `status = 'pending'` look like every row, and SQLite then scanned the table (52 ms for
-- 100,000 parked jobs); the partial index of pending jobs, read in priority order, is right
-- whatever the statistics say.
SELECT id, agent, NULL AS lease_owner, lease_epoch, attempts, event_count, head_hash
FROM jobs INDEXED BY jobs_pending
WHERE status = 'pending' AND run_at <= :now
  AND agent IN (SELECT value FROM json_each(:agents))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND (:versions IS NULL OR code_version IS NULL
       OR code_version = (SELECT value FROM json_each(:versions) WHERE key = jobs.agent))
  AND (:skip IS NULL OR id NOT IN (SELECT value FROM json_each(:skip)))
ORDER BY priority DESC, run_at, id
LIMIT 1

-- name: due_candidate
SELECT id, agent, NULL AS lease_owner, lease_epoch, attempts, event_count, head_hash FROM jobs
WHERE status = 'parked' AND wake_at <= :now
  AND agent IN (SELECT value FROM json_each(:agents))
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
  AND (:versions IS NULL OR code_version IS NULL
       OR code_version = (SELECT value FROM json_each(:versions) WHERE key = jobs.agent))
  AND (:skip IS NULL OR id NOT IN (SELECT value FROM json_each(:skip)))
ORDER BY wake_at
LIMIT 1

-- name: claim
-- The claim's own event is sealed before this runs, so the head moves here too.
UPDATE jobs
SET status = 'running', lease_epoch = :epoch, lease_owner = :owner,
    lease_expires_at = :expires, attempts = :attempts, event_count = :count, head_hash = :hash,
    recoveries = recoveries + :recovered,
    park_reason = NULL, park_detail = NULL, wake_on = NULL, wake_at = NULL, updated_at = :now
WHERE id = :id AND lease_epoch = :epoch - 1
RETURNING *

-- name: created_event
-- A job's first event (job_created), read with its first claim for the budget it names.
SELECT body FROM events WHERE job_id = :id AND seq = 0

-- name: heartbeat
UPDATE jobs SET lease_expires_at = :expires
WHERE id = :id AND lease_epoch = :epoch AND status = 'running'
RETURNING control

-- name: fence
UPDATE jobs SET updated_at = :now
WHERE id = :id AND lease_epoch = :epoch AND status = 'running'
  AND (:expect IS NULL OR event_count = :expect)
RETURNING event_count, head_hash

-- name: commit
-- Fence on the lease epoch and the journal head, and move the head. A status change follows
-- with `set_status`, ledger rows and events after it, in the same transaction. (One statement
-- that also sets the status, as PostgreSQL's does, rewrites the indexed status columns on
-- every step here: three times the cost of this one.) The store reads the rows changed: on
-- the hot path that is cheaper than a RETURNING row.
UPDATE jobs SET event_count = :count, head_hash = :hash, updated_at = :now,
    code_version = coalesce(:code, code_version)
WHERE id = :id AND lease_epoch = :epoch AND status = 'running' AND event_count = :expect

-- name: set_code_version
-- The agent version that wrote the entries of a commit (a commit that read the head first).
UPDATE jobs SET code_version = :code WHERE id = :id

-- name: bump_epoch
UPDATE jobs SET lease_epoch = lease_epoch + 1, lease_owner = NULL, updated_at = :now
WHERE id = :id
RETURNING event_count, head_hash

-- name: insert_events
-- One row; the store runs it once per event (executemany).
INSERT INTO events (job_id, seq, type, position, body, prev_hash, hash, anchor_key, anchor_sig)
VALUES (:job_id, :seq, :type, :position, :body, :prev_hash, :hash, :anchor_key, :anchor_sig)

-- name: insert_blobs
-- One row; the store runs it once per blob.
INSERT INTO blobs (job_id, hash, body) VALUES (:job_id, :hash, :body) ON CONFLICT DO NOTHING

-- name: blobs
SELECT hash, body FROM blobs
WHERE job_id = :job_id AND (:hashes IS NULL OR hash IN (SELECT value FROM json_each(:hashes)))

-- name: set_head
UPDATE jobs SET event_count = :count, head_hash = :hash WHERE id = :id

-- name: set_status
UPDATE jobs
SET status = :status, park_reason = :park_reason, park_detail = :park_detail,
    result = :result, error = :error, run_at = coalesce(:run_at, :now), wake_on = :wake_on,
    wake_at = :wake_at,
    control = CASE WHEN :status IN ('succeeded', 'failed', 'cancelled', 'compensated')
                   THEN NULL ELSE control END,
    control_by = CASE WHEN :status IN ('succeeded', 'failed', 'cancelled', 'compensated')
                       THEN NULL ELSE control_by END,
    lease_owner = CASE WHEN :status = 'running' THEN lease_owner ELSE NULL END,
    lease_expires_at = CASE WHEN :status = 'running' THEN lease_expires_at ELSE NULL END,
    recoveries = recoveries + :recovery,
    updated_at = :now
WHERE id = :id

-- name: events
SELECT seq, body, prev_hash, hash, anchor_key, anchor_sig FROM events
WHERE job_id = :job_id AND seq > :after
ORDER BY seq LIMIT :limit

-- name: journal
-- A run's read of the journal at its claim: `events` without the hashes.
SELECT seq, type, position, body FROM events WHERE job_id = :job_id ORDER BY seq

-- name: get_effect
SELECT state FROM effects WHERE job_id = :job_id AND position = :position

-- name: insert_effect
INSERT INTO effects (job_id, position, tool, effect, args_hash, idempotency_key, state,
                     result, error, attempt, created_at, updated_at)
VALUES (:job_id, :position, :tool, :effect, :args_hash, :idempotency_key, :state,
        :result, :error, :attempt, :now, :now)
ON CONFLICT DO NOTHING
RETURNING 1

-- name: update_effect
UPDATE effects
SET state = :state, result = :result, error = :error, attempt = :attempt, updated_at = :now
WHERE job_id = :job_id AND position = :position AND state = :expect
RETURNING 1

-- name: list_effects
SELECT * FROM effects
WHERE (:job_id IS NULL OR job_id = :job_id)
  AND (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
  AND (:tenant IS NULL OR job_id IN (SELECT id FROM jobs WHERE tenant = :tenant))
ORDER BY job_id, position

-- name: upsert_agents
-- One row; the store runs it once per name (executemany). :input_schema is JSON text or NULL.
INSERT INTO agents (name, last_seen, input_schema) VALUES (:name, :now, :input_schema)
ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen,
                                 input_schema = excluded.input_schema

-- name: agent_input_schema
SELECT input_schema FROM agents WHERE name = :name

-- name: list_agents
SELECT name FROM agents ORDER BY name

-- name: register_worker
INSERT INTO workers (id, agents, queues, host, pid, started_at, last_seen)
VALUES (:id, :agents, :queues, :host, :pid, :now, :now)
ON CONFLICT (id) DO UPDATE SET agents = excluded.agents, queues = excluded.queues,
    host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
    last_seen = excluded.last_seen
RETURNING started_at

-- name: touch_worker
-- A row removed meanwhile (forgotten while its process was stopped) is written again.
INSERT INTO workers (id, agents, queues, host, pid, started_at, last_seen)
VALUES (:id, :agents, :queues, :host, :pid, :started_at, :now)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen

-- name: forget_workers
DELETE FROM workers WHERE last_seen < :now - :forget

-- name: delete_worker
DELETE FROM workers WHERE id = :id

-- name: list_workers
SELECT *, last_seen >= :now - :window AS alive FROM workers ORDER BY started_at, id

-- name: running_owners
SELECT DISTINCT lease_owner FROM jobs WHERE status = 'running' AND lease_owner IS NOT NULL

-- name: expire_owners
UPDATE jobs SET lease_expires_at = :now
WHERE status = 'running' AND lease_owner IN (SELECT value FROM json_each(:owners))

-- name: wake
UPDATE jobs SET status = 'pending', run_at = :now, wake_on = NULL, wake_at = NULL,
    updated_at = :now
WHERE id = :id AND status = 'parked' AND wake_on = :wake_on

-- name: wake_if_ready
-- Right after a job parks: if what it waits for is already there, or a cancel was requested
-- while it ran, it must not sleep on it. What it waits for is looked up by key (the signal's
-- name, the child's id, cut out of wake_on), never by an expression of every row's columns:
-- index probes, however many jobs and signals the tables hold.
UPDATE jobs SET status = 'pending', run_at = :now, wake_on = NULL, wake_at = NULL
WHERE id = :id AND status = 'parked' AND (
    control = 'cancel'
    OR EXISTS (SELECT 1 FROM signals s WHERE s.job_id = jobs.id AND s.consumed_position IS NULL
               AND substr(jobs.wake_on, 1, 7) = 'signal:' AND s.name = substr(jobs.wake_on, 8))
    OR EXISTS (SELECT 1 FROM jobs c WHERE substr(jobs.wake_on, 1, 4) = 'job:'
               AND c.id = substr(jobs.wake_on, 5)
               AND c.status IN ('succeeded', 'failed', 'cancelled', 'compensated')))

-- name: consume_signal
UPDATE signals SET consumed_position = :position
WHERE job_id = :job_id AND seq = :seq AND consumed_position IS NULL
RETURNING 1

-- name: signal_by_id
SELECT * FROM signals WHERE job_id = :job_id AND signal_id = :signal_id

-- name: insert_signal
INSERT INTO signals (job_id, seq, name, signal_id, payload, sender, created_at)
VALUES (:job_id, (SELECT coalesce(max(seq), 0) + 1 FROM signals WHERE job_id = :job_id),
        :name, :signal_id, :payload, :sender, :now)
RETURNING *

-- name: signals
SELECT * FROM signals
WHERE job_id = :job_id AND (:pending = 0 OR consumed_position IS NULL)
ORDER BY seq

-- name: set_control
UPDATE jobs SET control = :control, control_by = :by, updated_at = :now WHERE id = :id

-- name: children
SELECT id FROM jobs WHERE parent_id = :id
  AND status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated')

-- name: next_wake
SELECT min(wake_at) FROM jobs WHERE status = 'parked' AND wake_at IS NOT NULL

-- name: kv_put
INSERT INTO kv (space, key, value) VALUES (:space, :key, :value)
ON CONFLICT (space, key) DO UPDATE SET value = excluded.value

-- name: kv_put_new
INSERT INTO kv (space, key, value) VALUES (:space, :key, :value) ON CONFLICT DO NOTHING

-- name: kv_get
SELECT key, value FROM kv
WHERE space = :space AND key IN (SELECT value FROM json_each(:keys))

-- name: kv_scan
-- A key range in order; :limit -1 means no limit.
SELECT key, value FROM kv WHERE space = :space AND key >= :low AND key < :high
ORDER BY key LIMIT :limit

-- name: kv_scan_descending
SELECT key, value FROM kv WHERE space = :space AND key >= :low AND key < :high
ORDER BY key DESC LIMIT :limit

-- name: kv_delete
DELETE FROM kv WHERE space = :space AND key IN (SELECT value FROM json_each(:keys))

-- name: kv_delete_range
DELETE FROM kv WHERE space = :space AND key >= :low AND key < :high

-- name: insert_api_key
INSERT INTO api_keys (id, tenant, role, secret_hash, name, created_at)
VALUES (:id, :tenant, :role, :secret_hash, :name, :created_at)
ON CONFLICT DO NOTHING
RETURNING id

-- name: get_api_key
SELECT * FROM api_keys WHERE id = :id

-- name: list_api_keys
SELECT * FROM api_keys ORDER BY created_at, id

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, :now) WHERE id = :id
RETURNING *

-- Keyed signals (incoming webhooks): see migration 0009.

-- name: hold_key
-- The job takes (name, key) in its tenant, unless a job that has not ended holds it.
INSERT INTO correlations (tenant, name, key, job_id, updated_at)
SELECT tenant, :name, :key, id, :now FROM jobs WHERE id = :job_id
ON CONFLICT (tenant, name, key) DO UPDATE
SET job_id = excluded.job_id, updated_at = excluded.updated_at
WHERE correlations.job_id IS NULL OR correlations.job_id = excluded.job_id
   OR NOT EXISTS (SELECT 1 FROM jobs h WHERE h.id = correlations.job_id
                  AND h.status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated'))
RETURNING job_id

-- name: key_holder_of
-- Who holds the key a job could not take (hold_key's parameters).
SELECT job_id FROM correlations
WHERE tenant = (SELECT tenant FROM jobs WHERE id = :job_id) AND name = :name AND key = :key

-- name: collect_mailbox
-- The key's signals in the mailbox go to the job's inbox, in arrival order.
INSERT INTO signals (job_id, seq, name, signal_id, payload, sender, created_at)
SELECT :job_id,
       (SELECT coalesce(max(seq), 0) FROM signals WHERE job_id = :job_id)
           + row_number() OVER (ORDER BY k.seq),
       :inbox, :inbox || ':' || k.signal_id, k.payload, k.sender, k.created_at
FROM keyed_signals k
WHERE k.tenant = (SELECT tenant FROM jobs WHERE id = :job_id) AND k.name = :name
  AND k.key = :key AND k.job_id IS NULL

-- name: mark_collected
UPDATE keyed_signals SET job_id = :job_id
WHERE tenant = (SELECT tenant FROM jobs WHERE id = :job_id) AND name = :name AND key = :key
  AND job_id IS NULL

-- name: key_holder
SELECT c.job_id FROM correlations c JOIN jobs j ON j.id = c.job_id
WHERE c.tenant = :tenant AND c.name = :name AND c.key = :key
  AND j.status NOT IN ('succeeded', 'failed', 'cancelled', 'compensated')

-- name: lock_key
-- A delivery's first statement: the key's row (made if need be), and who holds it.
INSERT INTO correlations (tenant, name, key, job_id, updated_at)
VALUES (:tenant, :name, :key, NULL, :now)
ON CONFLICT (tenant, name, key) DO UPDATE SET updated_at = correlations.updated_at
RETURNING job_id

-- name: keyed_signal_by_id
SELECT job_id FROM keyed_signals
WHERE tenant = :tenant AND name = :name AND key = :key AND signal_id = :signal_id

-- name: insert_keyed_signal
INSERT INTO keyed_signals (tenant, name, key, signal_id, seq, payload, sender, created_at,
                           job_id)
VALUES (:tenant, :name, :key, :signal_id,
        (SELECT coalesce(max(seq), 0) + 1 FROM keyed_signals
         WHERE tenant = :tenant AND name = :name AND key = :key),
        :payload, :sender, :now, :job_id)

-- name: insert_webhook
INSERT INTO webhooks (id, tenant, url, secret, events, created_at)
VALUES (:id, :tenant, :url, :secret, :events, :created_at)
ON CONFLICT DO NOTHING
RETURNING id

-- name: get_webhook
SELECT * FROM webhooks WHERE id = :id

-- name: list_webhooks
SELECT * FROM webhooks
WHERE (:tenant IS NULL OR tenant = :tenant) AND (:disabled OR disabled_at IS NULL)
ORDER BY created_at, id

-- name: disable_webhook
UPDATE webhooks SET disabled_at = coalesce(disabled_at, :now) WHERE id = :id
RETURNING *

-- name: drop_deliveries
-- A deleted subscription's deliveries that were still to be sent.
UPDATE webhook_deliveries SET state = 'dead', last_error = :error, claim = NULL
WHERE webhook_id = :id AND state = 'pending'

-- name: insert_deliveries
-- The outbox: one delivery per active subscription of the job's tenant to this event's type,
-- in the transaction that inserts the event (after the job's row is written).
INSERT INTO webhook_deliveries (webhook_id, tenant, job_id, agent, job_status, event_id,
                                event_type, payload, created_at, next_at)
SELECT w.id, j.tenant, j.id, j.agent, j.status, :event_id, :event_type, :payload, :now, :now
FROM jobs j JOIN webhooks w ON w.tenant = j.tenant AND w.disabled_at IS NULL
WHERE j.id = :job_id
  AND EXISTS (SELECT 1 FROM json_each(w.events) AS e WHERE e.value = :event_type)
ON CONFLICT DO NOTHING

-- name: due_delivery
-- Read outside any transaction first: an idle deliverer must not take the write lock.
SELECT 1 FROM webhook_deliveries WHERE state = 'pending' AND next_at <= :now LIMIT 1

-- name: claim_deliveries
UPDATE webhook_deliveries SET next_at = :now + :lease, claim = :token
WHERE id IN (
    SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.state = 'pending' AND d.next_at <= :now AND w.disabled_at IS NULL
    ORDER BY d.next_at, d.id
    LIMIT :limit)

-- name: claimed_deliveries
SELECT d.*, w.url, w.secret FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
WHERE d.claim = :token AND d.state = 'pending'
ORDER BY d.id

-- name: record_attempt
UPDATE webhook_deliveries
SET state = :state,
    attempts = attempts + 1,
    next_at = CASE WHEN :retry_in IS NULL THEN next_at ELSE :now + :retry_in END,
    claim = NULL,
    last_status = :status,
    last_error = :error,
    delivered_at = CASE WHEN :state = 'delivered' THEN :now END,
    log = json_insert(log, '$[#]', json_object('at', :now, 'status', :status, 'error', :error,
                                               'duration', :duration, 'retry_in', :retry_in))
WHERE id = :id AND claim = :token AND state = 'pending'
RETURNING *

-- name: list_deliveries
SELECT * FROM webhook_deliveries
WHERE (:tenant IS NULL OR tenant = :tenant)
  AND (:webhook_id IS NULL OR webhook_id = :webhook_id)
  AND (:state IS NULL OR state = :state)
ORDER BY id DESC
LIMIT :limit

-- name: record_signing_key
INSERT INTO signing_keys (key_id, public_key, first_seen) VALUES (:key_id, :public_key, :now)
ON CONFLICT DO NOTHING

-- name: signing_keys
SELECT key_id, public_key, first_seen FROM signing_keys ORDER BY first_seen, key_id

-- name: prune_candidates
-- Ended jobs whose last update is before :before (of :agent when given, of no agent in
-- :skip), oldest created first, except children whose parent has not ended (a scalar
-- subquery: one lookup of the parent by its key per candidate, never a scan of jobs);
-- a :limit of -1: all. Read along jobs_ended, which is by creation time (on updated_at, which
-- every step commit sets, it kept PostgreSQL's updates of running jobs from being
-- heap-only): a job ends after it is created, so created_at < :before bounds the range, and
-- updated_at < :before, checked on the row, keeps the meaning: ended before the cutoff.
SELECT id, tenant, agent, status, event_count AS events, head_hash AS head,
       updated_at AS ended_at
FROM jobs j
WHERE status IN ('succeeded', 'failed', 'cancelled', 'compensated')
  AND created_at < :before AND updated_at < :before
  AND (:agent IS NULL OR agent = :agent)
  AND agent NOT IN (SELECT value FROM json_each(:skip))
  AND (parent_id IS NULL OR coalesce((
      SELECT p.status IN ('succeeded', 'failed', 'cancelled', 'compensated')
      FROM jobs p WHERE p.id = j.parent_id), true))
ORDER BY created_at, id
LIMIT :limit

-- name: prune_count
-- What deleting jobs :ids would remove from each table (a dry run).
SELECT
    (SELECT count(*) FROM events WHERE job_id IN (SELECT value FROM json_each(:ids))) AS events,
    (SELECT count(*) FROM effects WHERE job_id IN (SELECT value FROM json_each(:ids))) AS effects,
    (SELECT count(*) FROM signals WHERE job_id IN (SELECT value FROM json_each(:ids))) AS signals,
    (SELECT count(*) FROM blobs WHERE job_id IN (SELECT value FROM json_each(:ids))) AS blobs,
    (SELECT count(*) FROM keyed_signals WHERE job_id IN (SELECT value FROM json_each(:ids))) AS keyed_signals,
    (SELECT count(*) FROM correlations WHERE job_id IN (SELECT value FROM json_each(:ids))) AS correlations,
    (SELECT count(*) FROM webhook_deliveries WHERE job_id IN (SELECT value FROM json_each(:ids))) AS deliveries

-- name: prune_count_kv
SELECT count(*) AS n FROM kv WHERE space = :space AND key >= :low AND key < :high

-- name: prune_events
DELETE FROM events WHERE job_id IN (SELECT value FROM json_each(:ids))

-- name: prune_effects
DELETE FROM effects WHERE job_id IN (SELECT value FROM json_each(:ids))

-- name: prune_signals
DELETE FROM signals WHERE job_id IN (SELECT value FROM json_each(:ids))

-- name: prune_blobs
DELETE FROM blobs WHERE job_id IN (SELECT value FROM json_each(:ids))

-- name: prune_keyed_signals
DELETE FROM keyed_signals WHERE job_id IN (SELECT value FROM json_each(:ids))

-- name: prune_correlations
-- The keys an ended job held are free already; their rows go with it.
DELETE FROM correlations WHERE job_id IN (SELECT value FROM json_each(:ids))

-- name: prune_deliveries
DELETE FROM webhook_deliveries WHERE job_id IN (SELECT value FROM json_each(:ids))

-- name: prune_kv
DELETE FROM kv WHERE space = :space AND key >= :low AND key < :high

-- name: prune_jobs
DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(:ids))

-- name: prune_tombstone
INSERT INTO pruned_jobs (job_id, tenant, agent, status, events, head, ended_at, pruned_at,
                         anchor_key, anchor_sig)
VALUES (:job_id, :tenant, :agent, :status, :events, :head, :ended_at,
        :now, :anchor_key, :anchor_sig)
ON CONFLICT (job_id) DO NOTHING

-- name: tombstones
SELECT job_id, tenant, agent, status, events, head, ended_at, pruned_at, anchor_key, anchor_sig
FROM pruned_jobs WHERE job_id IN (SELECT value FROM json_each(:ids))
