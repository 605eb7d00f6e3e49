-- The fresh schema at the latest version (tests check it equals the migrated one).
CREATE TABLE jobs (
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
    tenant           TEXT NOT NULL DEFAULT 'default',
    control_by       TEXT,
    code_version     TEXT  -- the agent version that last wrote entries (NULL: none yet)
);

CREATE INDEX jobs_pending ON jobs (priority DESC, run_at) WHERE status = 'pending';
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

-- body holds the exact canonical JSON bytes that hash covers.
CREATE TABLE events (
    job_id    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    type      TEXT NOT NULL,
    position  INTEGER,
    body      BLOB NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL,
    anchor_key TEXT,  -- the key that signed this event's anchor (the last event of a write)
    anchor_sig TEXT,  -- base64 Ed25519 signature of the anchor statement (see aetheris.anchor)
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE effects (
    job_id          TEXT NOT NULL,
    position        INTEGER NOT NULL,
    tool            TEXT NOT NULL,
    effect          TEXT NOT NULL,
    args_hash       TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    state           TEXT NOT NULL,
    result          BLOB,
    error           BLOB,
    attempt         INTEGER NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (job_id, position)
) WITHOUT ROWID;

CREATE INDEX effects_by_state ON effects (state);

-- Agents workers serve, with the JSON schema of their input (NULL: any object).
CREATE TABLE agents (
    name         TEXT PRIMARY KEY,
    last_seen    REAL NOT NULL,
    input_schema BLOB
);

CREATE INDEX jobs_due ON jobs (wake_at) WHERE status = 'parked' AND wake_at IS NOT NULL;
CREATE INDEX jobs_by_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;

-- Signals sent to a job, in arrival order; consumed_position is the journal position of the
-- durable operation that received it (NULL while it waits in the inbox).
CREATE TABLE signals (
    job_id            TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    name              TEXT NOT NULL,
    signal_id         TEXT NOT NULL,
    payload           BLOB NOT NULL,
    sender            TEXT,
    created_at        REAL NOT NULL,
    consumed_position INTEGER,
    PRIMARY KEY (job_id, seq),
    UNIQUE (job_id, signal_id)
) WITHOUT ROWID;

CREATE INDEX signals_pending ON signals (job_id, name, seq) WHERE consumed_position IS NULL;

-- Live workers: what each serves (agents, and queues as JSON lists; queues NULL: every queue),
-- where it runs, when it started and when it was last seen.
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    agents     BLOB NOT NULL,
    queues     BLOB,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen  REAL NOT NULL
);

-- Large payloads of a job's journal (model message histories, images), content-addressed: an
-- event refers to a blob by the sha256 of its bytes, and a blob written twice is stored once.
-- Blobs are written in the fenced transaction of the event that first refers to them.
CREATE TABLE blobs (
    job_id TEXT NOT NULL,
    hash   TEXT NOT NULL,
    body   BLOB NOT NULL,
    PRIMARY KEY (job_id, hash)
) WITHOUT ROWID;

-- Small documents an integration keeps outside any job's journal (LangGraph checkpoints), by
-- space and key. Keys compare in code point order (SQLite's BINARY collation on UTF-8), so a
-- prefix is a key range and integrations lay related entries out under one prefix.
CREATE TABLE kv (
    space TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (space, key)
) WITHOUT ROWID;

-- Tenants: a key sees only its tenant's jobs; idempotency keys are scoped per tenant.
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

-- Keyed signals (incoming webhooks). A job that waits for signal `name` with a correlation
-- `key` holds (tenant, name, key) from its first such wait until it ends; a keyed signal goes
-- to the holder's inbox, or, while no job that has not ended holds its key, waits in the
-- mailbox (keyed_signals rows with no job_id) until one takes the key.
CREATE TABLE correlations (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    job_id     TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, name, key)
) WITHOUT ROWID;

-- Every keyed signal that arrived, numbered per key in arrival order; the same signal_id for
-- the same key is one signal. job_id: the job whose inbox it went to (NULL: in the mailbox).
CREATE TABLE keyed_signals (
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    signal_id  TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    payload    BLOB NOT NULL,
    sender     TEXT,
    created_at REAL NOT NULL,
    job_id     TEXT,
    PRIMARY KEY (tenant, name, key, signal_id)
) WITHOUT ROWID;

CREATE INDEX keyed_mailbox ON keyed_signals (tenant, name, key, seq) WHERE job_id IS NULL;

-- Outgoing webhooks. A subscription (webhooks) asks that some events of its tenant's jobs be
-- POSTed to a URL, signed with its secret; events is a JSON list of event types.
CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    disabled_at REAL
);

CREATE INDEX webhooks_by_tenant ON webhooks (tenant) WHERE disabled_at IS NULL;

-- The outbox: one row per (notable event, matching subscription), written in the transaction
-- that appends the event. A deliverer claims due rows (next_at passed; claim holds its token
-- until next_at, the lease, runs out) and records each try in log (a JSON list).
CREATE TABLE webhook_deliveries (
    id           INTEGER PRIMARY KEY,
    webhook_id   TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    job_id       TEXT NOT NULL,
    agent        TEXT NOT NULL,
    job_status   TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    payload      BLOB NOT NULL,
    created_at   REAL NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    claim        TEXT,
    last_status  INTEGER,
    last_error   TEXT,
    delivered_at REAL,
    log          TEXT NOT NULL DEFAULT '[]'
);

CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (webhook_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (tenant, id);

-- The public keys that signed anchors, for information only: a verifier trusts only the keys
-- it is given from outside the database.
CREATE TABLE signing_keys (
    key_id     TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    first_seen REAL NOT NULL
);

-- Retention: ended jobs by creation time (a job ends after it is created; see migration 0014);
-- a tombstone per job pruned (see migration 0013).
CREATE INDEX jobs_ended ON jobs (created_at, id)
WHERE status IN ('succeeded', 'failed', 'cancelled', 'compensated');

CREATE TABLE pruned_jobs (
    job_id     TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    agent      TEXT NOT NULL,
    status     TEXT NOT NULL,
    events     INTEGER NOT NULL,
    head       TEXT NOT NULL,
    ended_at   REAL NOT NULL,
    pruned_at  REAL NOT NULL,
    anchor_key TEXT,
    anchor_sig TEXT
);

CREATE INDEX keyed_signals_by_job ON keyed_signals (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX correlations_by_job ON correlations (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
