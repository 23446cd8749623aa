-- DPoP proofs seen (package token), shared by replicas that have no Redis: a
-- proof is good once across replicas. key is the SHA-256 of the proof's key
-- thumbprint and jti; rows are dead after expires_at (micros) and swept.
CREATE TABLE dpop_jtis (key TEXT PRIMARY KEY, expires_at BIGINT NOT NULL);
CREATE INDEX dpop_jtis_expires ON dpop_jtis(expires_at);
