-- Budgets, their per-period counters, open reservations, live instances,
-- fired alerts; key suspension (spend-velocity breaker); rate limits.
CREATE TABLE budgets (
  id TEXT PRIMARY KEY, scope TEXT NOT NULL, scope_id TEXT NOT NULL, model TEXT NOT NULL, period TEXT NOT NULL,
  time_zone TEXT NOT NULL, limit_micros INTEGER NOT NULL, hard INTEGER NOT NULL, clamp INTEGER NOT NULL,
  thresholds TEXT NOT NULL, created_at INTEGER NOT NULL, version INTEGER NOT NULL);

CREATE TABLE budget_spend (
  budget_id TEXT NOT NULL, period_start INTEGER NOT NULL, spent INTEGER NOT NULL, reserved INTEGER NOT NULL,
  PRIMARY KEY (budget_id, period_start));

CREATE TABLE reservations (
  id TEXT PRIMARY KEY, instance TEXT NOT NULL, amount INTEGER NOT NULL, charges TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX reservations_instance ON reservations(instance);

CREATE TABLE instances (id TEXT PRIMARY KEY, heartbeat_at INTEGER NOT NULL);

CREATE TABLE budget_alerts (
  budget_id TEXT NOT NULL, period_start INTEGER NOT NULL, threshold INTEGER NOT NULL, fired_at INTEGER NOT NULL,
  PRIMARY KEY (budget_id, period_start, threshold));

ALTER TABLE keys ADD COLUMN suspended_at INTEGER;
ALTER TABLE keys ADD COLUMN suspend_reason TEXT NOT NULL DEFAULT '';

CREATE TABLE rate_limits (
  id TEXT PRIMARY KEY, scope TEXT NOT NULL, scope_id TEXT NOT NULL, rpm INTEGER NOT NULL, tpm INTEGER NOT NULL,
  concurrent INTEGER NOT NULL, created_at INTEGER NOT NULL, version INTEGER NOT NULL,
  UNIQUE (scope, scope_id));

ALTER TABLE prices ADD COLUMN max_output INTEGER NOT NULL DEFAULT 0;
