-- Suspended keys, for the sweep that records a breaker suspension whose
-- replica stopped between the suspension's write and its ledger record
-- (server.recordSuspensions): few rows, read every sweep.
CREATE INDEX keys_suspended ON keys(suspended_at) WHERE suspended_at IS NOT NULL;
