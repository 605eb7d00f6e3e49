-- The JSON schema of each agent's input, as the worker that serves it last registered it: a
-- client without the agents' code (the command line, another service) checks a job's input
-- before the job is stored. NULL: the agent's input has no JSON schema (any object goes).
ALTER TABLE agents ADD COLUMN input_schema jsonb;
