-- A call whose upstream reported more than the gateway reserved for it (issue 9).
ALTER TABLE usage ADD COLUMN over_reservation INTEGER NOT NULL DEFAULT 0;
