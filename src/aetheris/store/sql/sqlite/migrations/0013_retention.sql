-- Retention: ended jobs are found by their end time (the last update of an ended job), and
-- each job deleted leaves a tombstone, so that a verifier who saw the job can tell a prune
-- from a deletion (the tombstone carries the journal's length and head when it was pruned,
-- signed by the pruning process's key when it holds one).
CREATE INDEX jobs_ended ON jobs (updated_at, id)
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

-- Rows a prune deletes by job where the primary key does not lead with it.
CREATE INDEX keyed_signals_by_job ON keyed_signals (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX correlations_by_job ON correlations (job_id) WHERE job_id IS NOT NULL;
CREATE INDEX webhook_deliveries_by_job ON webhook_deliveries (job_id);
