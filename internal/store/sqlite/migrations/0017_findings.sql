-- Audit findings (package audit): one row per rule and subject (fingerprint);
-- the whole finding, history included, is JSON in data; last_seen and
-- occurrences, which every run moves, are columns that override it. The latest
-- verification of the gateway's own log is kept in audit_log_check.
CREATE TABLE findings (
  id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL UNIQUE, rule TEXT NOT NULL, severity TEXT NOT NULL,
  subject_id TEXT NOT NULL, state TEXT NOT NULL, last_seen INTEGER NOT NULL, occurrences INTEGER NOT NULL, data TEXT NOT NULL, version INTEGER NOT NULL);
CREATE INDEX findings_state ON findings(state);
CREATE TABLE audit_log_check (id INTEGER PRIMARY KEY, data TEXT NOT NULL);
