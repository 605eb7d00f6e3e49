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
