-- Users' passwords and TOTP (sealed), login sessions, and keys that need MFA.
CREATE TABLE user_credentials (
  principal_id TEXT PRIMARY KEY REFERENCES principals(id), password_hash TEXT NOT NULL, totp_sealed BYTEA,
  totp_pending_sealed BYTEA, totp_last_step BIGINT NOT NULL, recovery TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE TABLE sessions (
  id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, principal_id TEXT NOT NULL, created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL, mfa_at BIGINT, revoked_at BIGINT);
CREATE INDEX sessions_principal ON sessions(principal_id);
ALTER TABLE keys ADD COLUMN mfa_required BIGINT NOT NULL DEFAULT 0;
