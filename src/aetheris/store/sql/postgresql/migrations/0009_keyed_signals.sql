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
