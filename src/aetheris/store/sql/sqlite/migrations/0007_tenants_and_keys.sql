-- Tenants and API keys. Every job belongs to a tenant (jobs made before this migration, and
-- jobs started without one, belong to "default"), and idempotency keys are scoped per tenant:
-- the column's own UNIQUE becomes a unique index on (tenant, idempotency_key). SQLite cannot
-- drop a column constraint, so the table is rebuilt with the same columns plus tenant.
CREATE TABLE jobs_rebuilt (
    id               TEXT PRIMARY KEY,
    agent            TEXT NOT NULL,
    input            BLOB NOT NULL,
    status           TEXT NOT NULL,
    park_reason      TEXT,
    park_detail      BLOB,
    result           BLOB,
    error            BLOB,
    idempotency_key  TEXT,
    queue            TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at REAL,
    run_at           REAL NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    event_count      INTEGER NOT NULL DEFAULT 0,
    head_hash        TEXT NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    wake_on          TEXT,
    wake_at          REAL,
    parent_id        TEXT,
    control          TEXT,
    deadline         REAL,
    recoveries       INTEGER NOT NULL DEFAULT 0,
    tenant           TEXT NOT NULL DEFAULT 'default'
);

INSERT INTO jobs_rebuilt (id, agent, input, status, park_reason, park_detail, result, error,
    idempotency_key, queue, priority, lease_epoch, lease_owner, lease_expires_at, run_at,
    attempts, event_count, head_hash, created_at, updated_at, wake_on, wake_at, parent_id,
    control, deadline, recoveries, tenant)
SELECT id, agent, input, status, park_reason, park_detail, result, error,
    idempotency_key, queue, priority, lease_epoch, lease_owner, lease_expires_at, run_at,
    attempts, event_count, head_hash, created_at, updated_at, wake_on, wake_at, parent_id,
    control, deadline, recoveries, 'default'
FROM jobs;

DROP TABLE jobs;
ALTER TABLE jobs_rebuilt RENAME TO jobs;

CREATE INDEX jobs_pending ON jobs (priority DESC, run_at) WHERE status = 'pending';
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);
CREATE INDEX jobs_due ON jobs (wake_at) WHERE status = 'parked' AND wake_at IS NOT NULL;
CREATE INDEX jobs_by_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE UNIQUE INDEX jobs_by_key ON jobs (tenant, idempotency_key);
CREATE INDEX jobs_by_tenant ON jobs (tenant, created_at);

-- API keys of the HTTP server: only a hash of each secret is kept (the secret is shown once).
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    name        TEXT,
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
