-- Who asked for a running job's cancel or pause: kept with the flag until the worker honours
-- it, so the journal entry that ends or parks the job names them, as it does for a job that
-- no worker holds.
ALTER TABLE jobs ADD COLUMN control_by text;
