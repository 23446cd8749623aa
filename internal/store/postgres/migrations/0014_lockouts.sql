-- Attempt limits on guessable secrets (package lockout): one counter per
-- subject (a user's factor, a login name, a source address), shared by replicas.
CREATE TABLE auth_lockouts (
  subject TEXT PRIMARY KEY, window_start BIGINT NOT NULL, failures BIGINT NOT NULL, locked_until BIGINT NOT NULL,
  locked_at BIGINT NOT NULL, backoff_us BIGINT NOT NULL, lock_count BIGINT NOT NULL,
  last_source TEXT NOT NULL, last_user_agent TEXT NOT NULL, updated_at BIGINT NOT NULL);
CREATE INDEX auth_lockouts_updated ON auth_lockouts(updated_at);
