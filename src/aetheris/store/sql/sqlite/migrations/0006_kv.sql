-- Small documents an integration keeps outside any job's journal (LangGraph checkpoints), by
-- space and key. Keys compare in code point order (SQLite's BINARY collation on UTF-8), so a
-- prefix is a key range and integrations lay related entries out under one prefix.
CREATE TABLE kv (
    space TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (space, key)
) WITHOUT ROWID;
