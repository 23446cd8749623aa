package sqlstore

import (
	"context"
	"database/sql"
	"time"
)

// RevokeToken records a revoked token id until it would have expired.
func (s *DB) RevokeToken(ctx context.Context, jti string, expires time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO token_revocations (jti, expires_at, revoked_at) VALUES (?, ?, ?)
			ON CONFLICT (jti) DO NOTHING`, jti, micros(expires), micros(time.Now())); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

// RevokeTokensBefore revokes every token of a principal issued up to before.
func (s *DB) RevokeTokensBefore(ctx context.Context, principalID string, before time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `INSERT INTO token_cutoffs (principal_id, before_at) VALUES (?, ?)
			ON CONFLICT (principal_id) DO UPDATE SET before_at = excluded.before_at`, principalID, micros(before)); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
}

// TokenRevocations returns the revoked token ids that have not expired yet and
// the per-principal cut-offs.
func (s *DB) TokenRevocations(ctx context.Context, now time.Time) (map[string]time.Time, map[string]time.Time, error) {
	jtis, cutoffs := map[string]time.Time{}, map[string]time.Time{}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT jti, expires_at FROM token_revocations WHERE expires_at > ?`), micros(now))
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var j string
		var e int64
		if err := rows.Scan(&j, &e); err != nil {
			rows.Close()
			return nil, nil, err
		}
		jtis[j] = fromMicros(e)
	}
	rows.Close()
	rows, err = s.db.QueryContext(ctx, s.q(`SELECT principal_id, before_at FROM token_cutoffs`))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var p string
		var b int64
		if err := rows.Scan(&p, &b); err != nil {
			return nil, nil, err
		}
		cutoffs[p] = fromMicros(b)
	}
	return jtis, cutoffs, rows.Err()
}
