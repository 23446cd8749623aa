package sqlstore

import (
	"context"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/lockout"
)

// takePlace is one atomic upsert: every right-hand side reads the row as it
// was, so concurrent attempts on one replica or many serialise on the row and
// none is lost or double-counted. Placeholders: see TakeLockoutPlace.
//
//	L: locked now; E: the window is over; F: the window is full.
//	L     → unchanged (refused);  E → a new window with this attempt;
//	F     → lock now for the current backoff, then double it (refused);
//	else  → one more place taken.
const takePlace = `INSERT INTO auth_lockouts (subject, window_start, failures, locked_until, locked_at, backoff_us, lock_count, last_source, last_user_agent, updated_at)
VALUES (?, ?, 1, 0, 0, ?, 0, ?, ?, ?)
ON CONFLICT (subject) DO UPDATE SET
  failures = CASE WHEN auth_lockouts.locked_until > CAST(? AS BIGINT) THEN auth_lockouts.failures
    WHEN auth_lockouts.window_start <= CAST(? AS BIGINT) THEN 1
    WHEN auth_lockouts.failures >= CAST(? AS BIGINT) THEN auth_lockouts.failures
    ELSE auth_lockouts.failures + 1 END,
  window_start = CASE WHEN auth_lockouts.locked_until > CAST(? AS BIGINT) THEN auth_lockouts.window_start
    WHEN auth_lockouts.window_start <= CAST(? AS BIGINT) THEN CAST(? AS BIGINT)
    ELSE auth_lockouts.window_start END,
  locked_until = CASE WHEN auth_lockouts.locked_until > CAST(? AS BIGINT) OR auth_lockouts.window_start <= CAST(? AS BIGINT)
      OR auth_lockouts.failures < CAST(? AS BIGINT) THEN auth_lockouts.locked_until
    ELSE CAST(? AS BIGINT) + (CASE WHEN auth_lockouts.updated_at <= CAST(? AS BIGINT) THEN CAST(? AS BIGINT) ELSE auth_lockouts.backoff_us END) END,
  locked_at = CASE WHEN auth_lockouts.locked_until > CAST(? AS BIGINT) OR auth_lockouts.window_start <= CAST(? AS BIGINT)
      OR auth_lockouts.failures < CAST(? AS BIGINT) THEN auth_lockouts.locked_at
    ELSE CAST(? AS BIGINT) END,
  lock_count = CASE WHEN auth_lockouts.locked_until > CAST(? AS BIGINT) OR auth_lockouts.window_start <= CAST(? AS BIGINT)
      OR auth_lockouts.failures < CAST(? AS BIGINT) THEN auth_lockouts.lock_count
    ELSE auth_lockouts.lock_count + 1 END,
  backoff_us = CASE WHEN auth_lockouts.locked_until > CAST(? AS BIGINT) THEN auth_lockouts.backoff_us
    WHEN auth_lockouts.updated_at <= CAST(? AS BIGINT) THEN
      (CASE WHEN auth_lockouts.window_start > CAST(? AS BIGINT) AND auth_lockouts.failures >= CAST(? AS BIGINT) THEN CAST(? AS BIGINT) ELSE CAST(? AS BIGINT) END)
    WHEN auth_lockouts.window_start > CAST(? AS BIGINT) AND auth_lockouts.failures >= CAST(? AS BIGINT) THEN
      (CASE WHEN auth_lockouts.backoff_us * 2 > CAST(? AS BIGINT) THEN CAST(? AS BIGINT) ELSE auth_lockouts.backoff_us * 2 END)
    ELSE auth_lockouts.backoff_us END,
  last_source = excluded.last_source, last_user_agent = excluded.last_user_agent, updated_at = excluded.updated_at
RETURNING subject, window_start, failures, locked_until, locked_at, lock_count, last_source, last_user_agent, updated_at`

