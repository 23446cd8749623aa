-- Faults (issue #11).
-- Fencing: a replica that another one declared gone is "claimed"; a claimed
-- instance can never beat again, so a sweep and a late heartbeat cannot both win.
ALTER TABLE instances ADD COLUMN claimed BIGINT NOT NULL DEFAULT 0;
-- At most one end record per request: the append that closes a request inserts
-- here first, and a second close (recovery and the call itself) is dropped.
CREATE TABLE ledger_closed (request_id TEXT PRIMARY KEY);
-- The spend-velocity breaker's windows, shared by every replica.
CREATE TABLE breaker_spend (key_id TEXT NOT NULL, bucket BIGINT NOT NULL, spent BIGINT NOT NULL, PRIMARY KEY (key_id, bucket));
-- Change propagation: every change a replica must see at once is announced on
-- the channel gatehouse_<schema> (the schema in use: tests share one database).
CREATE FUNCTION gatehouse_notify() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('gatehouse_' || current_schema(), 'principal:' || OLD.id);
  ELSIF TG_TABLE_NAME = 'keys' THEN
    PERFORM pg_notify('gatehouse_' || current_schema(), 'key:' || NEW.id);
  ELSIF TG_TABLE_NAME = 'principals' THEN
    PERFORM pg_notify('gatehouse_' || current_schema(), 'principal:' || NEW.id);
  ELSE
    PERFORM pg_notify('gatehouse_' || current_schema(), 'config');
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;
-- Every write that matters bumps a row's version; last-used times do not.
CREATE TRIGGER gatehouse_notify_keys AFTER UPDATE ON keys FOR EACH ROW
  WHEN (OLD.version IS DISTINCT FROM NEW.version) EXECUTE FUNCTION gatehouse_notify();
CREATE TRIGGER gatehouse_notify_principals AFTER UPDATE ON principals FOR EACH ROW
  WHEN (OLD.version IS DISTINCT FROM NEW.version) EXECUTE FUNCTION gatehouse_notify();
CREATE TRIGGER gatehouse_notify_principals_delete AFTER DELETE ON principals FOR EACH ROW EXECUTE FUNCTION gatehouse_notify();
CREATE TRIGGER gatehouse_notify_meta AFTER UPDATE ON meta FOR EACH ROW EXECUTE FUNCTION gatehouse_notify();
