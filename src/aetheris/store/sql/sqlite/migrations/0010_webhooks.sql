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
