package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/policy"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// SavePolicies implements policy.Store: the files become the next version.
func (s *DB) SavePolicies(ctx context.Context, files map[string]string, by, note string) (policy.Version, error) {
	var v policy.Version
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var cur sql.NullInt64
		if err := tx.QueryRowContext(ctx, s.q(`SELECT MAX(version) FROM policy_versions`)).Scan(&cur); err != nil {
			return err
		}
		v = policy.Version{Version: cur.Int64 + 1, Files: files, CreatedAt: time.Now().UTC(), CreatedBy: by, Note: note}
		if _, err := s.exec(ctx, tx, `INSERT INTO policy_versions (version, files, created_at, created_by, note) VALUES (?, ?, ?, ?, ?)`,
			v.Version, toJSON(files), micros(v.CreatedAt), by, note); err != nil {
			return err
		}
		return s.bumpConfig(ctx, tx)
	})
	return v, err
}

// PolicyVersion implements policy.Store; version 0 is the one in force.
func (s *DB) PolicyVersion(ctx context.Context, version int64) (policy.Version, error) {
	q := `SELECT version, files, created_at, created_by, note FROM policy_versions WHERE version = ?`
	args := []any{version}
	if version == 0 {
		q = `SELECT version, files, created_at, created_by, note FROM policy_versions ORDER BY version DESC LIMIT 1`
		args = nil
	}
	var v policy.Version
	var files string
	var created int64
	err := s.db.QueryRowContext(ctx, s.q(q), args...).Scan(&v.Version, &files, &created, &v.CreatedBy, &v.Note)
	if errors.Is(err, sql.ErrNoRows) {
		return v, store.ErrNotFound
	}
	if err != nil {
		return v, err
	}
	v.CreatedAt = fromMicros(created)
	return v, fromJSON(files, &v.Files)
}

// PolicyHistory implements policy.Store, newest first, without the files.
func (s *DB) PolicyHistory(ctx context.Context) ([]policy.Version, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT version, created_at, created_by, note FROM policy_versions ORDER BY version DESC`))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []policy.Version
	for rows.Next() {
		var v policy.Version
		var created int64
		if err := rows.Scan(&v.Version, &created, &v.CreatedBy, &v.Note); err != nil {
			return nil, err
		}
		v.CreatedAt = fromMicros(created)
		out = append(out, v)
	}
	return out, rows.Err()
}
