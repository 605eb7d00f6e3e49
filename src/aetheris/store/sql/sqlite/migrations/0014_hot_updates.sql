-- Ended jobs by their creation time, as on PostgreSQL (where an index on updated_at, which
-- every step commit sets, kept updates of jobs from being heap-only): a job ends after it is
-- created, so a prune's cutoff bounds the range, and the prune checks the end time
-- (updated_at) on the row. The running jobs' index on lease_expires_at stays: an update in
-- SQLite changes only the indexes whose columns it changes and leaves no dead entries behind,
-- so a heartbeat moves one entry of that small index, and the claim's search for expired
-- leases stays a range scan in lease order.
DROP INDEX jobs_ended;
CREATE INDEX jobs_ended ON jobs (created_at, id)
WHERE status IN ('succeeded', 'failed', 'cancelled', 'compensated');
