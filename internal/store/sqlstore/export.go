package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/store"
)

// ExportStart implements ledger.ExportStore: the target's cursor, created at
// start when the target has none (the first replica to create it wins).
func (s *DB) ExportStart(ctx context.Context, target string, start int64) (int64, error) {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `INSERT INTO ledger_export (target, next, holder, lease_until) VALUES (?, ?, '', 0)
			ON CONFLICT (target) DO NOTHING`, target, start)
		return err
	})
	if err != nil {
		return 0, err
	}
	var next int64
	err = s.db.QueryRowContext(ctx, s.q(`SELECT next FROM ledger_export WHERE target = ?`), target).Scan(&next)
	return next, err
}

// ExportLease implements ledger.ExportStore: holder takes the target's lease
// until until when the lease is its own or expired at now; it returns the
// cursor and whether holder now holds the lease.
func (s *DB) ExportLease(ctx context.Context, target, holder string, now, until time.Time) (next int64, held bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE ledger_export SET holder = ?, lease_until = ? WHERE target = ? AND (holder = ? OR lease_until < ?)`,
			holder, micros(until), target, holder, micros(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		held = n == 1
		err = tx.QueryRowContext(ctx, s.q(`SELECT next FROM ledger_export WHERE target = ?`), target).Scan(&next)
		if err == sql.ErrNoRows {
			return fmt.Errorf("ledger export %q: %w", target, store.ErrNotFound)
		}
		return err
	})
	return next, held, err
}

// ExportAdvance implements ledger.ExportStore: it moves the target's cursor
// from from to to and extends holder's lease until until, only while holder
// holds the lease and the cursor is at from (store.ErrConflict otherwise).
func (s *DB) ExportAdvance(ctx context.Context, target, holder string, from, to int64, until time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `UPDATE ledger_export SET next = ?, lease_until = ? WHERE target = ? AND holder = ? AND next = ?`,
			to, micros(until), target, holder, from)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("ledger export %q: the cursor moved or the lease was taken: %w", target, store.ErrConflict)
		}
		return nil
	})
}

// ExportRelease implements ledger.ExportStore: holder gives up its lease, so
// that another replica takes the target over at once.
func (s *DB) ExportRelease(ctx context.Context, target, holder string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := s.exec(ctx, tx, `UPDATE ledger_export SET lease_until = 0 WHERE target = ? AND holder = ?`, target, holder)
		return err
	})
}

// ExportReset sets the target's cursor to next and drops its lease: the
// operator's way out of a cursor past the log's end (a store restored from
// an older backup). It returns the cursor it replaced; store.ErrNotFound
// when the target has none.
func (s *DB) ExportReset(ctx context.Context, target string, next int64) (was int64, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, s.q(`SELECT next FROM ledger_export WHERE target = ?`), target).Scan(&was)
		if err == sql.ErrNoRows {
			return fmt.Errorf("ledger export %q: %w", target, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE ledger_export SET next = ?, holder = '', lease_until = 0 WHERE target = ?`, next, target)
		return err
	})
	return was, err
}
