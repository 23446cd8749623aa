-- Audit reports (package audit), kept whole as JSON; access-review campaigns
-- and their items.
CREATE TABLE audit_reports (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, generated_at INTEGER NOT NULL, period_from INTEGER NOT NULL, period_to INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX audit_reports_generated ON audit_reports(generated_at);
CREATE TABLE review_campaigns (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL, version INTEGER NOT NULL);
CREATE TABLE review_items (id TEXT PRIMARY KEY, campaign_id TEXT NOT NULL, data TEXT NOT NULL, version INTEGER NOT NULL);
CREATE INDEX review_items_campaign ON review_items(campaign_id);
