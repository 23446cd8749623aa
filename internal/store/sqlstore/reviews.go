package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// SaveReport implements audit.ReportStore.
func (s *DB) SaveReport(ctx context.Context, r audit.Report) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO audit_reports (id, name, generated_at, period_from, period_to, data) VALUES (?, ?, ?, ?, ?, ?)`,
		r.ID, r.Name, micros(r.GeneratedAt), micros(r.From), micros(r.To), toJSON(r))
	return err
}

// Report implements audit.ReportStore.
func (s *DB) Report(ctx context.Context, id string) (audit.Report, error) {
	var data string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT data FROM audit_reports WHERE id = ?`), id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return audit.Report{}, store.ErrNotFound
	}
	if err != nil {
		return audit.Report{}, err
	}
	var r audit.Report
	return r, fromJSON(data, &r)
}

// ListReports implements audit.ReportStore, newest first.
func (s *DB) ListReports(ctx context.Context, limit int) ([]audit.ReportInfo, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, name, generated_at, period_from, period_to FROM audit_reports ORDER BY generated_at DESC, id LIMIT ?`), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.ReportInfo
	for rows.Next() {
		var r audit.ReportInfo
		var g, f, t int64
		if err := rows.Scan(&r.ID, &r.Name, &g, &f, &t); err != nil {
			return nil, err
		}
		r.GeneratedAt, r.From, r.To = fromMicros(g), fromMicros(f), fromMicros(t)
		out = append(out, r)
	}
	return out, rows.Err()
}

// CreateCampaign implements audit.ReviewStore: the campaign and its items in one transaction.
func (s *DB) CreateCampaign(ctx context.Context, c audit.Campaign, items []audit.Item) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		c.Version = 1
		if _, err := s.exec(ctx, tx, `INSERT INTO review_campaigns (id, created_at, state, data, version) VALUES (?, ?, ?, ?, 1)`,
			c.ID, micros(c.CreatedAt), c.State, toJSON(c)); err != nil {
			return err
		}
		for _, it := range items {
			it.Version = 1
			if _, err := s.exec(ctx, tx, `INSERT INTO review_items (id, campaign_id, data, version) VALUES (?, ?, ?, 1)`, it.ID, c.ID, toJSON(it)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Campaign implements audit.ReviewStore.
func (s *DB) Campaign(ctx context.Context, id string) (audit.Campaign, error) {
	var c audit.Campaign
	err := s.scanData(s.db.QueryRowContext(ctx, s.q(`SELECT data, version FROM review_campaigns WHERE id = ?`), id), &c, &c.Version)
	return c, err
}

func (s *DB) scanData(row interface{ Scan(...any) error }, v any, version *int64) error {
	var data string
	var ver int64
	if err := row.Scan(&data, &ver); errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	} else if err != nil {
		return err
	}
	if err := fromJSON(data, v); err != nil {
		return err
	}
	*version = ver
	return nil
}

// ListCampaigns implements audit.ReviewStore, newest first.
func (s *DB) ListCampaigns(ctx context.Context) ([]audit.Campaign, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT data, version FROM review_campaigns ORDER BY created_at DESC, id`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []audit.Campaign{}
	for rows.Next() {
		var c audit.Campaign
		if err := s.scanData(rows, &c, &c.Version); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// UpdateCampaign implements audit.ReviewStore.
func (s *DB) UpdateCampaign(ctx context.Context, c audit.Campaign, version int64) (audit.Campaign, error) {
	c.Version = version + 1
	res, err := s.exec(ctx, s.db, `UPDATE review_campaigns SET state = ?, data = ?, version = version + 1 WHERE id = ? AND version = ?`, c.State, toJSON(c), c.ID, version)
	if err != nil {
		return audit.Campaign{}, err
	}
	return c, s.checkVersioned(ctx, s.db, res, "review_campaigns", c.ID)
}

// ReviewItems implements audit.ReviewStore.
func (s *DB) ReviewItems(ctx context.Context, campaignID string) ([]audit.Item, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT data, version FROM review_items WHERE campaign_id = ? ORDER BY id`), campaignID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []audit.Item{}
	for rows.Next() {
		var it audit.Item
		if err := s.scanData(rows, &it, &it.Version); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// ReviewItem implements audit.ReviewStore.
func (s *DB) ReviewItem(ctx context.Context, id string) (audit.Item, error) {
	var it audit.Item
	err := s.scanData(s.db.QueryRowContext(ctx, s.q(`SELECT data, version FROM review_items WHERE id = ?`), id), &it, &it.Version)
	return it, err
}

// UpdateReviewItem implements audit.ReviewStore.
func (s *DB) UpdateReviewItem(ctx context.Context, it audit.Item, version int64) (audit.Item, error) {
	it.Version = version + 1
	res, err := s.exec(ctx, s.db, `UPDATE review_items SET data = ?, version = version + 1 WHERE id = ? AND version = ?`, toJSON(it), it.ID, version)
	if err != nil {
		return audit.Item{}, err
	}
	return it, s.checkVersioned(ctx, s.db, res, "review_items", it.ID)
}

// NarrowKey implements audit.ReviewStore: a reviewer's "reduce" sets a key's
// scope and expiry, only if the key is still at version (store.AnyVersion
// skips the check): the narrowed scope was computed from that version, so
// written over a newer one it could undo another narrowing.
func (s *DB) NarrowKey(ctx context.Context, id string, version int64, scope vkey.Scope, expires *time.Time) (vkey.Key, error) {
	res, err := s.exec(ctx, s.db, `UPDATE keys SET scope = ?, expires_at = ?, version = version + 1 WHERE id = ? AND (? = 0 OR version = ?)`,
		toJSON(scope), nullMicros(expires), id, version, version)
	if err != nil {
		return vkey.Key{}, err
	}
	if err := s.checkVersioned(ctx, s.db, res, "keys", id); err != nil {
		return vkey.Key{}, err
	}
	return s.Key(ctx, id)
}
