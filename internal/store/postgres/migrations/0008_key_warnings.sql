-- Expiry warnings sent, one per key and expiry time.
CREATE TABLE key_warnings (key_id TEXT NOT NULL, expires_at BIGINT NOT NULL, warned_at BIGINT NOT NULL, PRIMARY KEY (key_id, expires_at));
