package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/mfa"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// Credentials implements mfa.Store.
func (s *DB) Credentials(ctx context.Context, principalID string) (mfa.Credentials, error) {
	c := mfa.Credentials{PrincipalID: principalID}
	var recovery string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT password_hash, totp_sealed, totp_pending_sealed, totp_last_step, recovery FROM user_credentials WHERE principal_id = ?`),
		principalID).Scan(&c.PasswordHash, &c.TOTPSealed, &c.PendingTOTP, &c.LastStep, &recovery)
	if errors.Is(err, sql.ErrNoRows) {
		return c, store.ErrNotFound
	}
	if err != nil {
		return c, err
	}
	return c, fromJSON(recovery, &c.Recovery)
}

func (s *DB) ensureCredentials(ctx context.Context, tx *sql.Tx, principalID string) error {
	_, err := s.exec(ctx, tx, `INSERT INTO user_credentials (principal_id, password_hash, totp_last_step, recovery, updated_at) VALUES (?, '', 0, '[]', ?)
		ON CONFLICT (principal_id) DO NOTHING`, principalID, micros(time.Now()))
	if errors.Is(err, store.ErrInUse) {
		return store.ErrNotFound
	}
	return err
}

// SetPassword implements mfa.Store.
func (s *DB) SetPassword(ctx context.Context, principalID, hash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.ensureCredentials(ctx, tx, principalID); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `UPDATE user_credentials SET password_hash = ?, updated_at = ? WHERE principal_id = ?`, hash, micros(time.Now()), principalID)
		return err
	})
}

// SetPendingTOTP implements mfa.Store.
func (s *DB) SetPendingTOTP(ctx context.Context, principalID string, sealed []byte) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.ensureCredentials(ctx, tx, principalID); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `UPDATE user_credentials SET totp_pending_sealed = ?, updated_at = ? WHERE principal_id = ?`, sealed, micros(time.Now()), principalID)
		return err
	})
}

// ConfirmTOTP implements mfa.Store.
func (s *DB) ConfirmTOTP(ctx context.Context, principalID string, recovery []string, step int64) error {
	res, err := s.exec(ctx, s.db, `UPDATE user_credentials SET totp_sealed = totp_pending_sealed, totp_pending_sealed = NULL,
		recovery = ?, totp_last_step = ?, updated_at = ? WHERE principal_id = ? AND totp_pending_sealed IS NOT NULL`,
		toJSON(recovery), step, micros(time.Now()), principalID)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// UseTOTPStep implements mfa.Store: a conditional update, so a code is good
// once even across replicas, and only while the secret it was checked
// against is still the active one.
func (s *DB) UseTOTPStep(ctx context.Context, principalID string, sealed []byte, step int64) (bool, error) {
	res, err := s.exec(ctx, s.db, `UPDATE user_credentials SET totp_last_step = ? WHERE principal_id = ? AND totp_last_step < ? AND totp_sealed = ?`, step, principalID, step, sealed)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// UseRecoveryCode implements mfa.Store.
func (s *DB) UseRecoveryCode(ctx context.Context, principalID, hash string) (bool, error) {
	used := false
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var recovery string
		if err := tx.QueryRowContext(ctx, s.q(`SELECT recovery FROM user_credentials WHERE principal_id = ?`+s.d.ForUpdate), principalID).Scan(&recovery); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil
			}
			return err
		}
		var hashes []string
		if err := fromJSON(recovery, &hashes); err != nil {
			return err
		}
		for i, h := range hashes {
			if h == hash {
				hashes = append(hashes[:i], hashes[i+1:]...)
				used = true
				break
			}
		}
		if !used {
			return nil
		}
		_, err := s.exec(ctx, tx, `UPDATE user_credentials SET recovery = ? WHERE principal_id = ?`, toJSON(nonNil(hashes)), principalID)
		return err
	})
	return used, err
}

// CreateSession implements mfa.Store.
func (s *DB) CreateSession(ctx context.Context, se mfa.Session) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO sessions (id, hash, principal_id, created_at, expires_at, mfa_at) VALUES (?, ?, ?, ?, ?, ?)`,
		se.ID, se.Hash, se.PrincipalID, micros(se.CreatedAt), micros(se.ExpiresAt), nullMicros(se.MFAAt))
	return err
}

// SessionByHash implements mfa.Store.
func (s *DB) SessionByHash(ctx context.Context, hash string) (mfa.Session, error) {
	var se mfa.Session
	var created, expires int64
	var mfaAt, revoked sql.NullInt64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT id, hash, principal_id, created_at, expires_at, mfa_at, revoked_at FROM sessions WHERE hash = ?`), hash).
		Scan(&se.ID, &se.Hash, &se.PrincipalID, &created, &expires, &mfaAt, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return se, store.ErrNotFound
	}
	se.CreatedAt, se.ExpiresAt, se.MFAAt, se.RevokedAt = fromMicros(created), fromMicros(expires), fromNullMicros(mfaAt), fromNullMicros(revoked)
	return se, err
}

// RevokeSession implements mfa.Store.
func (s *DB) RevokeSession(ctx context.Context, id string, at time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`, micros(at), id)
	return err
}

// RevokeSessions implements mfa.Store.
func (s *DB) RevokeSessions(ctx context.Context, principalID string, at time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE principal_id = ?`, micros(at), principalID)
	return err
}

// SessionMFA implements mfa.Store.
func (s *DB) SessionMFA(ctx context.Context, id string, at time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE sessions SET mfa_at = ? WHERE id = ? AND revoked_at IS NULL`, micros(at), id)
	return err
}
