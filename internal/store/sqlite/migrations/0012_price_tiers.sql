-- An operator's price override may carry a long-context tier (issue 9): a
-- request with more than long_above input tokens pays the long_* prices.
ALTER TABLE prices ADD COLUMN long_above INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prices ADD COLUMN long_input INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prices ADD COLUMN long_cached_input INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prices ADD COLUMN long_cache_write INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prices ADD COLUMN long_output INTEGER NOT NULL DEFAULT 0;