// TakeLockoutPlace implements lockout.Store in one statement.
func (s *DB) TakeLockoutPlace(ctx context.Context, a lockout.Attempt, p lockout.Policy) (lockout.State, error) {
	at := micros(a.At)
	cutoff := micros(a.At.Add(-p.Window))    // a window begun at or before this is over
	quiet := micros(a.At.Add(-p.MaxBackoff)) // untouched since this: the backoff starts again
	m, b, x := int64(p.MaxFailures), int64(p.Backoff/time.Microsecond), int64(p.MaxBackoff/time.Microsecond)
	doubled := min(2*b, x) // the backoff after a lock at the base backoff
	args := []any{a.Subject, at, b, trunc(a.Source, 64), trunc(a.UserAgent, 256), at,
		at, cutoff, m, // failures
		at, cutoff, at, // window_start
		at, cutoff, m, at, quiet, b, // locked_until
		at, cutoff, m, at, // locked_at
		at, cutoff, m, // lock_count
		at, quiet, cutoff, m, doubled, b, cutoff, m, x, x, // backoff_us
	}
	st, err := s.scanLockout(s.db.QueryRowContext(ctx, s.q(takePlace), args...))
	return st, s.classify(err)
}

// GiveLockoutPlace implements lockout.Store.
func (s *DB) GiveLockoutPlace(ctx context.Context, subject string, windowStart time.Time) error {
	_, err := s.exec(ctx, s.db, `UPDATE auth_lockouts SET failures = failures - 1 WHERE subject = ? AND window_start = ? AND failures > 0 AND locked_at < window_start`,
		subject, micros(windowStart))
	return err
}

// LockoutStates implements lockout.Store.
func (s *DB) LockoutStates(ctx context.Context, subjects []string) ([]lockout.State, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	args := make([]any, len(subjects))
	for i, sub := range subjects {
		args[i] = sub
	}
	return s.queryLockouts(ctx, `WHERE subject IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(subjects)), ", ")+`) ORDER BY subject`, args...)
}

// ListLockouts implements lockout.Store.
func (s *DB) ListLockouts(ctx context.Context, now, since time.Time) ([]lockout.State, error) {
	return s.queryLockouts(ctx, `WHERE locked_until > ? OR (failures > 0 AND window_start > ?) ORDER BY subject`, micros(now), micros(since))
}

// SweepLockouts implements lockout.Store.
func (s *DB) SweepLockouts(ctx context.Context, now, before time.Time) (int64, error) {
	res, err := s.exec(ctx, s.db, `DELETE FROM auth_lockouts WHERE updated_at < ? AND locked_until <= ?`, micros(before), micros(now))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// ClearLockouts implements lockout.Store: a prefix ending in ':' clears every
// subject under it, anything else the one subject (source:10.0.0.1 must not
// clear source:10.0.0.12).
func (s *DB) ClearLockouts(ctx context.Context, prefix string) (int64, error) {
	q := `DELETE FROM auth_lockouts WHERE subject = ?`
	args := []any{prefix}
	if strings.HasSuffix(prefix, ":") {
		q, args = `DELETE FROM auth_lockouts WHERE substr(subject, 1, CAST(? AS INTEGER)) = ?`, []any{len(prefix), prefix}
	}
	res, err := s.exec(ctx, s.db, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

const lockoutColumns = `subject, window_start, failures, locked_until, locked_at, lock_count, last_source, last_user_agent, updated_at`

func (s *DB) queryLockouts(ctx context.Context, where string, args ...any) ([]lockout.State, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+lockoutColumns+` FROM auth_lockouts `+where), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []lockout.State
	for rows.Next() {
		st, err := s.scanLockout(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

func (s *DB) scanLockout(row interface{ Scan(...any) error }) (lockout.State, error) {
	var st lockout.State
	var window, until, lockedAt, updated int64
	if err := row.Scan(&st.Subject, &window, &st.Failures, &until, &lockedAt, &st.Locks, &st.LastSource, &st.LastUserAgent, &updated); err != nil {
		return st, err
	}
	st.WindowStart, st.UpdatedAt = fromMicros(window), fromMicros(updated)
	if until > 0 {
		t := fromMicros(until)
		st.LockedUntil = &t
	}
	if lockedAt > 0 {
		t := fromMicros(lockedAt)
		st.LockedAt = &t
	}
	return st, nil
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
