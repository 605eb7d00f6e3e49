-- The fresh schema at the latest version (tests check it equals the migrated one).
-- Times are Unix seconds (float8) from the database's clock, so workers on machines with
-- skewed clocks agree on lease expiry. Event bodies are bytea: the hash chain covers the exact
-- stored bytes (jsonb would re-order keys and break it). Job and ledger payloads are jsonb, so
-- operators can query them.
CREATE FUNCTION aetheris_now() RETURNS float8 LANGUAGE sql STABLE
AS $$ SELECT extract(epoch FROM now())::float8 $$;

CREATE TABLE jobs (
    id               text PRIMARY KEY,
    agent            text NOT NULL,
    input            jsonb NOT NULL,
    status           text NOT NULL,
    park_reason      text,
    park_detail      jsonb,
    result           jsonb,
    error            jsonb,
    idempotency_key  text,
    queue            text NOT NULL,
    priority         integer NOT NULL,
    lease_epoch      bigint NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at float8,
    run_at           float8 NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    event_count      bigint NOT NULL DEFAULT 0,
    head_hash        text NOT NULL,
    created_at       float8 NOT NULL,
    updated_at       float8 NOT NULL,
    wake_on          text,
    wake_at          float8,
    parent_id        text,
    control          text,
    deadline         float8,
    recoveries       integer NOT NULL DEFAULT 0,
    tenant           text NOT NULL DEFAULT 'default',
    control_by       text,
    code_version     text  -- the agent version that last wrote entries (NULL: none yet)
) WITH (fillfactor = 70);  -- room on each page for HOT updates (see migration 0014)

CREATE INDEX jobs_pending ON jobs (priority DESC, run_at, id) WHERE status = 'pending';
-- No index of jobs has a column that a step commit, a fence or a heartbeat changes
-- (updated_at, event_count, head_hash, lease_expires_at, code_version, recoveries): their
-- updates are heap-only (HOT), writing no index entry (see migration 0014).
CREATE INDEX jobs_running ON jobs (lease_owner) WHERE status = 'running';
CREATE INDEX jobs_by_status ON jobs (status, created_at);
CREATE INDEX jobs_by_created ON jobs (created_at);

CREATE TABLE events (
    job_id    text NOT NULL,
    seq       bigint NOT NULL,
    type      text NOT NULL,
    position  integer,
    body      bytea NOT NULL,
    prev_hash text NOT NULL,
    hash      text NOT NULL,
    anchor_key text,  -- the key that signed this event's anchor (the last event of a write)
    anchor_sig text,  -- base64 Ed25519 signature of the anchor statement (see aetheris.anchor)
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE effects (
    job_id          text NOT NULL,
    position        integer NOT NULL,
    tool            text NOT NULL,
    effect          text NOT NULL,
    args_hash       text NOT NULL,
    idempotency_key text NOT NULL,
    state           text NOT NULL,
    result          jsonb,
    error           jsonb,
    attempt         integer NOT NULL,
    created_at      float8 NOT NULL,
    updated_at      float8 NOT NULL,
    PRIMARY KEY (job_id, position)
);

CREATE INDEX effects_by_state ON effects (state);

CREATE INDEX jobs_due ON jobs (wake_at) WHERE status = 'parked' AND wake_at IS NOT NULL;
CREATE INDEX jobs_by_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;

-- Signals sent to a job, in arrival order; consumed_position is the journal position of the
-- durable operation that received it (NULL while it waits in the inbox).
CREATE TABLE signals (
    job_id            text NOT NULL,
    seq               bigint NOT NULL,
    name              text NOT NULL,
    signal_id         text NOT NULL,
    payload           jsonb NOT NULL,
    sender            text,
    created_at        float8 NOT NULL,
    consumed_position integer,
    PRIMARY KEY (job_id, seq),
    UNIQUE (job_id, signal_id)
);

CREATE INDEX signals_pending ON signals (job_id, name, seq) WHERE consumed_position IS NULL;

-- Agents workers serve, with the JSON schema of their input (NULL: any object).
CREATE TABLE agents (
    name         text PRIMARY KEY,
    last_seen    float8 NOT NULL,
    input_schema jsonb
);

-- Live workers: what each serves (agents, and queues as JSON lists; queues NULL: every queue),
-- where it runs, when it started and when it was last seen.
CREATE TABLE workers (
    id         text PRIMARY KEY,
    agents     jsonb NOT NULL,
    queues     jsonb,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at float8 NOT NULL,
    last_seen  float8 NOT NULL
);

-- Wake idle workers when there is work: a job created, handed back or resumed.
CREATE FUNCTION aetheris_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('aetheris_work', NEW.queue);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_work
AFTER INSERT OR UPDATE OF status ON jobs
FOR EACH ROW WHEN (NEW.status = 'pending')
EXECUTE FUNCTION aetheris_notify_work();

-- Large payloads of a job's journal (model message histories, images), content-addressed: an
-- event refers to a blob by the sha256 of its bytes, and a blob written twice is stored once.
-- Blobs are written in the fenced transaction of the event that first refers to them.
CREATE TABLE blobs (
    job_id text NOT NULL,
    hash   text NOT NULL,
    body   bytea NOT NULL,
    PRIMARY KEY (job_id, hash)
);

-- Small documents an integration keeps outside any job's journal (LangGraph checkpoints), by
-- space and key. Keys compare in code point order (the "C" collation on UTF-8), so a prefix is
-- a key range and integrations lay related entries out under one prefix.
CREATE TABLE kv (
    space text NOT NULL,
    key   text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);

-- Tenants: a key sees only its tenant's jobs; idempotency keys are scoped per tenant.
CREATE UNIQUE INDEX jobs_by_key ON jobs (tenant, idempotency_key);
CREATE INDEX jobs_by_tenant ON jobs (tenant, created_at);

-- API keys of the HTTP server: only a hash of each secret is kept (the secret is shown once).
CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    role        text NOT NULL,
    secret_hash text NOT NULL,
    name        text,
    created_at  float8 NOT NULL,
    revoked_at  float8
);

