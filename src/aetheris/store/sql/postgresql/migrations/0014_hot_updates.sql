-- Heap-only (HOT) updates of jobs. PostgreSQL updates a row without touching its indexes only
-- when no indexed column changes (a key or a partial index's predicate) and the new version
-- fits on the row's page. Every step commit sets updated_at and every heartbeat moves
-- lease_expires_at, so with those two columns indexed nearly no update of jobs was HOT: each
-- one added an entry to every index of jobs, and the dead entries of past lease times piled up
-- in front of the claim's search for expired leases.
--
-- Ended jobs are found by their creation time (a job ends after it is created, so a prune's
-- cutoff bounds the range; the prune still checks the end time, updated_at, on the row).
DROP INDEX jobs_ended;
CREATE INDEX jobs_ended ON jobs (created_at, id)
WHERE status IN ('succeeded', 'failed', 'cancelled', 'compensated');

-- Running jobs by their lease owner, which stays put while the job runs: the claim reads the
-- running jobs and checks their lease times on the rows (as many as run, whatever the
-- history), and the reaper's owner lookups read it too.
DROP INDEX jobs_running;
CREATE INDEX jobs_running ON jobs (lease_owner) WHERE status = 'running';

-- Room on each page for the new versions of its rows (new pages only; VACUUM FULL or a
-- rewrite applies it to the old ones).
ALTER TABLE jobs SET (fillfactor = 70);
