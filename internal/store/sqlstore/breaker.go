package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/internal/breaker"
	"github.com/gatehouse-gw/gatehouse/internal/store"
	"github.com/gatehouse-gw/gatehouse/internal/vkey"
)

// AddBreakerSpend implements breaker.Shared: it adds cost to a key's bucket
// and returns the sums of the n buckets ending at bucket, oldest first.
// Buckets older than the window are deleted now and then.
func (s *DB) AddBreakerSpend(ctx context.Context, keyID string, bucket, cost int64, n int) ([]int64, error) {
	if s.d.Pipeline != nil {
		return s.addBreakerSpendPiped(ctx, keyID, bucket, cost, n)
	}
	if _, err := s.hotExec(ctx, nil, `INSERT INTO breaker_spend (key_id, bucket, spent) VALUES (?, ?, ?)
		ON CONFLICT (key_id, bucket) DO UPDATE SET spent = breaker_spend.spent + excluded.spent`, keyID, bucket, cost); err != nil {
		return nil, err
	}
	first := bucket - int64(n) + 1
	if rand.IntN(64) == 0 {
		if _, err := s.exec(ctx, s.db, `DELETE FROM breaker_spend WHERE key_id = ? AND bucket < ?`, keyID, first); err != nil {
			return nil, err
		}
	}
	rows, err := s.hotQuery(ctx, nil, `SELECT bucket, spent FROM breaker_spend WHERE key_id = ? AND bucket >= ? AND bucket <= ?`, keyID, first, bucket)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]int64, n)
	for rows.Next() {
		var b int64
		var v sql.NullInt64
		if err := rows.Scan(&b, &v); err != nil {
			return nil, err
		}
		out[b-first] = v.Int64
	}
	return out, rows.Err()
}

