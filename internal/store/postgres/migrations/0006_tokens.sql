-- Revoked access tokens (by id, until they would have expired) and per-principal cut-offs.
CREATE TABLE token_revocations (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL, revoked_at BIGINT NOT NULL);
CREATE TABLE token_cutoffs (principal_id TEXT PRIMARY KEY, before_at BIGINT NOT NULL);
