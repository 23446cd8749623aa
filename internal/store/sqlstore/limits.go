package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/gatehouse-gw/gatehouse/internal/ratelimit"
)

// SetLimit implements ratelimit.Store: one row per scope, replaced whole.
func (s *DB) SetLimit(ctx context.Context, l ratelimit.Limit) (ratelimit.Limit, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var id string
		var version int64
		err := tx.QueryRowContext(ctx, s.q(`SELECT id, version FROM rate_limits WHERE scope = ? AND scope_id = ?`), string(l.Scope), l.ScopeID).Scan(&id, &version)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			l.Version = 1
			if _, err := s.exec(ctx, tx, `INSERT INTO rate_limits (id, scope, scope_id, rpm, tpm, concurrent, created_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, 1)`,
				l.ID, string(l.Scope), l.ScopeID, l.RPM, l.TPM, l.Concurrent, micros(l.CreatedAt)); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			l.ID, l.Version = id, version+1
			if _, err := s.exec(ctx, tx, `UPDATE rate_limits SET rpm = ?, tpm = ?, concurrent = ?, version = version + 1 WHERE id = ?`,
				l.RPM, l.TPM, l.Concurrent, id); err != nil {
				return err
			}
		}
		return s.bumpConfig(ctx, tx)
	})
	return l, err
}

// ListLimits implements ratelimit.Store.
func (s *DB) ListLimits(ctx context.Context) ([]ratelimit.Limit, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, scope, scope_id, rpm, tpm, concurrent, created_at, version FROM rate_limits ORDER BY created_at, id`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ratelimit.Limit
	for rows.Next() {
		var l ratelimit.Limit
		var scope string
		var created int64
		if err := rows.Scan(&l.ID, &scope, &l.ScopeID, &l.RPM, &l.TPM, &l.Concurrent, &created, &l.Version); err != nil {
			return nil, err
		}
		l.Scope, l.CreatedAt = ratelimit.Scope(scope), fromMicros(created)
		out = append(out, l)
	}
	return out, rows.Err()
}

// DeleteLimit implements ratelimit.Store.
func (s *DB) DeleteLimit(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM rate_limits WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if err := oneRow(res); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}
