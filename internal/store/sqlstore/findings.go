package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/audit"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// CreateFinding implements audit.FindingStore.
func (s *DB) CreateFinding(ctx context.Context, f audit.Finding) error {
	f.Version = 1
	_, err := s.exec(ctx, s.db, `INSERT INTO findings (id, fingerprint, rule, severity, subject_id, state, last_seen, occurrences, data, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
		f.ID, f.Fingerprint, f.Rule, string(f.Severity), f.Subject.ID, string(f.State), micros(f.LastSeen), f.Occurrences, toJSON(f))
	return err
}

// UpdateFinding implements audit.FindingStore.
func (s *DB) UpdateFinding(ctx context.Context, f audit.Finding, version int64) (audit.Finding, error) {
	f.Version = version + 1
	if version == store.AnyVersion {
		cur, err := s.Finding(ctx, f.ID)
		if err != nil {
			return audit.Finding{}, err
		}
		version, f.Version = cur.Version, cur.Version+1
	}
	res, err := s.exec(ctx, s.db, `UPDATE findings SET severity = ?, state = ?, last_seen = ?, occurrences = ?, data = ?, version = version + 1 WHERE id = ? AND version = ?`,
		string(f.Severity), string(f.State), micros(f.LastSeen), f.Occurrences, toJSON(f), f.ID, version)
	if err != nil {
		return audit.Finding{}, err
	}
	if err := s.checkVersioned(ctx, s.db, res, "findings", f.ID); err != nil {
		return audit.Finding{}, err
	}
	return f, nil
}

// UpdateFindings implements audit.FindingStore.
func (s *DB) UpdateFindings(ctx context.Context, fs []audit.Finding) ([]string, error) {
	var conflicts []string
	if len(fs) == 0 {
		return nil, nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		conflicts = nil
		st, err := tx.PrepareContext(ctx, s.q(`UPDATE findings SET severity = ?, state = ?, last_seen = ?, occurrences = ?, data = ?, version = version + 1 WHERE id = ? AND version = ?`))
		if err != nil {
			return err
		}
		defer st.Close()
		for _, f := range fs {
			v := f.Version
			f.Version = v + 1
			res, err := st.ExecContext(ctx, string(f.Severity), string(f.State), micros(f.LastSeen), f.Occurrences, toJSON(f), f.ID, v)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				conflicts = append(conflicts, f.ID)
			}
		}
		return nil
	})
	return conflicts, err
}

// TouchFindings implements audit.FindingStore: a finding seen again,
// unchanged, moves its last-seen time and count without a new version (as
// TouchKeys: being seen again is not an edit, and must not fail an If-Match).
func (s *DB) TouchFindings(ctx context.Context, ids []string, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, s.q(`UPDATE findings SET last_seen = ?, occurrences = occurrences + 1 WHERE id = ?`))
		if err != nil {
			return err
		}
		defer st.Close()
		for _, id := range ids {
			if _, err := st.ExecContext(ctx, micros(at), id); err != nil {
				return err
			}
		}
		return nil
	})
}

const findingCols = `data, version, last_seen, occurrences`

func scanFinding(row interface{ Scan(...any) error }) (audit.Finding, error) {
	var data string
	var version, lastSeen, occurrences int64
	if err := row.Scan(&data, &version, &lastSeen, &occurrences); errors.Is(err, sql.ErrNoRows) {
		return audit.Finding{}, store.ErrNotFound
	} else if err != nil {
		return audit.Finding{}, err
	}
	var f audit.Finding
	if err := fromJSON(data, &f); err != nil {
		return audit.Finding{}, err
	}
	f.Version, f.LastSeen, f.Occurrences = version, fromMicros(lastSeen), occurrences
	return f, nil
}

// Finding implements audit.FindingStore.
func (s *DB) Finding(ctx context.Context, id string) (audit.Finding, error) {
	return scanFinding(s.db.QueryRowContext(ctx, s.q(`SELECT `+findingCols+` FROM findings WHERE id = ?`), id))
}

// FindingByFingerprint implements audit.FindingStore.
func (s *DB) FindingByFingerprint(ctx context.Context, fp string) (audit.Finding, error) {
	return scanFinding(s.db.QueryRowContext(ctx, s.q(`SELECT `+findingCols+` FROM findings WHERE fingerprint = ?`), fp))
}

// ListFindings implements audit.FindingStore.
func (s *DB) ListFindings(ctx context.Context, f audit.Filter) ([]audit.Finding, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100000
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+findingCols+` FROM findings
		WHERE (? = '' OR state = ?) AND (? = '' OR severity = ?) AND (? = '' OR rule = ?) AND (? = '' OR subject_id = ?) AND last_seen >= ?
		ORDER BY last_seen DESC, id LIMIT ?`),
		string(f.State), string(f.State), string(f.Severity), string(f.Severity), f.Rule, f.Rule, f.Subject, f.Subject, micros(f.Since), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []audit.Finding
	for rows.Next() {
		fd, err := scanFinding(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, fd)
	}
	return out, rows.Err()
}

// SaveLogCheck implements audit.FindingStore.
func (s *DB) SaveLogCheck(ctx context.Context, c audit.LogCheck) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM audit_log_check WHERE id = 1`); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO audit_log_check (id, data) VALUES (1, ?)`, toJSON(c))
		return err
	})
}

// LogCheck implements audit.FindingStore; nil when the log was never checked.
func (s *DB) LogCheck(ctx context.Context) (*audit.LogCheck, error) {
	var data string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT data FROM audit_log_check WHERE id = 1`)).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c audit.LogCheck
	return &c, fromJSON(data, &c)
}
