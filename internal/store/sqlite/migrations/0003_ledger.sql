-- The tamper-evident ledger: records (leaves), stored Merkle hashes (indexed as
-- golang.org/x/mod/sumdb/tlog stores them), the tree size, the latest signed
-- checkpoint, and the calls whose start record has no end record yet.
CREATE TABLE ledger_entries (idx INTEGER PRIMARY KEY, request_id TEXT NOT NULL, data BLOB NOT NULL);
CREATE INDEX ledger_entries_request ON ledger_entries(request_id);
CREATE TABLE ledger_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE ledger_state (id INTEGER PRIMARY KEY, size INTEGER NOT NULL);
INSERT INTO ledger_state (id, size) VALUES (1, 0);
CREATE TABLE ledger_checkpoints (id INTEGER PRIMARY KEY, size INTEGER NOT NULL, signed BLOB NOT NULL, signed_at INTEGER NOT NULL);
CREATE TABLE ledger_open (request_id TEXT PRIMARY KEY, instance TEXT NOT NULL, idx INTEGER NOT NULL);
