-- The tamper-evident ledger: records (leaves), stored Merkle hashes (indexed as
-- golang.org/x/mod/sumdb/tlog stores them), the tree size, the latest signed
-- checkpoint, and the calls whose start record has no end record yet.
CREATE TABLE ledger_entries (idx BIGINT PRIMARY KEY, request_id TEXT NOT NULL, data BYTEA NOT NULL);
CREATE INDEX ledger_entries_request ON ledger_entries(request_id);
CREATE TABLE ledger_hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
CREATE TABLE ledger_state (id BIGINT PRIMARY KEY, size BIGINT NOT NULL);
INSERT INTO ledger_state (id, size) VALUES (1, 0);
CREATE TABLE ledger_checkpoints (id BIGINT PRIMARY KEY, size BIGINT NOT NULL, signed BYTEA NOT NULL, signed_at BIGINT NOT NULL);
CREATE TABLE ledger_open (request_id TEXT PRIMARY KEY, instance TEXT NOT NULL, idx BIGINT NOT NULL);
