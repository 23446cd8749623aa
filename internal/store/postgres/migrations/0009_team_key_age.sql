-- A team's maximum key age (0: the organisation's limit only).
ALTER TABLE teams ADD COLUMN max_key_age_seconds BIGINT NOT NULL DEFAULT 0;
