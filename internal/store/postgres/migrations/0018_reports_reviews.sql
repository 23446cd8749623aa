-- Audit reports (package audit), kept whole as JSON; access-review campaigns
-- and their items.
CREATE TABLE audit_reports (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, generated_at BIGINT NOT NULL, period_from BIGINT NOT NULL, period_to BIGINT NOT NULL, data TEXT NOT NULL);
CREATE INDEX audit_reports_generated ON audit_reports(generated_at);
CREATE TABLE review_campaigns (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL, version BIGINT NOT NULL);
CREATE TABLE review_items (id TEXT PRIMARY KEY, campaign_id TEXT NOT NULL, data TEXT NOT NULL, version BIGINT NOT NULL);
CREATE INDEX review_items_campaign ON review_items(campaign_id);
