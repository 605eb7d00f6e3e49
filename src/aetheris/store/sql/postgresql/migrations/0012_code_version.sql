-- The version of the agent's code that last wrote entries in the job's journal (its
-- fingerprint, or the version its author gave): a worker running other code can leave the
-- job to one running this version, or replay-check it first. NULL: no entry written yet.
ALTER TABLE jobs ADD COLUMN code_version text;
