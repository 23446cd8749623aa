package sqlstore

import (
	"context"
	"database/sql"
	"time"
)

// RevokeOtherSessions implements admin.FactorStore.
func (s *DB) RevokeOtherSessions(ctx context.Context, principalID, keep string, at time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE principal_id = ? AND id <> ?`, micros(at), principalID, keep)
	return err
}

// SetRecoveryCodes implements admin.FactorStore.
func (s *DB) SetRecoveryCodes(ctx context.Context, principalID string, hashes []string) error {
	res, err := s.exec(ctx, s.db, `UPDATE user_credentials SET recovery = ?, updated_at = ? WHERE principal_id = ? AND totp_sealed IS NOT NULL`,
		toJSON(nonNil(hashes)), micros(time.Now()), principalID)
	if err != nil {
		return err
	}
	return oneRow(res)
}

// ResetFactors implements admin.FactorStore: TOTP (active and pending),
// recovery codes and passkeys go in one transaction; the password and the
// last used TOTP step stay (a code of the old secret stays spent).
func (s *DB) ResetFactors(ctx context.Context, principalID string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.exec(ctx, tx, `UPDATE user_credentials SET totp_sealed = NULL, totp_pending_sealed = NULL, recovery = '[]', updated_at = ? WHERE principal_id = ?`,
			micros(time.Now()), principalID); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `DELETE FROM passkeys WHERE principal_id = ?`, principalID)
		return err
	})
}