-- Keyed signals (incoming webhooks). A job that waits for signal `name` with a correlation
-- `key` holds (tenant, name, key) from its first such wait until it ends; a keyed signal goes
-- to the holder's inbox, or, while no job that has not ended holds its key, waits in the
-- mailbox (keyed_signals rows with no job_id) until one takes the key. A delivery and a job
-- taking the key both lock the key's correlations row first (a delivery makes it if need be).
CREATE TABLE correlations (
    tenant     text NOT NULL,
    name       text NOT NULL,
    key        text NOT NULL,
    job_id     text,
    updated_at float8 NOT NULL,
    PRIMARY KEY (tenant, name, key)
);

-- Every keyed signal that arrived, numbered per key in arrival order; the same signal_id for
-- the same key is one signal. job_id: the job whose inbox it went to (NULL: in the mailbox).
CREATE TABLE keyed_signals (
    tenant     text NOT NULL,
    name       text NOT NULL,
    key        text NOT NULL,
    signal_id  text NOT NULL,
    seq        bigint NOT NULL,
    payload    jsonb NOT NULL,
    sender     text,
    created_at float8 NOT NULL,
    job_id     text,
    PRIMARY KEY (tenant, name, key, signal_id)
);

CREATE INDEX keyed_mailbox ON keyed_signals (tenant, name, key, seq) WHERE job_id IS NULL;

-- Outgoing webhooks. A subscription (webhooks) asks that some events of its tenant's jobs be
-- POSTed to a URL, signed with its secret.
CREATE TABLE webhooks (
    id          text PRIMARY KEY,
    tenant      text NOT NULL,
    url         text NOT NULL,
    secret      text NOT NULL,
    events      text[] NOT NULL,
    created_at  float8 NOT NULL,
    disabled_at float8
);

CREATE INDEX webhooks_by_tenant ON webhooks (tenant) WHERE disabled_at IS NULL;

-- The outbox: one row per (notable event, matching subscription), written in the transaction
-- that appends the event. Deliverers claim due rows with SKIP LOCKED (next_at passed; claim
-- holds its token until next_at, the lease, runs out) and record each try in log.
CREATE TABLE webhook_deliveries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id   text NOT NULL,
    tenant       text NOT NULL,
    job_id       text NOT NULL,
    agent        text NOT NULL,
    job_status   text NOT NULL,
    event_id     text NOT NULL,
    event_type   text NOT NULL,
    payload      jsonb NOT NULL,
    created_at   float8 NOT NULL,
    state        text NOT NULL DEFAULT 'pending',
    attempts     integer NOT NULL DEFAULT 0,
    next_at      float8 NOT NULL,
    claim        text,
    last_status  integer,
    last_error   text,
    delivered_at float8,
    log          jsonb NOT NULL DEFAULT '[]'
);

CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (webhook_id, event_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_tenant ON webhook_deliveries (tenant, id);

-- The public keys that signed anchors, for information only: a verifier trusts only the keys
-- it is given from outside the database.
CREATE TABLE signing_keys (
    key_id     text PRIMARY KEY,
    public_key text NOT NULL,
    first_seen float8 NOT NULL
);

-- Retention: ended jobs by creation time (a job ends after it is created; see migration 0014);
-- a tombstone per job pruned (see migration 0013).
CREATE INDEX jobs_ended ON jobs (created_at, id)
WHERE status IN ('succeeded', 'failed', 'cancelled', 'compensated');

CREATE TABLE pruned_jobs (
    job_id     text PRIMARY KEY,
    tenant     text NOT NULL,
    agent      text NOT NULL,
    status     text NOT NULL,
    events     bigint NOT NULL,
    head       text NOT NULL,
    ended_at   float8 NOT NULL,
    pruned_at  float8 NOT NULL,
    anchor_key text,
    anchor_sig text
);

CREATE INDEX keyed_signals_by_job ON keyed_signals (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX correlations_by_job ON correlations (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
