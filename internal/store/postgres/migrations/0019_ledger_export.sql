-- Ledger exports (package ledger, Exporter): per export target ("file",
-- "webhook"), the index of the next record to deliver. It advances only after
-- a delivery was made durable (file fsynced, webhook answered 2xx). holder and
-- lease_until (Unix microseconds) name the process that delivers the target's
-- next range, so that replicas sharing one log export each record once.
CREATE TABLE ledger_export (target TEXT PRIMARY KEY, next BIGINT NOT NULL, holder TEXT NOT NULL, lease_until BIGINT NOT NULL);
