-- Gatehouse schema, PostgreSQL. Times: unix microseconds UTC. Booleans: 0/1.
CREATE TABLE meta (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta (name, value) VALUES ('config_version', 1);

CREATE TABLE secrets (name TEXT PRIMARY KEY, sealed BYTEA NOT NULL, created_at BIGINT NOT NULL);

CREATE TABLE teams (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL, version BIGINT NOT NULL);

CREATE TABLE principals (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, roles TEXT NOT NULL,
  disabled BIGINT NOT NULL, created_at BIGINT NOT NULL, version BIGINT NOT NULL);

CREATE TABLE principal_teams (
  principal_id TEXT NOT NULL REFERENCES principals(id),
  team_id TEXT NOT NULL REFERENCES teams(id),
  PRIMARY KEY (principal_id, team_id));
CREATE INDEX principal_teams_team ON principal_teams(team_id);

CREATE TABLE keys (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, hint TEXT NOT NULL,
  principal_id TEXT NOT NULL REFERENCES principals(id), team_id TEXT NOT NULL, scope TEXT NOT NULL,
  expires_at BIGINT, revoked_at BIGINT, created_at BIGINT NOT NULL, last_used_at BIGINT, version BIGINT NOT NULL);
CREATE INDEX keys_principal ON keys(principal_id);

CREATE TABLE providers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL, base_url TEXT NOT NULL,
  models TEXT NOT NULL, created_at BIGINT NOT NULL, version BIGINT NOT NULL);

CREATE TABLE provider_keys (
  id TEXT PRIMARY KEY, provider_id TEXT NOT NULL REFERENCES providers(id),
  sealed BYTEA NOT NULL, created_at BIGINT NOT NULL);

CREATE TABLE prices (
  model TEXT PRIMARY KEY, input BIGINT NOT NULL, cached_input BIGINT NOT NULL, cache_write BIGINT NOT NULL,
  output BIGINT NOT NULL, updated_at BIGINT NOT NULL);

CREATE TABLE usage (
  id TEXT PRIMARY KEY, at BIGINT NOT NULL, key_id TEXT NOT NULL, principal_id TEXT NOT NULL, team_id TEXT NOT NULL,
  endpoint TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL, stream BIGINT NOT NULL, status BIGINT NOT NULL,
  error_code TEXT NOT NULL, input_tokens BIGINT NOT NULL, cached_input_tokens BIGINT NOT NULL,
  cache_write_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
  priced BIGINT NOT NULL, estimated BIGINT NOT NULL, latency_ms BIGINT NOT NULL, upstream_request_id TEXT NOT NULL);
CREATE INDEX usage_at ON usage(at);
CREATE INDEX usage_key_at ON usage(key_id, at);
