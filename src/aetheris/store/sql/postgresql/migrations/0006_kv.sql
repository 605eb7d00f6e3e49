-- Small documents an integration keeps outside any job's journal (LangGraph checkpoints), by
-- space and key. Keys compare in code point order (the "C" collation on UTF-8), so a prefix is
-- a key range and integrations lay related entries out under one prefix.
CREATE TABLE kv (
    space text NOT NULL,
    key   text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);
