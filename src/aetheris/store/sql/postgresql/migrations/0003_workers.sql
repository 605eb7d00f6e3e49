-- Live workers: what each serves (agents, and queues as JSON lists; queues NULL: every queue),
-- where it runs, when it started and when it was last seen. A running worker refreshes
-- last_seen every few seconds; a graceful stop removes its row, a killed worker leaves it.
CREATE TABLE workers (
    id         text PRIMARY KEY,
    agents     jsonb NOT NULL,
    queues     jsonb,
    host       text NOT NULL,
    pid        integer NOT NULL,
    started_at float8 NOT NULL,
    last_seen  float8 NOT NULL
);
