-- Expiry warnings sent, one per key and expiry time.
CREATE TABLE key_warnings (key_id TEXT NOT NULL, expires_at INTEGER NOT NULL, warned_at INTEGER NOT NULL, PRIMARY KEY (key_id, expires_at));
