-- Fewer pages written per call (issue #12). Each B-tree a batch touches costs
-- at least one 4 KB WAL frame per commit. Tables keyed by a text id got two
-- B-trees each (the rowid table and the id's automatic index); WITHOUT ROWID
-- keeps one, ordered by the id. These three tables are read by their key only
-- (ledger_closed, reservations by id, ledger_open by request id) or scanned
-- whole by the periodic sweeps (reservations and ledger_open hold only the
-- calls in progress, so the sweeps do not need an index by instance: one
-- process owns the embedded store).
CREATE TABLE ledger_closed_0023 (request_id TEXT PRIMARY KEY) WITHOUT ROWID;
INSERT INTO ledger_closed_0023 (request_id) SELECT request_id FROM ledger_closed;
DROP TABLE ledger_closed;
ALTER TABLE ledger_closed_0023 RENAME TO ledger_closed;

CREATE TABLE ledger_open_0023 (request_id TEXT PRIMARY KEY, instance TEXT NOT NULL, idx INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO ledger_open_0023 (request_id, instance, idx) SELECT request_id, instance, idx FROM ledger_open;
DROP TABLE ledger_open;
ALTER TABLE ledger_open_0023 RENAME TO ledger_open;

CREATE TABLE reservations_0023 (
  id TEXT PRIMARY KEY, instance TEXT NOT NULL, amount INTEGER NOT NULL, charges TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO reservations_0023 (id, instance, amount, charges, created_at) SELECT id, instance, amount, charges, created_at FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_0023 RENAME TO reservations;
