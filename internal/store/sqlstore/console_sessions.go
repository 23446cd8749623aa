package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/console/sessionstore"
	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// CreateConsoleSession implements sessionstore.Store.
func (s *DB) CreateConsoleSession(ctx context.Context, cs sessionstore.Session) error {
	_, err := s.exec(ctx, s.db, `INSERT INTO console_sessions (id_hash, sealed_token, user_name, principal_id, created_at, seen_at) VALUES (?, ?, ?, ?, ?, ?)`,
		cs.IDHash, cs.SealedToken, trunc(cs.User, 256), trunc(cs.PrincipalID, 128), micros(cs.Created), micros(cs.Seen))
	return err
}

// TouchConsoleSession implements sessionstore.Store: the liveness check and
// the touch are one statement, so a session past a timeout is never revived.
func (s *DB) TouchConsoleSession(ctx context.Context, idHash []byte, now, idleAfter, createdAfter time.Time) (sessionstore.Session, error) {
	cs := sessionstore.Session{IDHash: idHash}
	var created, seen int64
	err := s.db.QueryRowContext(ctx, s.q(`UPDATE console_sessions SET seen_at = CASE WHEN seen_at > CAST(? AS BIGINT) THEN seen_at ELSE CAST(? AS BIGINT) END
WHERE id_hash = ? AND seen_at > ? AND created_at > ?
RETURNING sealed_token, user_name, principal_id, created_at, seen_at`), micros(now), micros(now), idHash, micros(idleAfter), micros(createdAfter)).
		Scan(&cs.SealedToken, &cs.User, &cs.PrincipalID, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return sessionstore.Session{}, store.ErrNotFound
	}
	if err != nil {
		return sessionstore.Session{}, err
	}
	cs.Created, cs.Seen = fromMicros(created), fromMicros(seen)
	return cs, nil
}

// DeleteConsoleSession implements sessionstore.Store.
func (s *DB) DeleteConsoleSession(ctx context.Context, idHash []byte) error {
	_, err := s.exec(ctx, s.db, `DELETE FROM console_sessions WHERE id_hash = ?`, idHash)
	return err
}

// SweepConsoleSessions implements sessionstore.Store.
func (s *DB) SweepConsoleSessions(ctx context.Context, idleBefore, createdBefore time.Time) (int64, error) {
	res, err := s.exec(ctx, s.db, `DELETE FROM console_sessions WHERE seen_at <= ? OR created_at <= ?`, micros(idleBefore), micros(createdBefore))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// CreateOIDCLogin implements sessionstore.Store in one statement (the bound
// is approximate under concurrent inserts on PostgreSQL: it caps a flood, not
// a count).
func (s *DB) CreateOIDCLogin(ctx context.Context, l sessionstore.OIDCLogin, since time.Time, max int) (bool, error) {
	res, err := s.exec(ctx, s.db, `INSERT INTO console_oidc_logins (state_hash, binding_hash, sealed_verifier, next, started_at)
SELECT ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM console_oidc_logins WHERE started_at > ?) < ?`,
		l.StateHash, l.BindingHash, l.SealedVerifier, trunc(l.Next, 2048), micros(l.Started), micros(since), int64(max))
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// TakeOIDCLogin implements sessionstore.Store: the delete returns the row,
// so of concurrent takes on any replicas exactly one gets it.
func (s *DB) TakeOIDCLogin(ctx context.Context, stateHash []byte) (sessionstore.OIDCLogin, error) {
	l := sessionstore.OIDCLogin{StateHash: stateHash}
	var started int64
	err := s.db.QueryRowContext(ctx, s.q(`DELETE FROM console_oidc_logins WHERE state_hash = ? RETURNING binding_hash, sealed_verifier, next, started_at`), stateHash).
		Scan(&l.BindingHash, &l.SealedVerifier, &l.Next, &started)
	if errors.Is(err, sql.ErrNoRows) {
		return sessionstore.OIDCLogin{}, store.ErrNotFound
	}
	if err != nil {
		return sessionstore.OIDCLogin{}, err
	}
	l.Started = fromMicros(started)
	return l, nil
}

// SweepOIDCLogins implements sessionstore.Store.
func (s *DB) SweepOIDCLogins(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.exec(ctx, s.db, `DELETE FROM console_oidc_logins WHERE started_at <= ?`, micros(before))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

var _ sessionstore.Store = (*DB)(nil)
