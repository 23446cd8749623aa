-- Gatehouse schema, SQLite. Times: unix microseconds UTC. Booleans: 0/1.
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) VALUES ('config_version', 1);

CREATE TABLE secrets (name TEXT PRIMARY KEY, sealed BLOB NOT NULL, created_at INTEGER NOT NULL);

CREATE TABLE teams (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL, version INTEGER NOT NULL);

CREATE TABLE principals (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, roles TEXT NOT NULL,
  disabled INTEGER NOT NULL, created_at INTEGER NOT NULL, version INTEGER NOT NULL);

CREATE TABLE principal_teams (
  principal_id TEXT NOT NULL REFERENCES principals(id),
  team_id TEXT NOT NULL REFERENCES teams(id),
  PRIMARY KEY (principal_id, team_id));
CREATE INDEX principal_teams_team ON principal_teams(team_id);

CREATE TABLE keys (
  id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, hint TEXT NOT NULL,
  principal_id TEXT NOT NULL REFERENCES principals(id), team_id TEXT NOT NULL, scope TEXT NOT NULL,
  expires_at INTEGER, revoked_at INTEGER, created_at INTEGER NOT NULL, last_used_at INTEGER, version INTEGER NOT NULL);
CREATE INDEX keys_principal ON keys(principal_id);

CREATE TABLE providers (
  id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL, base_url TEXT NOT NULL,
  models TEXT NOT NULL, created_at INTEGER NOT NULL, version INTEGER NOT NULL);

CREATE TABLE provider_keys (
  id TEXT PRIMARY KEY, provider_id TEXT NOT NULL REFERENCES providers(id),
  sealed BLOB NOT NULL, created_at INTEGER NOT NULL);

CREATE TABLE prices (
  model TEXT PRIMARY KEY, input INTEGER NOT NULL, cached_input INTEGER NOT NULL, cache_write INTEGER NOT NULL,
  output INTEGER NOT NULL, updated_at INTEGER NOT NULL);

CREATE TABLE usage (
  id TEXT PRIMARY KEY, at INTEGER NOT NULL, key_id TEXT NOT NULL, principal_id TEXT NOT NULL, team_id TEXT NOT NULL,
  endpoint TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL, stream INTEGER NOT NULL, status INTEGER NOT NULL,
  error_code TEXT NOT NULL, input_tokens INTEGER NOT NULL, cached_input_tokens INTEGER NOT NULL,
  cache_write_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
  priced INTEGER NOT NULL, estimated INTEGER NOT NULL, latency_ms INTEGER NOT NULL, upstream_request_id TEXT NOT NULL);
CREATE INDEX usage_at ON usage(at);
CREATE INDEX usage_key_at ON usage(key_id, at);
