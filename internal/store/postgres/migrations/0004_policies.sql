-- Policy versions: each apply (or rollback) is a new version; the highest is in force.
CREATE TABLE policy_versions (
  version BIGINT PRIMARY KEY, files TEXT NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL, note TEXT NOT NULL);
ALTER TABLE usage ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
