package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// AddPasskey implements mfa.PasskeyStore.
func (s *DB) AddPasskey(ctx context.Context, p mfa.Passkey) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO passkeys (id, principal_id, name, credential, created_at) VALUES (?, ?, ?, ?, ?)`,
		p.ID, p.PrincipalID, p.Name, string(p.Credential), micros(p.CreatedAt))
	return err
}

// Passkeys implements mfa.PasskeyStore.
func (s *DB) Passkeys(ctx context.Context, principalID string) ([]mfa.Passkey, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, principal_id, name, credential, created_at, last_used_at FROM passkeys WHERE principal_id = ? ORDER BY created_at, id`), principalID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []mfa.Passkey
	for rows.Next() {
		var p mfa.Passkey
		var cred string
		var created int64
		var used sql.NullInt64
		if err := rows.Scan(&p.ID, &p.PrincipalID, &p.Name, &cred, &created, &used); err != nil {
			return nil, err
		}
		p.Credential, p.CreatedAt, p.LastUsedAt = []byte(cred), fromMicros(created), fromNullMicros(used)
		out = append(out, p)
	}
	return out, rows.Err()
}

// UsePasskey implements mfa.PasskeyStore.
func (s *DB) UsePasskey(ctx context.Context, id string, credential []byte, at time.Time) error {
	res, err := s.exec(ctx, s.db, `UPDATE passkeys SET credential = ?, last_used_at = ? WHERE id = ?`, string(credential), micros(at), id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// DeletePasskey implements mfa.PasskeyStore.
func (s *DB) DeletePasskey(ctx context.Context, principalID, id string) error {
	res, err := s.exec(ctx, s.db, `DELETE FROM passkeys WHERE principal_id = ? AND id = ?`, principalID, id)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// PutCeremony implements mfa.PasskeyStore; expired ceremonies are swept.
func (s *DB) PutCeremony(ctx context.Context, c mfa.Ceremony) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `DELETE FROM webauthn_ceremonies WHERE expires_at < ?`, micros(time.Now())); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO webauthn_ceremonies (id, principal_id, kind, data, expires_at) VALUES (?, ?, ?, ?, ?)`,
			c.ID, c.PrincipalID, c.Kind, string(c.Data), micros(c.ExpiresAt))
		return err
	})
}

// TakeCeremony implements mfa.PasskeyStore.
func (s *DB) TakeCeremony(ctx context.Context, id string) (mfa.Ceremony, error) {
	var c mfa.Ceremony
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var data string
		var exp int64
		err := tx.QueryRowContext(ctx, s.q(`SELECT id, principal_id, kind, data, expires_at FROM webauthn_ceremonies WHERE id = ?`), id).
			Scan(&c.ID, &c.PrincipalID, &c.Kind, &data, &exp)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		c.Data, c.ExpiresAt = []byte(data), fromMicros(exp)
		res, err := s.exec(ctx, tx, `DELETE FROM webauthn_ceremonies WHERE id = ?`, id)
		if err != nil {
			return err
		}
		return oneRow(res) // a concurrent take got it first
	})
	return c, err
}
