-- Anchors: the signature (Ed25519, by a key the database never holds) that each write stores
-- on its last event, and the public keys that signed, recorded for information only (a
-- verifier trusts only the keys it is given from outside).
ALTER TABLE events ADD COLUMN anchor_key text;
ALTER TABLE events ADD COLUMN anchor_sig text;

CREATE TABLE signing_keys (
    key_id     text PRIMARY KEY,
    public_key text NOT NULL,
    first_seen float8 NOT NULL
);
