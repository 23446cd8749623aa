-- Budgets, their per-period counters, open reservations, live instances,
-- fired alerts; key suspension (spend-velocity breaker); rate limits.
CREATE TABLE budgets (
  id TEXT PRIMARY KEY, scope TEXT NOT NULL, scope_id TEXT NOT NULL, model TEXT NOT NULL, period TEXT NOT NULL,
  time_zone TEXT NOT NULL, limit_micros BIGINT NOT NULL, hard BIGINT NOT NULL, clamp BIGINT NOT NULL,
  thresholds TEXT NOT NULL, created_at BIGINT NOT NULL, version BIGINT NOT NULL);

CREATE TABLE budget_spend (
  budget_id TEXT NOT NULL, period_start BIGINT NOT NULL, spent BIGINT NOT NULL, reserved BIGINT NOT NULL,
  PRIMARY KEY (budget_id, period_start));

CREATE TABLE reservations (
  id TEXT PRIMARY KEY, instance TEXT NOT NULL, amount BIGINT NOT NULL, charges TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE INDEX reservations_instance ON reservations(instance);

CREATE TABLE instances (id TEXT PRIMARY KEY, heartbeat_at BIGINT NOT NULL);

CREATE TABLE budget_alerts (
  budget_id TEXT NOT NULL, period_start BIGINT NOT NULL, threshold BIGINT NOT NULL, fired_at BIGINT NOT NULL,
  PRIMARY KEY (budget_id, period_start, threshold));

ALTER TABLE keys ADD COLUMN suspended_at BIGINT;
ALTER TABLE keys ADD COLUMN suspend_reason TEXT NOT NULL DEFAULT '';

CREATE TABLE rate_limits (
  id TEXT PRIMARY KEY, scope TEXT NOT NULL, scope_id TEXT NOT NULL, rpm BIGINT NOT NULL, tpm BIGINT NOT NULL,
  concurrent BIGINT NOT NULL, created_at BIGINT NOT NULL, version BIGINT NOT NULL,
  UNIQUE (scope, scope_id));

ALTER TABLE prices ADD COLUMN max_output BIGINT NOT NULL DEFAULT 0;
