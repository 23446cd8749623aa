-- Faults (issue #11).
-- Fencing: a claimed instance (declared gone by recovery) can never beat again.
ALTER TABLE instances ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
-- At most one end record per request.
CREATE TABLE ledger_closed (request_id TEXT PRIMARY KEY);
-- The spend-velocity breaker's windows (shared when several processes share a store).
CREATE TABLE breaker_spend (key_id TEXT NOT NULL, bucket INTEGER NOT NULL, spent INTEGER NOT NULL, PRIMARY KEY (key_id, bucket));
