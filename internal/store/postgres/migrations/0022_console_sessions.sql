-- Console sessions and OIDC sign-ins in flight (package console), shared by
-- replicas. Keys are SHA-256 hashes of the cookie and state values, never the
-- values; the admin session token and the PKCE verifier are sealed with keys
-- derived from the cookie values (console/sessions.go).
CREATE TABLE console_sessions (
  id_hash BYTEA PRIMARY KEY, sealed_token BYTEA NOT NULL, user_name TEXT NOT NULL, principal_id TEXT NOT NULL,
  created_at BIGINT NOT NULL, seen_at BIGINT NOT NULL);
CREATE INDEX console_sessions_seen ON console_sessions(seen_at);
CREATE INDEX console_sessions_created ON console_sessions(created_at);
CREATE TABLE console_oidc_logins (
  state_hash BYTEA PRIMARY KEY, binding_hash BYTEA NOT NULL, sealed_verifier BYTEA NOT NULL, next TEXT NOT NULL,
  started_at BIGINT NOT NULL);
CREATE INDEX console_oidc_logins_started ON console_oidc_logins(started_at);
