-- Large payloads of a job's journal (model message histories, images), content-addressed: an
-- event refers to a blob by the sha256 of its bytes, and a blob written twice is stored once.
-- Blobs are written in the fenced transaction of the event that first refers to them.
CREATE TABLE blobs (
    job_id TEXT NOT NULL,
    hash   TEXT NOT NULL,
    body   BLOB NOT NULL,
    PRIMARY KEY (job_id, hash)
) WITHOUT ROWID;
