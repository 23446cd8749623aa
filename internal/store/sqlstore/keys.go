package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

const keyCols = `id, kind, name, hash, hint, principal_id, team_id, scope, expires_at, revoked_at, created_at, last_used_at, suspended_at, suspend_reason,
	prev_hash, prev_hint, prev_valid_until, rotated_at, mfa_required, version`

// CreateKey implements vkey.Store.
func (s *DB) CreateKey(ctx context.Context, k vkey.Key) error {
	var prev sql.NullString
	if k.PrevHash != "" {
		prev = sql.NullString{String: k.PrevHash, Valid: true}
	}
	_, err := s.exec(ctx, s.db, `INSERT INTO keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
		k.ID, string(k.Kind), k.Name, k.Hash, k.Hint, k.PrincipalID, k.TeamID, toJSON(k.Scope),
		nullMicros(k.ExpiresAt), nullMicros(k.RevokedAt), micros(k.CreatedAt), nullMicros(k.LastUsedAt), nullMicros(k.SuspendedAt), k.SuspendReason,
		prev, k.PrevHint, nullMicros(k.PrevValidUntil), nullMicros(k.RotatedAt), boolInt(k.MFARequired))
	if errors.Is(err, store.ErrInUse) { // FK: principal missing
		return store.ErrNotFound
	}
	return err
}

func scanKey(row interface{ Scan(...any) error }) (vkey.Key, error) {
	var k vkey.Key
	var kind, scope string
	var expires, revoked, lastUsed, suspended, prevUntil, rotated sql.NullInt64
	var prevHash sql.NullString
	var created int64
	var mfaRequired int
	err := row.Scan(&k.ID, &kind, &k.Name, &k.Hash, &k.Hint, &k.PrincipalID, &k.TeamID, &scope,
		&expires, &revoked, &created, &lastUsed, &suspended, &k.SuspendReason, &prevHash, &k.PrevHint, &prevUntil, &rotated, &mfaRequired, &k.Version)
	k.MFARequired = mfaRequired != 0
	if errors.Is(err, sql.ErrNoRows) {
		return vkey.Key{}, store.ErrNotFound
	}
	if err != nil {
		return vkey.Key{}, err
	}
	k.Kind = vkey.Kind(kind)
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt = fromNullMicros(expires), fromNullMicros(revoked), fromNullMicros(lastUsed)
	k.SuspendedAt = fromNullMicros(suspended)
	k.PrevHash, k.PrevValidUntil, k.RotatedAt = prevHash.String, fromNullMicros(prevUntil), fromNullMicros(rotated)
	k.CreatedAt = fromMicros(created)
	return k, fromJSON(scope, &k.Scope)
}

// KeyByHash implements vkey.Store.
func (s *DB) KeyByHash(ctx context.Context, hash string) (vkey.Key, error) {
	return scanKey(s.hotQueryRow(ctx, nil, `SELECT `+keyCols+` FROM keys WHERE hash = ? OR prev_hash = ?`, hash, hash))
}

// Key implements vkey.Store.
func (s *DB) Key(ctx context.Context, id string) (vkey.Key, error) {
	return scanKey(s.db.QueryRowContext(ctx, s.q(`SELECT `+keyCols+` FROM keys WHERE id = ?`), id))
}

// ListKeys implements vkey.Store.
func (s *DB) ListKeys(ctx context.Context, f vkey.Filter) ([]vkey.Key, error) {
	return s.queryKeys(ctx, `SELECT `+keyCols+` FROM keys
		WHERE (? = '' OR kind = ?) AND (? = '' OR principal_id = ?) AND (? = '' OR team_id = ?)
		AND (? = 1 OR revoked_at IS NULL) ORDER BY created_at, id`,
		string(f.Kind), string(f.Kind), f.PrincipalID, f.PrincipalID, f.TeamID, f.TeamID, boolInt(f.IncludeRevoked))
}

// queryKeys runs a query of keyCols and scans every row.
func (s *DB) queryKeys(ctx context.Context, query string, args ...any) ([]vkey.Key, error) {
	rows, err := s.db.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vkey.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RevokeKey implements vkey.Store. Revoking a revoked key keeps the first time.
func (s *DB) RevokeKey(ctx context.Context, id string, at time.Time, version int64) (vkey.Key, error) {
	res, err := s.exec(ctx, s.db, `UPDATE keys SET revoked_at = COALESCE(revoked_at, ?), version = version + 1
		WHERE id = ? AND (? = 0 OR version = ?)`, micros(at), id, version, version)
	if err != nil {
		return vkey.Key{}, err
	}
	if err := s.checkVersioned(ctx, s.db, res, "keys", id); err != nil {
		return vkey.Key{}, err
	}
	return s.Key(ctx, id)
}

// TouchKeys implements vkey.Store. It does not bump versions: last use is not
// an edit, and must not make an admin's If-Match fail.
func (s *DB) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for id, t := range used {
			if _, err := s.exec(ctx, tx, `UPDATE keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)`,
				micros(t), id, micros(t)); err != nil {
				return err
			}
		}
		return nil
	})
}

// SuspendKey implements vkey.Store.
func (s *DB) SuspendKey(ctx context.Context, id, reason string, at time.Time) error {
	res, err := s.exec(ctx, s.db, `UPDATE keys SET suspended_at = ?, suspend_reason = ?, version = version + 1
		WHERE id = ? AND suspended_at IS NULL`, micros(at), reason, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := s.Key(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// ReinstateKey implements vkey.Store.
func (s *DB) ReinstateKey(ctx context.Context, id string, version int64) (vkey.Key, error) {
	res, err := s.exec(ctx, s.db, `UPDATE keys SET suspended_at = NULL, suspend_reason = '', version = version + 1
		WHERE id = ? AND (? = 0 OR version = ?)`, id, version, version)
	if err != nil {
		return vkey.Key{}, err
	}
	if err := s.checkVersioned(ctx, s.db, res, "keys", id); err != nil {
		return vkey.Key{}, err
	}
	return s.Key(ctx, id)
}

// RotateKey implements vkey.Store.
func (s *DB) RotateKey(ctx context.Context, id, hash, hint string, at, graceUntil time.Time, version int64) (vkey.Key, error) {
	res, err := s.exec(ctx, s.db, `UPDATE keys SET prev_hash = hash, prev_hint = hint, prev_valid_until = ?, hash = ?, hint = ?, rotated_at = ?,
		version = version + 1 WHERE id = ? AND revoked_at IS NULL AND (? = 0 OR version = ?)`,
		micros(graceUntil), hash, hint, micros(at), id, version, version)
	if err != nil {
		return vkey.Key{}, err
	}
	if err := s.checkVersioned(ctx, s.db, res, "keys", id); err != nil {
		return vkey.Key{}, err
	}
	return s.Key(ctx, id)
}

// MarkKeyWarned records an expiry warning; false if it was sent already.
func (s *DB) MarkKeyWarned(ctx context.Context, keyID string, expires time.Time) (bool, error) {
	res, err := s.exec(ctx, s.db, `INSERT INTO key_warnings (key_id, expires_at, warned_at) VALUES (?, ?, ?)
		ON CONFLICT (key_id, expires_at) DO NOTHING`, keyID, micros(expires), micros(time.Now()))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}