// addBreakerSpendPiped is AddBreakerSpend in one round trip instead of two
// (three when it sweeps): a call with the breaker on waits for it, on
// PostgreSQL 2 of its ~2.8 round trips before (docs/benchmarks.md). The
// statements run in the pipeline's one implicit transaction, so the read
// sees the addition and a failure leaves neither.
func (s *DB) addBreakerSpendPiped(ctx context.Context, keyID string, bucket, cost int64, n int) ([]int64, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	p := &pipe{s: s, conn: conn}
	p.exec(`INSERT INTO breaker_spend (key_id, bucket, spent) VALUES (?, ?, ?)
		ON CONFLICT (key_id, bucket) DO UPDATE SET spent = breaker_spend.spent + excluded.spent`, keyID, bucket, cost)
	first := bucket - int64(n) + 1
	if rand.IntN(64) == 0 {
		p.exec(`DELETE FROM breaker_spend WHERE key_id = ? AND bucket < ?`, keyID, first)
	}
	out := make([]int64, n)
	p.query(func(r Rows) error {
		for r.Next() {
			var b int64
			var v sql.NullInt64
			if err := r.Scan(&b, &v); err != nil {
				return err
			}
			out[b-first] = v.Int64
		}
		return r.Err()
	}, `SELECT bucket, spent FROM breaker_spend WHERE key_id = ? AND bucket >= ? AND bucket <= ?`, keyID, first, bucket)
	if err := p.flush(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// AddBreakerSpends implements breaker.BatchShared: every key's spend since
// a replica's last flush in one multi-row upsert (rows in the caller's
// order, sorted by key and bucket, so two replicas' batches lock rows in one
// order), then the windows of the keys named, ending at bucket. On
// PostgreSQL it is one pipelined round trip in one implicit transaction;
// elsewhere one transaction. Now and then it deletes every key's buckets
// older than the window.
func (s *DB) AddBreakerSpends(ctx context.Context, spends []breaker.Spend, bucket int64, n int) (map[string][]int64, error) {
	out := map[string][]int64{}
	if len(spends) == 0 {
		return out, nil
	}
	first := bucket - int64(n) + 1
	var ids []any
	for i, sp := range spends {
		if i == 0 || sp.KeyID != spends[i-1].KeyID {
			ids = append(ids, sp.KeyID)
			out[sp.KeyID] = make([]int64, n)
		}
	}
	var stmts []Queued
	var rows [][]any
	for _, sp := range spends {
		rows = append(rows, []any{sp.KeyID, sp.Bucket, sp.Cost})
	}
	const upsert = ` ON CONFLICT (key_id, bucket) DO UPDATE SET spent = breaker_spend.spent + excluded.spent`
	for _, c := range chunks(len(rows)) {
		args := make([]any, 0, 3*c)
		for _, r := range rows[:c] {
			args = append(args, r...)
		}
		rows = rows[c:]
		stmts = append(stmts, Queued{SQL: `INSERT INTO breaker_spend (key_id, bucket, spent) VALUES (?, ?, ?)` + strings.Repeat(", (?, ?, ?)", c-1) + upsert, Args: args})
	}
	if rand.IntN(64) == 0 {
		stmts = append(stmts, Queued{SQL: `DELETE FROM breaker_spend WHERE bucket < ?`, Args: []any{first}})
	}
	read := func(r Rows) error {
		for r.Next() {
			var id string
			var b int64
			var v sql.NullInt64
			if err := r.Scan(&id, &b, &v); err != nil {
				return err
			}
			if w := out[id]; w != nil && b >= first && b <= bucket {
				w[b-first] = v.Int64
			}
		}
		return r.Err()
	}
	for _, c := range chunks(len(ids)) {
		args := append([]any{first, bucket}, ids[:c]...)
		ids = ids[c:]
		stmts = append(stmts, Queued{SQL: `SELECT key_id, bucket, spent FROM breaker_spend WHERE bucket >= ? AND bucket <= ? AND key_id IN (?` + strings.Repeat(", ?", c-1) + `)`, Args: args, Rows: read})
	}
	if s.d.Pipeline != nil {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		p := &pipe{s: s, conn: conn}
		for _, q := range stmts {
			if q.Rows != nil {
				p.query(q.Rows, q.SQL, q.Args...)
			} else {
				p.exec(q.SQL, q.Args...)
			}
		}
		if err := p.flush(ctx); err != nil {
			return nil, err
		}
		return out, nil
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		for _, q := range stmts {
			if q.Rows == nil {
				if _, err := s.exec(ctx, tx, q.SQL, q.Args...); err != nil {
					return err
				}
				continue
			}
			rs, err := tx.QueryContext(ctx, s.q(q.SQL), q.Args...)
			if err != nil {
				return s.classify(err)
			}
			err = q.Rows(rs)
			rs.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ResetBreakerSpend implements breaker.Shared: the key's windows start empty
// (after an admin reinstated it).
func (s *DB) ResetBreakerSpend(ctx context.Context, keyID string, _ int64, _ int) error {
	_, err := s.exec(ctx, s.db, `DELETE FROM breaker_spend WHERE key_id = ?`, keyID)
	return err
}

// SuspendKeyFirst suspends a key and reports whether this call did (false:
// it was suspended already, by another replica perhaps), so that a trip
// seen by several replicas alerts once. version, when not 0, is the key's
// version the suspension was decided at (a breaker's retry of a write that
// failed): the write then takes effect only while the key is still at it or
// below, and a key changed since (an admin reinstated it) and not suspended
// gives store.ErrConflict: the change wins. A key found suspended at at for
// reason, by a retry (version not 0), is this suspension's own earlier
// write, which committed though its answer was lost (a timeout): first is
// true then, so that the suspension is recorded and alerted once all the
// same. A trip (version 0) never is: another replica's trip can fall on the
// same microsecond with the same reason.
func (s *DB) SuspendKeyFirst(ctx context.Context, id, reason string, at time.Time, version int64) (bool, error) {
	res, err := s.exec(ctx, s.db, `UPDATE keys SET suspended_at = ?, suspend_reason = ?, version = version + 1
		WHERE id = ? AND suspended_at IS NULL AND (? = 0 OR version <= ?)`, micros(at), reason, id, version, version)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	if n == 0 {
		k, err := s.Key(ctx, id)
		if err != nil {
			return false, err
		}
		if k.SuspendedAt == nil {
			return false, fmt.Errorf("suspend key %s decided at version %d, now %d: %w", id, version, k.Version, store.ErrConflict)
		}
		// Only a retry (version not 0) looks for its own earlier write: two
		// trips on two replicas can fall on one microsecond with one reason.
		return version != 0 && micros(*k.SuspendedAt) == micros(at) && k.SuspendReason == reason, nil
	}
	return n == 1, nil
}

// SuspendedKeys returns every suspended key, revoked ones too (a suspension
// happened whatever became of the key since), oldest suspension first.
func (s *DB) SuspendedKeys(ctx context.Context) ([]vkey.Key, error) {
	return s.queryKeys(ctx, `SELECT `+keyCols+` FROM keys WHERE suspended_at IS NOT NULL ORDER BY suspended_at, id`)
}
