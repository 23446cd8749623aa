-- Users' passwords and TOTP (sealed), login sessions, and keys that need MFA.
CREATE TABLE user_credentials (
  principal_id TEXT PRIMARY KEY REFERENCES principals(id), password_hash TEXT NOT NULL, totp_sealed BLOB,
  totp_pending_sealed BLOB, totp_last_step INTEGER NOT NULL, recovery TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE sessions (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, principal_id TEXT NOT NULL, created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, mfa_at INTEGER, revoked_at INTEGER);
CREATE INDEX sessions_principal ON sessions(principal_id);
ALTER TABLE keys ADD COLUMN mfa_required INTEGER NOT NULL DEFAULT 0;
