-- Console sessions and OIDC sign-ins in flight (package console), shared by
-- replicas. Keys are SHA-256 hashes of the cookie and state values, never the
-- values; the admin session token and the PKCE verifier are sealed with keys
-- derived from the cookie values (console/sessions.go).
CREATE TABLE console_sessions (
  id_hash BLOB PRIMARY KEY, sealed_token BLOB NOT NULL, user_name TEXT NOT NULL, principal_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, seen_at INTEGER NOT NULL);
CREATE INDEX console_sessions_seen ON console_sessions(seen_at);
CREATE INDEX console_sessions_created ON console_sessions(created_at);
CREATE TABLE console_oidc_logins (
  state_hash BLOB PRIMARY KEY, binding_hash BLOB NOT NULL, sealed_verifier BLOB NOT NULL, next TEXT NOT NULL,
  started_at INTEGER NOT NULL);
CREATE INDEX console_oidc_logins_started ON console_oidc_logins(started_at);
