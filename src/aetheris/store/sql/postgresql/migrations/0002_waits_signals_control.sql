-- Human in the loop and control: what a parked job waits for and until when, parent jobs,
-- requested control actions (cancel, pause), job deadlines, crash recoveries, and the inbox.
ALTER TABLE jobs ADD COLUMN wake_on text;
ALTER TABLE jobs ADD COLUMN wake_at float8;
ALTER TABLE jobs ADD COLUMN parent_id text;
ALTER TABLE jobs ADD COLUMN control text;
ALTER TABLE jobs ADD COLUMN deadline float8;
ALTER TABLE jobs ADD COLUMN recoveries integer NOT NULL DEFAULT 0;

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
