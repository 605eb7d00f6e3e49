-- Human in the loop and control: what a parked job waits for and until when, parent jobs,
-- requested control actions (cancel, pause), job deadlines, crash recoveries, and the inbox.
ALTER TABLE jobs ADD COLUMN wake_on TEXT;
ALTER TABLE jobs ADD COLUMN wake_at REAL;
ALTER TABLE jobs ADD COLUMN parent_id TEXT;
ALTER TABLE jobs ADD COLUMN control TEXT;
ALTER TABLE jobs ADD COLUMN deadline REAL;
ALTER TABLE jobs ADD COLUMN recoveries INTEGER NOT NULL DEFAULT 0;

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
