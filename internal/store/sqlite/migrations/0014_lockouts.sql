-- Attempt limits on guessable secrets (package lockout): one counter per
-- subject (a user's factor, a login name, a source address), shared by replicas.
CREATE TABLE auth_lockouts (
  subject TEXT PRIMARY KEY, window_start INTEGER NOT NULL, failures INTEGER NOT NULL, locked_until INTEGER NOT NULL,
  locked_at INTEGER NOT NULL, backoff_us INTEGER NOT NULL, lock_count INTEGER NOT NULL,
  last_source TEXT NOT NULL, last_user_agent TEXT NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX auth_lockouts_updated ON auth_lockouts(updated_at);
