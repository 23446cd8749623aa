-- Key rotation with a grace period: the previous secret keeps working until prev_valid_until.
ALTER TABLE keys ADD COLUMN prev_hash TEXT;
ALTER TABLE keys ADD COLUMN prev_hint TEXT NOT NULL DEFAULT '';
ALTER TABLE keys ADD COLUMN prev_valid_until BIGINT;
ALTER TABLE keys ADD COLUMN rotated_at BIGINT;
CREATE UNIQUE INDEX keys_prev_hash ON keys(prev_hash);
