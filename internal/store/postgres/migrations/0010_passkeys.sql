-- WebAuthn passkeys (public keys, nothing secret) and ceremonies in progress.
CREATE TABLE passkeys (
  id TEXT PRIMARY KEY, principal_id TEXT NOT NULL REFERENCES principals(id), name TEXT NOT NULL,
  credential TEXT NOT NULL, created_at BIGINT NOT NULL, last_used_at BIGINT);
CREATE INDEX passkeys_principal ON passkeys(principal_id);
CREATE TABLE webauthn_ceremonies (
  id TEXT PRIMARY KEY, principal_id TEXT NOT NULL, kind TEXT NOT NULL, data TEXT NOT NULL, expires_at BIGINT NOT NULL);
