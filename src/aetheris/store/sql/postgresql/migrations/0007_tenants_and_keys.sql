-- Tenants and API keys. Every job belongs to a tenant (jobs made before this migration, and
-- jobs started without one, belong to "default"), and idempotency keys are scoped per tenant:
-- the column's own UNIQUE becomes a unique index on (tenant, idempotency_key).
ALTER TABLE jobs ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE jobs DROP CONSTRAINT jobs_idempotency_key_key;
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
