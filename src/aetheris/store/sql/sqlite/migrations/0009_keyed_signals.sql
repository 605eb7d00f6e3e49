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
