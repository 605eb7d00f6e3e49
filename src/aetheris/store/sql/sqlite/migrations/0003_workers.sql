-- Live workers: what each serves (agents, and queues as JSON lists; queues NULL: every queue),
-- where it runs, when it started and when it was last seen. A running worker refreshes
-- last_seen every few seconds; a graceful stop removes its row, a killed worker leaves it.
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    agents     BLOB NOT NULL,
    queues     BLOB,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen  REAL NOT NULL
);
